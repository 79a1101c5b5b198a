"""The probe against real loopback TLS servers: each certificate case yields exactly its state,
and the procedure sends exactly its alert (or none) and pushes its metrics."""

from __future__ import annotations

import pytest
import requests

from stellar_ops.cli import env
from stellar_ops.probes.tls import STATES, probe
from stellar_ops.tls import flow
from stellar_ops.tls.config import TlsDomain
from tests.integration.tls.conftest import NAME

pytestmark = pytest.mark.integration

EXPECTED = {
    "valid_90": "ok",
    "valid_20": "warning",
    "valid_7": "critical",
    "expired": "expired",
    "wrong_host": "invalid",
    "untrusted": "invalid",
    "self_signed": "invalid",
    "intermediate_first": "critical",
    "nothing_listening": "unreachable",
    "no_handshake": "unreachable",
}
ALERTS = {
    "ok": None,
    "warning": None,
    "critical": "TLSCertExpiringSoon",
    "expired": "TLSCertExpiringSoon",
    "invalid": "TLSCertExpiringSoon",
    "unreachable": "TLSEndpointUnreachable",
}


def _probe(endpoints, case: str):
    return probe(
        "127.0.0.1",
        endpoints.ports[case],
        server_name=NAME,
        ca_bundle=str(endpoints.ca_bundle),
        connect_timeout=2,
        handshake_timeout=1.5,
    )


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_each_case_has_exactly_its_state(endpoints, case):
    result = _probe(endpoints, case)

    assert result.state == EXPECTED[case], result.error
    if result.state == "unreachable":
        assert result.days_left is None and result.not_after is None
        assert result.error
    else:
        assert result.not_after is not None and result.issuer and result.tls_version


def test_a_valid_certificate_reports_its_dates_names_and_version(endpoints):
    result = _probe(endpoints, "valid_90")

    assert result.verified and result.error is None
    assert result.days_left == pytest.approx(90, abs=0.01)
    assert result.sans == (NAME,)
    assert result.issuer == "CN=Stellar Ops Test Root"
    assert result.tls_version in ("TLSv1.2", "TLSv1.3")
    assert len(result.chain) == 2  # the leaf and the trusted root


def test_an_intermediate_expiring_first_sets_days_left(endpoints):
    result = _probe(endpoints, "intermediate_first")

    assert result.not_after is not None and result.chain_not_after is not None
    assert (result.not_after - result.chain_not_after).days >= 84
    assert result.days_left == pytest.approx(5, abs=0.01)
    assert result.expiring_subject == "CN=Intermediate expiring first"
    assert "before the leaf" in flow.describe(result)


def test_expired_is_not_unreachable_and_still_names_its_dates(endpoints):
    expired = _probe(endpoints, "expired")
    down = _probe(endpoints, "nothing_listening")

    assert expired.state == "expired" and expired.days_left is not None and expired.days_left < 0
    assert "expired" in (expired.error or "")
    assert down.state == "unreachable" and "refused" in (down.error or "").lower()


def test_a_handshake_that_never_completes_times_out_as_unreachable(endpoints):
    result = _probe(endpoints, "no_handshake")

    assert result.state == "unreachable"
    assert "handshake" in (result.error or "") and "timed out" in (result.error or "")


def test_a_wrong_hostname_is_named_in_the_error(endpoints):
    result = _probe(endpoints, "wrong_host")

    assert result.state == "invalid"
    assert "does not name escrow.test" in (result.error or "")
    assert result.sans == ("other.test",)  # read from the unverified handshake


def _domain(endpoints, case: str) -> TlsDomain:
    return TlsDomain(
        host="127.0.0.1", port=endpoints.ports[case], server_name=NAME, ca_bundle=str(endpoints.ca_bundle)
    )


def _gateway_samples(stack, label: str) -> dict[tuple[str, str], float]:
    text = requests.get(f"{stack.url('pushgateway')}/metrics", timeout=5).text
    samples = {}
    for line in text.splitlines():
        if line.startswith("stellar_tls_cert_") and f'domain="{label}"' in line:
            name = line.split("{", 1)[0]
            state = line.split('state="', 1)[1].split('"', 1)[0] if 'state="' in line else ""
            samples[(name, state)] = float(line.rsplit(" ", 1)[1])
    return samples


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_each_state_sends_its_alert_and_pushes_its_metrics(endpoints, case, stack, ops, receiver):
    ops.update(tls={"handshake_timeout_seconds": 1.5, "connect_timeout_seconds": 2})
    rt = env.runtime()
    domain = _domain(endpoints, case)

    result = flow.probe_domain(rt, domain)

    state = EXPECTED[case]
    assert result.state == state
    texts = receiver.texts()
    expected_alert = ALERTS[state]
    if expected_alert is None:
        assert texts == []
    else:
        (text,) = texts
        assert f"{expected_alert}: {domain.label}" in text
        assert "[P2]" in text and "RB-004" in text
        other = {"TLSCertExpiringSoon", "TLSEndpointUnreachable"} - {expected_alert}
        assert not any(name in text for name in other)
    samples = _gateway_samples(stack, domain.label)
    assert {s for (name, s), v in samples.items() if name == "stellar_tls_cert_state" and v == 1.0} == {state}
    assert {s for (name, s) in samples if name == "stellar_tls_cert_state"} == set(STATES)
    expiry = samples.get(("stellar_tls_cert_expiry_days", ""))
    if state == "unreachable":
        assert expiry is None
    else:
        assert expiry == pytest.approx(result.days_left, abs=0.01)
