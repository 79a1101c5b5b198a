"""Each failed task instance's alert has its own id: mapped instances failing alike are not one alert."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from stellar_ops.adapters.common import alerting


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    payloads: list[dict[str, Any]] = []
    monkeypatch.setattr(alerting, "route", lambda config, entry, payload: payloads.append(payload) or "ops")
    monkeypatch.setattr(alerting, "tell_alertmanager", lambda *args, **kwargs: None)
    monkeypatch.setattr(alerting, "record", lambda dag_id, event: None)
    monkeypatch.setattr(alerting, "airflow_url", lambda: "http://airflow.example")
    return payloads


def _fail(map_index: int | None, try_number: int = 1) -> None:
    ti = SimpleNamespace(
        task_id="check_domain",
        run_id="scheduled__2026-12-07T00:00:00+00:00",
        try_number=try_number,
        max_tries=0,
        map_index=-1 if map_index is None else map_index,
        log_url=None,
    )
    notifier = alerting.StellarAlertNotifier(dag_id="tls_cert_check")
    notifier.notify({"ti": ti, "exception": RuntimeError("handshake failed")})


def test_mapped_instances_failing_alike_get_their_own_ids_and_are_named(sent: list[dict[str, Any]]) -> None:
    _fail(0)
    _fail(1)
    _fail(None)
    ids = [payload["alert_id"] for payload in sent]
    assert len(set(ids)) == 3
    assert "tls_cert_check.check_domain[1] failed" in sent[1]["text"]
    assert "check_domain[" not in sent[2]["text"]


def test_the_same_failed_try_keeps_its_id_and_the_next_try_gets_another(sent: list[dict[str, Any]]) -> None:
    _fail(4)
    _fail(4)
    _fail(4, try_number=2)
    assert sent[0]["alert_id"] == sent[1]["alert_id"] != sent[2]["alert_id"]
