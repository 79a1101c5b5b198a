"""The health checks' pure parts: states, thresholds, timeouts, the message and the metrics."""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from stellar_ops.core.config import AlertsConfig
from stellar_ops.core.errors import ConfigError
from stellar_ops.health import certificates, disk, lag, overnight, summary
from stellar_ops.health.config import HealthConfig
from stellar_ops.health.results import CheckResult, parse_utc, run_all, run_bounded, worst
from stellar_ops.health.tls_probe import CertProbe
from stellar_ops.registry import parse_config

NOW = datetime(2026, 12, 2, 7, 0, tzinfo=UTC)


def test_worst_ranks_critical_over_warning_over_unknown():
    assert worst(["ok", "unknown"]) == "unknown"
    assert worst(["unknown", "warning", "ok"]) == "warning"
    assert worst(["warning", "critical", "unknown"]) == "critical"
    assert worst([]) == "ok"


def test_a_check_past_its_timeout_is_unknown_with_the_reason():
    release = threading.Event()

    def hangs() -> CheckResult:
        release.wait(30)
        return CheckResult("slow", "ok", "never seen")

    result = run_bounded("slow", hangs, 0.2)
    release.set()
    assert result.status == "unknown"
    assert "did not finish within 0.2s" in result.detail


def test_a_check_that_raises_is_unknown_with_the_error():
    def broken() -> CheckResult:
        raise RuntimeError("the endpoint  answered\nnonsense")

    result = run_bounded("broken", broken, 5)
    assert result.status == "unknown"
    assert result.detail == "could not be checked: the endpoint answered nonsense"


def test_checks_run_at_the_same_time():
    # Each check waits for the other: run one after the other, the barrier would break.
    barrier = threading.Barrier(2, timeout=5)

    def meets(name: str):
        def check() -> CheckResult:
            barrier.wait()
            return CheckResult(name, "ok", "met")

        return check

    results = run_all({"a": meets("a"), "b": meets("b")}, timeout=10)
    assert [(r.name, r.status) for r in results] == [("a", "ok"), ("b", "ok")]


def test_parse_utc():
    assert parse_utc("2026-12-02T06:00:00Z") == datetime(2026, 12, 2, 6, tzinfo=UTC)
    assert parse_utc("2026-12-02T06:00:00.123456789Z") is None or parse_utc("2026-12-02T06:00:00.123Z")
    assert parse_utc("2026-12-02T06:00:00") == datetime(2026, 12, 2, 6, tzinfo=UTC)
    assert parse_utc("yesterday") is None
    assert parse_utc(None) is None


def test_config_rejects_inverted_thresholds_naming_the_field():
    with pytest.raises(ConfigError, match="health.disk_critical_percent"):
        parse_config({"health": {"disk_warning_percent": 90, "disk_critical_percent": 80}})
    with pytest.raises(ConfigError, match="health.endpoints.0.url"):
        parse_config({"health": {"endpoints": [{"name": "nginx", "url": "nginx:443"}]}})
    with pytest.raises(ConfigError, match="health.services_source"):
        parse_config({"health": {"services_source": "kubernetes"}})


# --- alerts ---------------------------------------------------------------------------------


def _alert(name: str, severity: str, started: datetime, fingerprint: str, state: str = "active", **labels):
    return {
        "labels": {"alertname": name, "severity": severity, **labels},
        "annotations": {"summary": f"{name} summary"},
        "startsAt": started.isoformat().replace("+00:00", "Z"),
        "fingerprint": fingerprint,
        "status": {"state": state},
    }


def test_alerts_grouped_by_severity_with_age_and_new_since_the_previous_check():
    alerts = [
        _alert("BackupStale", "P2", NOW - timedelta(hours=3), "f2"),
        _alert("DatabaseDown", "P1", NOW - timedelta(minutes=20), "f1"),
        _alert("Old", "P3", NOW - timedelta(days=3), "f3"),
        _alert("Muted", "P1", NOW - timedelta(hours=1), "f4", state="suppressed"),
        _alert("Self", "P1", NOW - timedelta(hours=1), "f5", dag_id="morning_health_check"),
        _alert("HealthCheckCritical", "P2", NOW - timedelta(hours=1), "f6", procedure="morning_health_check"),
    ]
    previous = {"checked_at": (NOW - timedelta(days=1)).isoformat(), "alerts": {"f3": {"alertname": "Old"}}}
    result, record = overnight.summarize(
        alerts, now=NOW, previous=previous, lookback=timedelta(hours=24), ignore_dags=["morning_health_check"]
    )
    assert result.status == "critical"
    assert result.detail.startswith("P1: DatabaseDown (20 min); P2: BackupStale (3 h); P3: Old (3 days)")
    assert "2 new since 2026-12-01 07:00 UTC" in result.detail
    assert "1 silenced or inhibited" in result.detail
    assert [i["alertname"] for i in result.items] == ["DatabaseDown", "BackupStale", "Old", "Muted"]
    assert set(record["alerts"]) == {"f1", "f2", "f3"}
    assert record["checked_at"] == NOW.isoformat()


