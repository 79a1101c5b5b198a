"""The renewal end to end with real parts: pebble issues, certbot renews, nginx reloads, the
probe sees the new certificate; a failing certbot leaves the old one served and the step red."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from stellar_ops.cli import env
from stellar_ops.core.processes import wait_until
from stellar_ops.tls import flow
from stellar_ops.tls.renewal import RenewalError
from stellar_ops_dev.acme import AcmeLab

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


def _short_alerts(receiver) -> list[str]:
    return [t for t in receiver.texts() if "TLSCertShortLifetime" in t]


def test_a_due_certificate_is_renewed_once_then_not_within_the_interval(lab, ops, receiver, capsys):
    # Just above pebble's 10-day lifetime, so a new certificate is still due at the next run.
    rt, domain = _runtime(ops, lab, renew_below_days=10.5, warning_days=11, critical_days=5)
    before = flow.probe_domain(rt, domain, alert=False)
    assert before.state == "warning"  # 10 days: under warning_days
    assert before.issuer and before.issuer.startswith("CN=Pebble Intermediate CA")

    renewed = flow.renew_domain(rt, domain, before.as_dict(), force=False)

    assert renewed["renewed"] is True
    after = renewed["after"]
    assert after["serial"] != before.serial
    assert after["not_after"] > before.as_dict()["not_after"]
    assert lab.served_serial() == after["serial"]
    assert "under tls.renew_below_days" in renewed["reason"]
    (message,) = [t for t in receiver.texts() if "TLS certificate renewed" in t]
    assert f"*Old expiry:* {before.as_dict()['not_after']}" in message
    assert f"*New expiry:* {after['not_after']}" in message
    record = ops.store().get_json(f"{ops.prefix}tls/renewals/escrow.json")
    assert record["serial"] == after["serial"] and record["lifetime_days"] == 10
    renewed_at = datetime.fromisoformat(record["renewed_at"])
    assert abs((datetime.now(UTC) - renewed_at).total_seconds()) < 60

    # The next run, at once: still due (under 10.5 days left), but renewed moments ago.
    second = flow.probe_domain(rt, domain, alert=False)
    assert second.state == "warning" and second.serial == after["serial"]
    capsys.readouterr()

    skipped = flow.renew_domain(rt, domain, second.as_dict(), force=False)

    assert skipped["renewed"] is False
    assert "within tls.min_renewal_interval (24h)" in skipped["reason"]
    assert "within tls.min_renewal_interval (24h)" in capsys.readouterr().err  # said in the log
    assert settled_serial(lab) == after["serial"]
    assert sum("TLS certificate renewed" in t for t in receiver.texts()) == 1
    assert ops.store().get_json(f"{ops.prefix}tls/renewals/escrow.json") == record


def test_force_renewal_overrides_the_interval(lab, ops, receiver, capsys):
    rt, domain = _runtime(ops, lab, renew_below_days=10.5, warning_days=11, critical_days=5)
    first = flow.renew_domain(rt, domain, flow.probe_domain(rt, domain, alert=False).as_dict(), force=True)
    assert first["renewed"] is True
    capsys.readouterr()

    again = flow.renew_domain(rt, domain, flow.probe_domain(rt, domain, alert=False).as_dict(), force=True)

    assert again["renewed"] is True and again["reason"] == "forced renewal"
    assert again["after"]["serial"] != first["after"]["serial"]
    assert settled_serial(lab) == again["after"]["serial"]
    assert "forced past tls.min_renewal_interval" in capsys.readouterr().err
    assert sum("TLS certificate renewed" in t for t in receiver.texts()) == 2


def test_a_ca_issuing_short_certificates_alerts_once(lab, ops, receiver, capsys):
    # renew_below_days (30) above pebble's 10-day lifetime: every new certificate is still due.
    rt, domain = _runtime(ops, lab)

    first = flow.renew_domain(rt, domain, flow.probe_domain(rt, domain, alert=False).as_dict(), force=False)

    assert first["renewed"] is True
    (alert,) = _short_alerts(receiver)
    assert "the CA issues 10-day certificates" in alert
    assert "lower tls.renew_below_days below 10" in alert
    assert first["after"]["state"] == "critical"  # still visible: 10 days, under critical_days
    record = ops.store().get_json(f"{ops.prefix}tls/renewals/escrow.json")
    assert record["short_lifetime_alert"]["lifetime_days"] == 10

    # The next run: due, but renewed moments ago; neither a renewal nor a second alert.
    second = flow.renew_domain(rt, domain, flow.probe_domain(rt, domain, alert=False).as_dict(), force=False)
    assert second["renewed"] is False
    assert settled_serial(lab) == first["after"]["serial"]

    # Past the interval the short lifetime itself holds the renewal back (10 days > a third of 10).
    later = flow.renew_domain(
        rt,
        domain,
        flow.probe_domain(rt, domain, alert=False).as_dict(),
        force=False,
        now=datetime.now(UTC) + timedelta(days=1, hours=1),
    )
    assert later["renewed"] is False
    assert "the CA issues 10-day certificates" in later["reason"]
    assert settled_serial(lab) == first["after"]["serial"]

    # A forced renewal gives another short certificate: the alert is not repeated.
    capsys.readouterr()
    forced = flow.renew_domain(rt, domain, flow.probe_domain(rt, domain, alert=False).as_dict(), force=True)
    assert forced["renewed"] is True
    assert "already alerted at" in capsys.readouterr().err
    assert len(_short_alerts(receiver)) == 1
    assert sum("TLS certificate renewed" in t for t in receiver.texts()) == 2


def test_nothing_due_is_not_renewed(lab, ops):
    rt, domain = _runtime(ops, lab, renew_below_days=5, critical_days=5, warning_days=6)
    before = flow.probe_domain(rt, domain, alert=False)
    assert before.state == "ok"

    skipped = flow.renew_domain(rt, domain, before.as_dict(), force=False)
    assert skipped["renewed"] is False and skipped["summary"] == "not due (ok)"
    assert lab.served_serial() == before.serial
    assert not ops.store().exists(f"{ops.prefix}tls/renewals/escrow.json")


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


def test_the_cli_checks_and_renews_once_per_interval(lab, ops, receiver):
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
    renewed_serial = settled_serial(lab)
    assert renewed_serial != served

    again = _cli("certs", "renew", "--domain", "escrow.test")  # due (10 days < 30), renewed just now
    assert again.returncode == 0, again.stderr
    assert "not renewed:" in again.stdout and "within tls.min_renewal_interval" in again.stdout
    assert settled_serial(lab) == renewed_serial
    assert sum("TLSCertShortLifetime" in t for t in receiver.texts()) == 1  # the CA's 10-day lifetime
    latest = ops.store().get_json(f"{ops.prefix}tls/latest.json")
    (entry,) = latest["domains"]
    assert set(entry) == {"host", "port", "server_name", "state", "days_left", "not_after", "error"}
    assert entry["server_name"] == "escrow.test" and entry["port"] == lab.https_port
