"""The probe's pure parts: the state of a verified chain by days left, targets and their labels."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from stellar_ops.probes.tls import SEVERITY_ORDER, STATES, Target, TlsProbe, classify, parse_der, probe
from stellar_ops_dev.certs import LocalCA


@pytest.mark.parametrize(
    ("days", "state"),
    [
        (90, "ok"),
        (30, "ok"),
        (29.99, "warning"),
        (14, "warning"),
        (13.99, "critical"),
        (0.01, "critical"),
        (0, "expired"),
        (-3, "expired"),
    ],
)
def test_classify_by_days_left(days, state):
    assert classify(days, warning_days=30, critical_days=14) == state


def test_every_state_has_a_severity_order():
    assert set(SEVERITY_ORDER) == set(STATES)
    assert (
        SEVERITY_ORDER["ok"]
        < SEVERITY_ORDER["warning"]
        < SEVERITY_ORDER["critical"]
        < SEVERITY_ORDER["expired"]
    )


@pytest.mark.parametrize(
    ("target", "label"),
    [
        (Target("escrow.example"), "escrow.example"),
        (Target("escrow.example", 8443), "escrow.example@escrow.example:8443"),
        (Target("10.0.0.5", 443, "api.example"), "api.example@10.0.0.5:443"),
        (Target("api.example", 443, "api.example"), "api.example"),
    ],
)
def test_target_labels(target, label):
    assert target.label == label
    assert target.sni == (target.server_name or target.host)


def test_parse_der_reads_names_dates_issuer_and_serial():
    ca = LocalCA("Unit Root")
    issued = ca.leaf("escrow.test", "127.0.0.1", days=20)
    from cryptography.hazmat.primitives.serialization import Encoding

    info = parse_der(issued.cert.public_bytes(Encoding.DER))

    assert info.sans == ("escrow.test", "127.0.0.1")
    assert info.issuer == "CN=Unit Root"
    assert info.subject == "CN=escrow.test"
    assert info.serial == f"{issued.cert.serial_number:x}"
    assert info.not_after - datetime.now(UTC) == pytest.approx(timedelta(days=20), abs=timedelta(minutes=1))


def test_as_dict_is_json_ready_with_the_domain_label():
    import json

    now = datetime(2026, 12, 1, tzinfo=UTC)
    result = TlsProbe(
        host="10.0.0.5",
        port=443,
        server_name="api.example",
        state="warning",
        checked_at=now,
        not_after=now + timedelta(days=20),
        days_left=20.0,
        sans=("api.example",),
    )

    document = json.loads(json.dumps(result.as_dict()))

    assert document["domain"] == "api.example@10.0.0.5:443"
    assert document["not_after"] == "2026-12-21T00:00:00+00:00"
    assert document["sans"] == ["api.example"]


def test_a_bad_port_is_refused_by_name():
    with pytest.raises(ValueError, match="port 70000 of escrow.test"):
        probe("escrow.test", 70000)


def test_an_unreadable_ca_bundle_is_invalid_not_unreachable(tmp_path):
    missing = tmp_path / "nope.pem"

    result = probe("127.0.0.1", 1, ca_bundle=str(missing))

    assert result.state == "invalid"
    assert str(missing) in (result.error or "")