def test_alerts_resolved_since_the_previous_check_are_listed():
    previous = {
        "checked_at": (NOW - timedelta(days=1)).isoformat(),
        "alerts": {"gone": {"alertname": "RedisDown", "severity": "P2", "started_at": "x", "summary": ""}},
    }
    result, record = overnight.summarize(
        [_alert("Minor", "P2", NOW - timedelta(hours=2), "m")],
        now=NOW,
        previous=previous,
        lookback=timedelta(hours=24),
        ignore_dags=[],
    )
    assert result.status == "warning"
    assert "1 resolved since: RedisDown" in result.detail
    assert result.items[-1]["state"] == "resolved"
    assert list(record["alerts"]) == ["m"]


def test_nothing_firing_is_ok():
    result, _ = overnight.summarize([], now=NOW, previous=None, lookback=timedelta(hours=24), ignore_dags=[])
    assert (result.status, result.detail) == ("ok", "nothing firing")


# --- disk -----------------------------------------------------------------------------------


def _statvfs(percent_used: float, size_blocks: int = 1000):
    used = int(size_blocks * percent_used / 100)
    return lambda path: SimpleNamespace(
        f_blocks=size_blocks, f_bfree=size_blocks - used, f_bavail=size_blocks - used, f_frsize=4096
    )


@pytest.mark.parametrize(
    ("percent", "status"), [(10, "ok"), (69.9, "ok"), (70, "warning"), (84.9, "warning"), (85, "critical")]
)
def test_disk_thresholds(percent, status):
    result = disk.check(HealthConfig(disk_paths=["/data"]), statvfs=_statvfs(percent))
    assert result.status == status
    assert result.items[0]["path"] == "/data"
    assert (result.alert is not None) == (status == "critical")


def test_nothing_to_measure_is_unknown():
    result = disk.check(HealthConfig(disk_paths=[]))
    assert result.status == "unknown"
    assert "health.disk_volumes" in result.detail


def test_a_volume_without_a_mountpoint_is_unknown_with_the_reason():
    where = [disk.Place("/", "/"), disk.Place("volume pgdata", None, "not measured: no Docker connection")]
    result = disk.check(HealthConfig(), statvfs=_statvfs(10), where=where)
    assert result.status == "unknown"
    assert result.detail.endswith("volume pgdata: not measured: no Docker connection")


def test_disk_counts_the_root_reserve_as_used_like_df():
    stats = SimpleNamespace(f_blocks=1000, f_bfree=300, f_bavail=250, f_frsize=4096)
    assert disk.usage("/", lambda path: stats)["percent"] == pytest.approx(73.7, abs=0.1)


def test_a_missing_path_is_unknown_naming_it(tmp_path):
    result = disk.check(HealthConfig(disk_paths=[str(tmp_path / "nope")]))
    assert result.status == "unknown"
    assert str(tmp_path / "nope") in result.detail


def test_disk_of_a_real_path(tmp_path):
    result = disk.check(
        HealthConfig(disk_paths=[str(tmp_path)], disk_warning_percent=99.9, disk_critical_percent=100)
    )
    stats = os.statvfs(tmp_path)
    assert result.status == "ok"
    assert 0 < result.items[0]["percent"] < 99.9
    # other writers share the filesystem: the free space moves, its order of magnitude does not
    assert result.items[0]["available_bytes"] == pytest.approx(stats.f_bavail * stats.f_frsize, rel=0.05)


# --- indexer lag ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "status"), [(2.5, "ok"), (60, "ok"), (61, "warning"), (300, "warning"), (301, "critical")]
)
def test_indexer_lag_thresholds(seconds, status):
    result = lag.check({"status": "ok", "indexer_lag_seconds": seconds}, HealthConfig())
    assert result.status == status
    if status == "critical":
        assert result.alert == lag.LAG
        assert "P2 IndexerLag" in result.detail


