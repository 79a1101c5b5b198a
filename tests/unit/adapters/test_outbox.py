"""Routes and fallbacks of a message, with a fake poster: no Airflow connection, no server."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from stellar_ops.adapters.common import outbox
from stellar_ops.core.alerts import info_message
from stellar_ops.core.delivery import Delivered, Refused, Undelivered, alert_id
from stellar_ops.registry import StellarOpsConfig, parse_config

PAGE = info_message(":rotating_light: [P1] RestoreFailed: db_restore.restore failed")


class Poster:
    """Answers per connection id: delivered, or the error given."""

    def __init__(self, **failing: Exception) -> None:
        self.failing = failing
        self.sent: list[tuple[str, dict[str, Any], float]] = []

    def __call__(self, conn_id: str, payload: dict[str, Any], policy: Any) -> Delivered:
        self.sent.append((conn_id, payload, policy.max_seconds))
        if conn_id in self.failing:
            raise self.failing[conn_id]
        return Delivered(attempts=1, seconds=0.0)


@pytest.fixture
def kept(monkeypatch) -> list[tuple[str, dict[str, Any], str, list[str]]]:
    found: list[tuple[str, dict[str, Any], str, list[str]]] = []
    monkeypatch.setattr(outbox, "_defined", lambda conn_id, purpose: bool(conn_id))
    monkeypatch.setattr(
        outbox,
        "keep",
        lambda config, ident, payload, channel, failures: found.append((ident, payload, channel, failures)),
    )
    return found


def config(**connections: Any) -> StellarOpsConfig:
    return parse_config({"connections": connections} if connections else None)


def down(status: int | None = None) -> Exception:
    if status and status < 500:
        return Refused(f"answered HTTP {status}", attempts=1, status=status)
    return Undelivered("could not be reached", attempts=5, status=status)


def test_a_page_goes_to_the_paging_channel_with_its_id(kept) -> None:
    poster = Poster()
    assert outbox.send_or_keep(config(), PAGE, "paging", poster=poster) == "paging"
    ((conn_id, payload, bound),) = poster.sent
    assert conn_id == "slack_paging" and bound == 150
    assert payload["blocks"][-1]["elements"][0]["text"] == f"alert id: {alert_id(PAGE)}" and kept == []


def test_a_page_its_channel_does_not_take_goes_to_ops_marked_with_the_same_id(kept) -> None:
    poster = Poster(slack_paging=down(503))
    assert outbox.send_or_keep(config(), PAGE, "paging", poster=poster) == "ops"
    (_, first, _), (conn_id, fallback, bound) = poster.sent
    assert conn_id == "slack_alerts" and bound == 20
    assert fallback["text"].startswith(
        ":warning: (the paging channel could not be reached: this should have paged)"
    )
    assert first["blocks"][-1] == fallback["blocks"][-1]
    assert fallback["blocks"][-1]["elements"][0]["text"] == f"alert id: {alert_id(PAGE)}"


def test_ops_falls_back_to_paging_and_a_bad_webhook_is_not_retried_but_rerouted(kept) -> None:
    poster = Poster(slack_alerts=down(404))
    assert outbox.send_or_keep(config(), PAGE, "ops", poster=poster) == "paging"
    assert "the ops channel could not be reached" in poster.sent[1][1]["text"]


def test_without_a_paging_channel_a_page_goes_to_ops_as_unpaged_and_has_no_fallback(kept) -> None:
    poster = Poster(slack_alerts=down())
    assert outbox.send_or_keep(config(paging=None), PAGE, "paging", poster=poster) is None
    ((conn_id, payload, _),) = poster.sent
    assert conn_id == "slack_alerts" and "no paging channel is configured" in payload["text"]
    ((ident, original, channel, failures),) = kept
    assert ident == alert_id(PAGE) and original == PAGE and channel == "paging"
    assert failures == ["ops channel: could not be reached"]


def test_what_no_channel_takes_is_kept_with_every_reason(kept) -> None:
    poster = Poster(slack_paging=down(), slack_alerts=down(500))
    assert outbox.send_or_keep(config(), {**PAGE, "alert_id": "given-id"}, "paging", poster=poster) is None
    ((ident, payload, channel, failures),) = kept
    assert ident == "given-id" and "alert_id" not in payload and channel == "paging"
    assert [f.split(":")[0] for f in failures] == ["paging channel", "ops channel"]


def test_a_broken_connection_is_one_more_failed_route_never_an_exception(kept) -> None:
    poster = Poster(slack_paging=KeyError("no password"), slack_alerts=down())
    assert outbox.send_or_keep(config(), PAGE, "paging", poster=poster) is None
    assert len(kept) == 1


def test_when_even_the_bucket_fails_the_whole_message_is_logged_at_error(monkeypatch, caplog) -> None:
    def no_bucket(config: Any) -> Any:
        raise OSError("S3 is down")

    monkeypatch.setattr(outbox, "_alertmanager", lambda config: None)
    monkeypatch.setattr("stellar_ops.adapters.common.connections.s3_store", no_bucket)
    with caplog.at_level(logging.ERROR, logger=outbox.__name__):
        outbox.keep(config(), "abc123", PAGE, "paging", ["paging channel: answered HTTP 503"])
    (record,) = caplog.records
    assert record.levelno == logging.ERROR
    assert "alert abc123 was NOT delivered" in record.getMessage() and PAGE["text"] in record.getMessage()


def test_the_alertmanager_copy_carries_the_id_and_the_severity_of_the_message() -> None:
    document = outbox.undelivered_alert("abc123", PAGE, "paging")
    assert document["labels"]["alert_id"] == "abc123" and document["labels"]["severity"] == "P1"
    assert document["labels"]["alertname"] == outbox.UNDELIVERED_ALERT and "endsAt" in document
    assert document["annotations"]["description"] == PAGE["text"]
    assert outbox.undelivered_alert("x", {"text": "a note"}, "ops")["labels"]["severity"] == "P3"
    assert document["annotations"]["runbook_url"] == "docs/runbooks.md#undelivered"
    linked = outbox.undelivered_alert("x", PAGE, "paging", "https://ops.example.org/runbooks/")
    assert linked["annotations"]["runbook_url"] == "https://ops.example.org/runbooks#undelivered"


def test_even_a_broken_config_of_connections_never_raises_from_the_notifier(monkeypatch, caplog) -> None:
    def broken(conn_id: str, purpose: str) -> bool:
        raise RuntimeError("the secrets backend is down")

    monkeypatch.setattr(outbox, "_defined", broken)
    with caplog.at_level(logging.ERROR, logger=outbox.__name__):
        assert outbox.send_or_keep(config(), PAGE, "paging", poster=Poster()) is None
    (record,) = caplog.records
    assert "the secrets backend is down" in record.getMessage() and PAGE["text"] in record.getMessage()
