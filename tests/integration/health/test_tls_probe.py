"""The certificates check's own handshake against real TLS servers with certificates of a test CA."""

from __future__ import annotations

import pytest

from stellar_ops.health.tls_probe import probe

pytestmark = pytest.mark.integration


def test_a_valid_certificate_reports_its_days_left(ca, tls_server):
    server = tls_server(days=90)
    result = probe("127.0.0.1", server.port, "escrow.test", ca_file=str(ca.ca_file))
    assert result.state == "ok", result
    assert 89 < result.days_left <= 90
    assert result.not_after and result.error is None


@pytest.mark.parametrize(("days", "state"), [(20, "warning"), (3, "critical")])
def test_near_expiry_is_warning_then_critical(ca, tls_server, days, state):
    server = tls_server(days=days)
    result = probe(
        "127.0.0.1", server.port, "escrow.test", ca_file=str(ca.ca_file), warning_days=30, critical_days=7
    )
    assert result.state == state
    assert days - 1 < result.days_left <= days


def test_an_expired_certificate_is_expired_with_its_end(ca, tls_server):
    server = tls_server(days=-2, started_days_ago=30)
    result = probe("127.0.0.1", server.port, "escrow.test", ca_file=str(ca.ca_file))
    assert result.state == "expired"
    assert -3 < result.days_left < -1
    assert "expired" in result.error


def test_an_untrusted_or_misnamed_certificate_is_invalid(ca, tls_server):
    server = tls_server(days=90)
    untrusted = probe("127.0.0.1", server.port, "escrow.test")  # the system's CAs do not know ours
    assert untrusted.state == "invalid"
    assert 89 < untrusted.days_left <= 90
    misnamed = probe("127.0.0.1", server.port, "other.test", ca_file=str(ca.ca_file))
    assert misnamed.state == "invalid"
    assert "other.test" in misnamed.error or "mismatch" in misnamed.error


def test_nothing_listening_is_unreachable(hanging_server):
    from stellar_ops.core.processes import free_port

    closed = probe("127.0.0.1", free_port(), "escrow.test", timeout=2)
    assert closed.state == "unreachable"
    hung = probe("127.0.0.1", hanging_server.port, "escrow.test", timeout=0.5)
    assert hung.state == "unreachable"
    assert "timed out" in hung.error