def test_health_without_a_lag_is_unknown():
    assert lag.check({"status": "ok"}, HealthConfig()).status == "unknown"


# --- certificates ---------------------------------------------------------------------------


def test_certificate_states_map_to_check_states():
    document = {
        "checked_at": NOW.isoformat(),
        "domains": [
            {"host": "a", "server_name": "a.test", "state": "ok", "days_left": 60.2},
            {"host": "b", "server_name": "b.test", "state": "warning", "days_left": 20.0},
        ],
    }
    result = certificates.from_results(document, "recorded")
    assert result.status == "warning"
    assert result.detail.startswith("fewest days left 20: a.test 60d, b.test 20d warning")
    document["domains"].append({"host": "c", "state": "unreachable", "days_left": None})
    assert certificates.from_results(document, "recorded").status == "critical"


def test_no_results_and_no_domains_is_unknown():
    result = certificates.check(None, "backups/", HealthConfig(), prober=lambda *a, **k: None, now=NOW)
    assert result.status == "unknown"
    assert "health.tls_domains" in result.detail


def test_fresh_probe_of_each_domain_when_there_are_no_results():
    seen = []

    def prober(host, port, server_name, **options):
        seen.append((host, port, server_name, options["ca_file"]))
        return CertProbe(host, port, server_name or host, "critical", 3.0, "2026-12-05T07:00:00+00:00")

    settings = HealthConfig(
        tls_domains=[{"host": "127.0.0.1", "port": 8443, "server_name": "escrow.test"}], tls_ca_file="/ca.pem"
    )
    result = certificates.check(None, "backups/", settings, prober=prober, now=NOW)
    assert seen == [("127.0.0.1", 8443, "escrow.test", "/ca.pem")]
    assert result.status == "critical"
    assert "probed now" in result.detail
    assert result.alert == certificates.EXPIRING


# --- the message and the metrics ------------------------------------------------------------


def _results() -> list[CheckResult]:
    from stellar_ops.health.services import DOWN

    return [
        CheckResult("services", "critical", "1 of 4 down: s3 (refused)", alert=DOWN, runbook="RB-001"),
        CheckResult("alerts", "ok", "nothing firing"),
        CheckResult("backups", "warning", "no DR report in the bucket"),
        CheckResult("certificates", "unknown", "did not finish within 30s"),
    ]


def test_the_summary_message_is_a_table_with_runbook_links():
    payload = summary.message(
        _results(), AlertsConfig(runbook_base_url="https://docs.example/runbooks"), run="r1"
    )
    text = payload["text"]
    assert text.splitlines()[0] == ":red_circle: Morning health check: 1 critical (services)"
    assert "services      critical  1 of 4 down: s3 (refused)" in text
    assert "alerts        ok        nothing firing" in text
    assert (
        "• services: P1 ServiceDown, <https://docs.example/runbooks#rb-001|RB-001 Database or API unavailable>"
        in text
    )
    assert "• backups: <https://docs.example/runbooks#sec-1.1|SEC-1.1 Morning health check>" in text
    assert "alerts: " not in text.split("*Runbooks:*")[1]  # ok checks need no runbook
    assert summary.severity(_results()) == "P1"


def test_a_healthy_summary_goes_to_ops():
    results = [CheckResult("disk", "ok", "/ 24%"), CheckResult("alerts", "warning", "P2: X (1h)")]
    payload = summary.message(results, AlertsConfig(), run="r")
    assert payload["text"].startswith(":warning: Morning health check: healthy, with warnings")
    assert summary.severity(results) is None


def test_metrics_one_gauge_per_check():
    points = summary.metrics(_results())
    assert [(m.name, m.labels["check"], m.value) for m in points] == [
        ("stellar_health_check_status", "services", 2.0),
        ("stellar_health_check_status", "alerts", 0.0),
        ("stellar_health_check_status", "backups", 1.0),
        ("stellar_health_check_status", "certificates", 3.0),
    ]


def test_a_result_survives_xcom():
    from stellar_ops.health.services import DOWN

    result = CheckResult("services", "critical", "down", [{"name": "s3"}], DOWN, "RB-001", 1.5)
    assert CheckResult.from_dict(result.as_dict()) == result
