"""The renewal end to end with real parts: pebble issues, certbot renews, nginx reloads, the
probe sees the new certificate; a failing certbot leaves the old one served and the step red."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from stellar_ops.cli import env
from stellar_ops.core.processes import wait_until
from stellar_ops.dev.acme import AcmeLab
from stellar_ops.tls import flow
from stellar_ops.tls.renewal import RenewalError

pytestmark = pytest.mark.integration

CLI = str(Path(sys.executable).parent / "stellar-ops")
TEN_DAYS = 10 * 86400


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AcmeLab]:
    with AcmeLab(tmp_path_factory.mktemp("acme"), validity_seconds=TEN_DAYS) as running:
        yield running


def settled_serial(lab: AcmeLab) -> str | None:
    """The serial nginx serves once its old workers have drained: the same answer three times."""
    seen: list[str | None] = []

    def settled() -> bool:
        seen.append(lab.served_serial())
        return len(seen) >= 3 and len(set(seen[-3:])) == 1

    wait_until(settled, timeout=20, interval=0.3, what="nginx to serve one certificate")
    return seen[-1]


def _runtime(ops, lab: AcmeLab, **tls):
    ops.update(tls=lab.tls_config(**tls))
    rt = env.runtime()
    (domain,) = flow.list_domains(rt)
    return rt, domain


def test_a_short_lived_certificate_is_renewed_through_acme_and_served(lab, ops, receiver):
    rt, domain = _runtime(ops, lab)
    before = flow.probe_domain(rt, domain, alert=False)
    assert before.state == "critical"  # 10 days: under critical_days
    assert before.issuer and before.issuer.startswith("CN=Pebble Intermediate CA")

    renewed = flow.renew_domain(rt, domain, before.as_dict(), force=False)

    assert renewed is not None
    after = renewed["after"]
    assert after["serial"] != before.serial
    assert after["not_after"] > before.as_dict()["not_after"]
    assert lab.served_serial() == after["serial"]
    assert lab.served_serial() == after["serial"]
    assert "under tls.renew_below_days" in renewed["reason"]
    (message,) = receiver.texts()
    assert "TLS certificate renewed" in message
    assert f"*Old expiry:* {before.as_dict()['not_after']}" in message
    assert f"*New expiry:* {after['not_after']}" in message


def test_nothing_due_is_not_renewed(lab, ops):
    rt, domain = _runtime(ops, lab, renew_below_days=5, critical_days=5, warning_days=6)
    before = flow.probe_domain(rt, domain, alert=False)
    assert before.state == "ok"

    assert flow.renew_domain(rt, domain, before.as_dict(), force=False) is None
    assert lab.served_serial() == before.serial


def test_a_failing_certbot_leaves_the_old_certificate_served(lab, ops, receiver):
    # An ACME server where nothing listens: certbot fails after its own checks.
    rt, domain = _runtime(ops, lab, certbot_server="https://127.0.0.1:1/dir")
    before = flow.probe_domain(rt, domain, alert=False)

    with pytest.raises(
        RenewalError, match="certbot renew of escrow failed .*served certificate is unchanged"
    ):
        flow.renew_domain(rt, domain, before.as_dict(), force=True)

    assert lab.served_serial() == before.serial
    assert flow.probe_domain(rt, domain, alert=False).serial == before.serial
    assert not any("TLS certificate renewed" in t for t in receiver.texts())


def test_a_renewal_nginx_does_not_serve_fails(lab, ops):
    # certbot renews, but the "reload" reaches no nginx: the served serial stays the same.
    rt, domain = _runtime(
        ops, lab, nginx_reload_command=["true"], reprobe_attempts=2, reload_settle_seconds=0.2
    )
    before = flow.probe_domain(rt, domain, alert=False)

    with pytest.raises(RenewalError, match="still serves the certificate with serial"):
        flow.renew_domain(rt, domain, before.as_dict(), force=True)
    lab.reload_nginx()  # leave the lab serving its newest certificate, once its new workers answer
    assert settled_serial(lab) != before.serial


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=300, env=dict(os.environ))


def test_the_cli_checks_and_renews(lab, ops):
    ops.update(tls=lab.tls_config())
    served = settled_serial(lab)

    checked = _cli("certs", "check", "--json", "--no-alerts")
    assert checked.returncode == 1, checked.stderr  # critical: 10 days left
    (row,) = json.loads(checked.stdout)
    assert row["domain"] == f"escrow.test@127.0.0.1:{lab.https_port}"
    assert row["state"] == "critical"
    assert row["serial"] == served
    assert {"domain", "state", "days_left", "not_after", "issuer"} <= set(row)

    renewed = _cli("certs", "renew", "--domain", "escrow.test", "--force")
    assert renewed.returncode == 0, renewed.stderr
    assert "renewed (forced renewal)" in renewed.stdout
    assert settled_serial(lab) != served
    latest = ops.store().get_json(f"{ops.prefix}tls/latest.json")
    (entry,) = latest["domains"]
    assert set(entry) == {"host", "port", "server_name", "state", "days_left", "not_after", "error"}
    assert entry["server_name"] == "escrow.test" and entry["port"] == lab.https_port
