"""When a certificate is renewed (stellar_ops.tls.policy): threshold, minimum interval, short
certificates, and the once-only alert about them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from stellar_ops.core.errors import ConfigError
from stellar_ops.registry import parse_config
from stellar_ops.tls.config import TlsConfig
from stellar_ops.tls.policy import (
    RenewalRecord,
    ShortLifetimeAlert,
    decide,
    lifetime_days,
    short_lifetime_alert_due,
    span,
)

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)


def _before(state: str, days: float | None) -> dict[str, Any]:
    return {"domain": "escrow.test@127.0.0.1:8443", "state": state, "days_left": days}


def _renewed(ago: timedelta, lifetime: int | None = None) -> RenewalRecord:
    return RenewalRecord("escrow", "escrow.test@127.0.0.1:8443", NOW - ago, lifetime_days=lifetime)


def _decide(state: str, days: float | None, last: RenewalRecord | None = None, *, force: bool = False, **tls):
    return decide(TlsConfig(**tls), _before(state, days), last, now=NOW, force=force)


@pytest.mark.parametrize(
    ("state", "days", "force", "renews"),
    [
        ("ok", 60, False, False),
        ("ok", 60, True, True),
        ("warning", 29, False, True),
        ("critical", 7, False, True),
        ("expired", -1, False, True),
        ("invalid", 60, False, False),
        ("invalid", 60, True, True),
        ("unreachable", None, False, False),
        ("unreachable", None, True, False),
    ],
)
def test_never_renewed_certificates_follow_the_threshold(state, days, force, renews):
    decision = _decide(state, days, force=force)
    assert decision.renew is renews
    if not renews:
        assert decision.summary == f"not due ({state})"


def test_no_automatic_renewal_when_switched_off():
    assert _decide("critical", 3, renew=False).renew is False
    assert _decide("critical", 3, renew=False, force=True).reason == "forced renewal"


def test_a_due_certificate_renewed_within_the_interval_is_not_renewed_again():
    decision = _decide("warning", 19.9, _renewed(timedelta(hours=2), lifetime=90))
    assert decision.renew is False
    assert "tls.min_renewal_interval (24h)" in decision.reason
    assert "renewed 2h ago" in decision.reason
    assert (NOW + timedelta(hours=22)).isoformat() in decision.reason  # when it may renew again
    assert decision.summary == "not renewed: renewed 2h ago, within tls.min_renewal_interval (24h)"


def test_after_the_interval_a_due_certificate_is_renewed():
    decision = _decide("warning", 19.9, _renewed(timedelta(hours=24, seconds=1), lifetime=90))
    assert decision.renew is True
    assert decision.reason == "19.9 days left, under tls.renew_below_days (30)"


def test_the_interval_is_configurable_and_zero_switches_it_off():
    last = _renewed(timedelta(minutes=5), lifetime=90)
    assert _decide("warning", 19.9, last, min_renewal_interval="PT1M").renew is True
    assert _decide("warning", 19.9, last, min_renewal_interval=0).renew is True
    assert _decide("warning", 19.9, last, min_renewal_interval=3600).renew is False


def test_force_renewal_overrides_the_interval():
    decision = _decide("warning", 19.9, _renewed(timedelta(minutes=1)), force=True)
    assert decision.renew is True and decision.reason == "forced renewal"


def test_a_certificate_not_due_is_not_due_whatever_the_last_renewal():
    decision = _decide("ok", 60, _renewed(timedelta(minutes=1)))
    assert decision.renew is False and decision.summary == "not due (ok)"


def test_short_certificates_are_renewed_only_under_a_third_of_their_lifetime():
    # The CA issues 20-day certificates, under renew_below_days (30): a renewal would still be due.
    long_ago = timedelta(days=8)
    waiting = _decide("warning", 12.0, _renewed(long_ago, lifetime=20))
    assert waiting.renew is False
    assert "the CA issues 20-day certificates" in waiting.reason
    assert "lowered below 20" in waiting.reason
    assert waiting.summary == "not renewed: the CA issues 20-day certificates"

    due = _decide("critical", 6.5, _renewed(timedelta(days=13.5), lifetime=20))
    assert due.renew is True
    assert "under a third (6.7 days) of the CA's 20-day lifetime" in due.reason


def test_a_lowered_threshold_ends_the_short_certificate_rule():
    last = _renewed(timedelta(days=11), lifetime=20)
    assert _decide("warning", 9.0, last, renew_below_days=10, warning_days=10, critical_days=5).renew
    assert not _decide("ok", 12.0, last, renew_below_days=10, warning_days=10, critical_days=5).renew


def test_the_short_lifetime_alert_is_sent_once_per_lifetime_and_threshold():
    sent = ShortLifetimeAlert(lifetime_days=20, renew_below_days=30, sent_at=NOW)
    assert short_lifetime_alert_due(None, 20, 30) is True
    assert short_lifetime_alert_due(sent, 20, 30) is False
    assert short_lifetime_alert_due(sent, 20, 25) is True  # threshold changed, still too high
    assert short_lifetime_alert_due(sent, 10, 30) is True  # the CA's lifetime changed


def test_the_record_round_trips_and_names_a_bad_field():
    record = RenewalRecord(
        "escrow",
        "escrow.test@127.0.0.1:8443",
        NOW,
        serial="ab12",
        not_after=NOW + timedelta(days=20),
        lifetime_days=20,
        short_lifetime_alert=ShortLifetimeAlert(20, 30.0, NOW),
    )
    assert RenewalRecord.from_dict(record.as_dict()) == record
    with pytest.raises(ValueError, match="field renewed_at is missing"):
        RenewalRecord.from_dict({"cert_name": "escrow"})
    with pytest.raises(ValueError, match="has no time zone"):
        RenewalRecord.from_dict({"cert_name": "escrow", "renewed_at": "2026-12-01T12:00:00"})


def test_lifetime_is_the_leafs_in_whole_days():
    leaf = {"not_before": NOW.isoformat(), "not_after": (NOW + timedelta(days=20, seconds=-1)).isoformat()}
    assert lifetime_days({"chain": [leaf, {"not_before": "x", "not_after": "y"}]}) == 20
    assert lifetime_days({"chain": []}) is None


def test_config_field_and_its_errors():
    assert TlsConfig().min_renewal_interval == timedelta(hours=24)
    assert parse_config({"tls": {"min_renewal_interval": "PT12H"}}).tls.min_renewal_interval == timedelta(
        hours=12
    )
    with pytest.raises(ConfigError, match="tls.min_renewal_interval"):
        parse_config({"tls": {"min_renewal_interval": -1}})


def test_spans_read_naturally():
    assert span(timedelta(minutes=5)) == "5 min"
    assert span(timedelta(hours=24)) == "24h"
    assert span(timedelta(days=3, hours=12)) == "3.5 days"
