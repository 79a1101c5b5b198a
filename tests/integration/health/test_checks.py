"""Each health check against the stack's real servers: Alertmanager, the API stand-in, S3, and
servers that are stopped or hang."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests

from stellar_ops.cli.env import EnvResources, runtime
from stellar_ops.health import flow
from stellar_ops.runtime import Runtime
from tests.integration.health.conftest import FakeDockerApi

pytestmark = pytest.mark.integration


def _post_alerts(stack, *alerts):
    response = requests.post(f"{stack.url('alertmanager')}/api/v2/alerts", json=list(alerts), timeout=5)
    response.raise_for_status()


def _alert(name, severity, *, hours_ago=1.0, resolved=False):
    now = datetime.now(UTC)
    document = {
        "labels": {"alertname": name, "severity": severity, "test": "health"},
        "annotations": {"summary": f"{name} for the health check test"},
        "startsAt": (now - timedelta(hours=hours_ago)).isoformat(),
    }
    if resolved:
        document["endsAt"] = (now - timedelta(seconds=1)).isoformat()
    return document


@pytest.fixture
def alertmanager(stack):
    """Alertmanager with none of this test's alerts left firing afterwards."""
    posted: list[dict] = []

    def post(*alerts):
        posted.extend(alerts)
        _post_alerts(stack, *alerts)

    yield post
    for alert in posted:
        alert = {**alert, "endsAt": (datetime.now(UTC) - timedelta(seconds=1)).isoformat()}
        _post_alerts(stack, alert)


@pytest.fixture
def api_control(stack):
    def control(**settings):
        response = requests.post(
            f"{stack.url('api')}/_control", json=settings, headers={"X-API-Key": stack.admin_key}, timeout=5
        )
        response.raise_for_status()

    yield control
    control(indexer_lag_seconds=2.5, health_status="ok", delay_ms=0)


def test_alerts_firing_now_and_resolved_since_the_previous_check(ops, alertmanager):
    alertmanager(
        _alert("HealthTestDatabaseDown", "P1", hours_ago=0.5),
        _alert("HealthTestBackupStale", "P2", hours_ago=5),
        _alert("HealthTestSlowQueries", "P3", hours_ago=36),
    )
    rt = runtime()
    first = flow.check(rt, "alerts")
    assert first.status == "critical", first
    # the session's Alertmanager may also hold other tests' alerts: each of ours in its severity's group
    assert re.search(r"P1: [^;]*HealthTestDatabaseDown \(30 min\)", first.detail), first.detail
    assert re.search(r"P2: [^;]*HealthTestBackupStale \(5 h\)", first.detail), first.detail
    assert re.search(r"P3: [^;]*HealthTestSlowQueries \(1 day 12 h\)", first.detail), first.detail
    names = {item["alertname"]: item for item in first.items}
    assert names["HealthTestDatabaseDown"]["new"] is True
    assert names["HealthTestSlowQueries"]["new"] is False  # older than the lookback

    alertmanager(_alert("HealthTestDatabaseDown", "P1", hours_ago=0.5, resolved=True))
    second = flow.check(rt, "alerts")
    assert second.status == "warning", second
    assert "HealthTestDatabaseDown" not in second.detail.split("resolved since")[0]
    assert "1 resolved since: HealthTestDatabaseDown" in second.detail
    assert [i["state"] for i in second.items if i["alertname"] == "HealthTestDatabaseDown"] == ["resolved"]


def test_a_cli_look_does_not_move_the_previous_check(ops, alertmanager):
    alertmanager(_alert("HealthTestFlapping", "P2"))
    rt = runtime()
    flow.check(rt, "alerts")
    alertmanager(_alert("HealthTestFlapping", "P2", resolved=True))
    flow.check(rt, "alerts", record=False)  # an operator's look in between
    assert "1 resolved since: HealthTestFlapping" in flow.check(rt, "alerts").detail


def test_indexer_lag_on_both_sides_of_five_minutes(ops, api_control):
    rt = runtime()
    api_control(indexer_lag_seconds=299)
    below = flow.check(rt, "indexer_lag")
    assert below.status == "warning"
    assert "4 min 59 s behind" in below.detail
    api_control(indexer_lag_seconds=301)
    above = flow.check(rt, "indexer_lag")
    assert above.status == "critical"
    assert above.alert is not None and (above.alert.name, above.alert.severity) == ("IndexerLag", "P2")
    api_control(indexer_lag_seconds=3)
    assert flow.check(rt, "indexer_lag").status == "ok"


def test_fresh_backup_and_passed_dr_test_are_ok(ops, backups):
    older = backups.add(hours_ago=30, size=10_000)
    backups.dr_report(older, success=True, days_ago=2)
    newest = backups.add(hours_ago=5, size=9_000)
    result = flow.check(runtime(), "backups")
    assert result.status == "ok", result
    assert result.items[0]["key"] == newest
    assert "newest verified backup 5.0h old" in result.detail
    assert "DR test passed 2.0d ago" in result.detail


def test_a_stale_backup_is_critical(ops, backups):
    key = backups.add(hours_ago=27)
    backups.dr_report(key, success=True, days_ago=1)
    result = flow.check(runtime(), "backups")
    assert result.status == "critical"
    assert "27.0h old (over 26h)" in result.detail
    assert result.alert is not None and result.alert.name == "BackupStale"
    ops.update(health={"backup_max_age_hours": 30})
    assert flow.check(runtime(), "backups").status == "ok"


def test_a_suspiciously_small_backup_is_critical(ops, backups):
    backups.add(hours_ago=25, size=100_000)
    key = backups.add(hours_ago=1, size=40_000)
    backups.dr_report(key, success=True, days_ago=0.1)
    result = flow.check(runtime(), "backups")
    assert result.status == "critical", result
    assert "40% of the previous verified backup's size" in result.detail
    assert result.alert is not None and result.alert.name == "BackupTooSmall"
    ops.update(health={"backup_min_size_ratio": 0.4})
    assert flow.check(runtime(), "backups").status == "ok"


def test_a_backup_without_a_manifest_does_not_count(ops, backups):
    backups.add(hours_ago=40)
    unverified = backups.add(hours_ago=1, manifest=False)
    result = flow.check(runtime(), "backups")
    assert result.status == "critical"  # the newest *verified* one is 40 h old
    assert "40.0h old" in result.detail
    assert f"1 newer backup(s) without a manifest: {unverified}" in result.detail
    assert "no DR report in the bucket" in result.detail


def test_no_backup_at_all_is_critical(ops):
    result = flow.check(runtime(), "backups")
    assert result.status == "critical"
    assert "no verified backup under s3://stellar-backups/" in result.detail


def test_a_failed_dr_test_is_critical(ops, backups):
    key = backups.add(hours_ago=2)
    backups.dr_report(key, success=False, days_ago=3)
    result = flow.check(runtime(), "backups")
    assert result.status == "critical"
    assert "the newest DR test FAILED 3.0d ago (row_counts)" in result.detail


def test_services_of_a_healthy_stack_answer(ops):
    result = flow.check(runtime(), "services")
    assert result.status == "ok", result
    assert {i["name"] for i in result.items} == {"postgres", "redis", "api", "s3"}
    assert all(i["up"] for i in result.items)
    assert "no Docker" in result.detail or "Docker daemon did not answer" in result.detail


def test_a_stopped_server_is_critical(ops, stack_handle):
    stack_handle.stop_s3()
    try:
        result = flow.check(runtime(), "services")
    finally:
        stack_handle.start_s3()
    assert result.status == "critical"
    down = [i["name"] for i in result.items if not i["up"]]
    assert down == ["s3"]
    assert result.detail.startswith("1 of 4 down: s3 (")
    assert result.alert is not None and result.alert.severity == "P1"


def test_a_service_that_hangs_is_down_and_does_not_hold_the_others(ops, hanging_server):
    ops.update(
        health={
            "probe_timeout_seconds": 1,
            "endpoints": [{"name": "nginx", "url": f"http://127.0.0.1:{hanging_server.port}/"}],
        }
    )
    result = flow.check(runtime(), "services")
    assert result.status == "critical"
    (nginx,) = [i for i in result.items if i["name"] == "nginx"]
    assert not nginx["up"]
    assert nginx["detail"] == "did not answer in time"
    assert all(i["up"] for i in result.items if i["name"] != "nginx")


def test_a_check_longer_than_its_timeout_is_unknown(ops, hanging_server):
    ops.update(
        health={
            "probe_timeout_seconds": 20,
            "check_timeout_seconds": 1,
            "endpoints": [
                {"name": "legacy", "url": f"tcp://127.0.0.1:{hanging_server.port}"},
                {"name": "tls", "url": f"tls://127.0.0.1:{hanging_server.port}"},
            ],
        }
    )
    result = flow.check(runtime(), "services")
    assert result.status == "unknown"
    assert result.detail == "did not finish within 1s (health.check_timeout_seconds)"


def test_nginx_over_tls_is_a_verified_handshake(ops, tls_server, ca, monkeypatch):
    server = tls_server("127.0.0.1", days=60)
    ops.update(health={"endpoints": [{"name": "nginx", "url": f"tls://127.0.0.1:{server.port}"}]})
    untrusted = flow.check(runtime(), "services")
    assert untrusted.status == "critical"
    assert "nginx" in untrusted.detail and "CERTIFICATE_VERIFY_FAILED" in untrusted.detail
    monkeypatch.setenv("SSL_CERT_FILE", str(ca.ca_file))
    trusted = flow.check(runtime(), "services")
    assert trusted.status == "ok", trusted
    (nginx,) = [i for i in trusted.items if i["name"] == "nginx"]
    assert nginx["detail"].startswith("TLS handshake with 127.0.0.1")


class _WithDocker(EnvResources):
    def __init__(self, config, url):
        super().__init__(config)
        self.url = url

    def docker(self):
        import docker

        return docker.APIClient(base_url=self.url, version="1.43", timeout=5)


def test_services_through_docker_state_health_and_restarts(ops):
    containers = [
        {
            "id": "a1",
            "name": "stellar-api-1",
            "service": "api",
            "state": "running",
            "health": "healthy",
            "restarts": 2,
        },
        {
            "id": "p1",
            "name": "stellar-postgres-1",
            "service": "postgres",
            "state": "running",
            "health": "healthy",
        },
        {"id": "r1", "name": "stellar-redis-1", "service": "redis", "state": "exited"},
    ]
    fake = FakeDockerApi(containers)
    try:
        ops.update(health={"services": ["api", "postgres", "redis", "nginx"], "services_source": "docker"})
        rt = runtime()
        rt = Runtime(rt.config, _WithDocker(rt.config, fake.url))
        first = flow.check(rt, "services")
        assert first.status == "critical"
        assert "redis is exited" in first.detail and "nginx has no container" in first.detail
        by_name = {i["name"]: i for i in first.items}
        assert by_name["api"]["health"] == "healthy"
        assert by_name["api"]["restarts_since_previous"] is None  # no previous check on record

        containers[2].update(state="running")
        containers[0].update(restarts=5)
        ops.update(health={"services": ["api", "postgres", "redis"], "services_source": "docker"})
        second = flow.check(
            Runtime(
                rt.config.with_overrides({"health": {"services": ["api", "postgres", "redis"]}}), rt.resources
            ),
            "services",
        )
        assert second.status == "warning", second
        assert second.detail == "api restarted 3 times since the previous check"

        containers[1].update(health="unhealthy")
        third = flow.check(
            Runtime(
                rt.config.with_overrides({"health": {"services": ["api", "postgres", "redis"]}}), rt.resources
            ),
            "services",
        )
        assert third.status == "critical"
        assert "postgres is unhealthy" in third.detail
    finally:
        fake.close()


def test_disk_of_docker_volumes_by_their_mountpoints(ops, tmp_path):
    fake = FakeDockerApi(
        [], volumes={"pgdata": str(tmp_path), "elsewhere": "/var/lib/docker/volumes/x/_data"}
    )
    try:
        ops.update(health={"disk_paths": [], "disk_volumes": ["pgdata", "elsewhere", "missing"]})
        rt = runtime()
        result = flow.check(Runtime(rt.config, _WithDocker(rt.config, fake.url)), "disk")
    finally:
        fake.close()
    by_name = {i["name"]: i for i in result.items}
    assert by_name["volume pgdata"]["path"] == str(tmp_path)
    assert by_name["volume pgdata"]["state"] == "ok"
    assert "is not visible here" in by_name["volume elsewhere"]["error"]
    assert "no such volume" in by_name["volume missing"]["error"]
    assert result.status == "unknown"
    without_docker = flow.check(runtime(), "disk")
    assert "volume pgdata: not measured: " in without_docker.detail


def test_docker_required_but_absent_is_unknown(ops):
    ops.update(health={"services_source": "docker"})
    result = flow.check(runtime(), "services")
    assert result.status == "unknown"
    assert "services are checked through Docker" in result.detail


def test_disk_of_a_configured_path(ops, tmp_path):
    import os

    stats = os.statvfs(tmp_path)
    used = 100 * (stats.f_blocks - stats.f_bfree) / (stats.f_blocks - stats.f_bfree + stats.f_bavail)
    ops.update(
        health={
            "disk_paths": [str(tmp_path)],
            "disk_warning_percent": max(1, used - 5),
            "disk_critical_percent": 100,
        }
    )
    assert flow.check(runtime(), "disk").status == "warning"
    ops.update(
        health={
            "disk_paths": [str(tmp_path)],
            "disk_warning_percent": max(1, used - 10),
            "disk_critical_percent": max(1, used - 5),
        }
    )
    assert flow.check(runtime(), "disk").status == "critical"


def test_certificates_from_the_tls_procedure_results(ops):
    store = ops.store()
    now = datetime.now(UTC)
    document = {
        "checked_at": (now - timedelta(hours=2)).isoformat().replace("+00:00", "Z"),
        "domains": [
            {
                "host": "escrow.test",
                "port": 443,
                "server_name": "escrow.test",
                "state": "ok",
                "days_left": 61.5,
                "not_after": None,
                "error": None,
            },
            {
                "host": "api.escrow.test",
                "port": 443,
                "server_name": "api.escrow.test",
                "state": "critical",
                "days_left": 4.2,
                "not_after": None,
                "error": None,
            },
        ],
    }
    store.put_json(f"{ops.prefix}tls/latest.json", document)
    result = flow.check(runtime(), "certificates")
    assert result.status == "critical"
    assert result.detail.startswith("fewest days left 4: escrow.test 62d, api.escrow.test 4d critical")
    assert "recorded 2.0h ago by tls_cert_check" in result.detail


def test_old_tls_results_give_way_to_a_fresh_probe(ops, ca, tls_server):
    server = tls_server("escrow.test", days=20)
    store = ops.store()
    old = {
        "checked_at": (datetime.now(UTC) - timedelta(hours=20)).isoformat(),
        "domains": [{"host": "x", "state": "ok", "days_left": 80}],
    }
    store.put_json(f"{ops.prefix}tls/latest.json", old)
    ops.update(
        health={
            "tls_domains": [{"host": "127.0.0.1", "port": server.port, "server_name": "escrow.test"}],
            "tls_ca_file": str(ca.ca_file),
        }
    )
    result = flow.check(runtime(), "certificates")
    assert result.status == "warning", result
    assert "escrow.test 20d warning" in result.detail
    assert "probed now (TLS results are 20.0h old (over 13h))" in result.detail
    store.delete(f"{ops.prefix}tls/latest.json")
    assert "probed now (no TLS results at" in flow.check(runtime(), "certificates").detail


def test_every_check_at_once(ops, backups):
    backups.add(hours_ago=1)
    results = flow.check_all(runtime())
    assert [r.name for r in results] == [
        "services",
        "alerts",
        "backups",
        "disk",
        "indexer_lag",
        "certificates",
        "wal_archive",
    ]
    statuses = {r.name: r.status for r in results}
    assert statuses["services"] == "ok" and statuses["indexer_lag"] == "ok"
    assert statuses["wal_archive"] == "ok"  # the stack's database archives its WAL (barman-cloud)
    assert statuses["backups"] == "warning"  # no DR report yet
    assert statuses["certificates"] == "unknown"


@pytest.fixture
def redis_with_password(tmp_path):
    import shutil
    import subprocess

    from stellar_ops.core.processes import free_port, port_open

    port = free_port()
    argv = [shutil.which("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    argv += ["--requirepass", "s3cret-redis-pw", "--dir", str(tmp_path)]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if port_open(port):
                break
            time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        process.wait(10)


def test_redis_ping_with_a_password(redis_with_password):
    from stellar_ops.core.http import RedisTarget
    from stellar_ops.health import services

    port = redis_with_password
    assert services.redis_ping(RedisTarget("127.0.0.1", port, password="s3cret-redis-pw"), 2) == "PONG"
    wrong = services.timed(
        "redis", lambda: services.redis_ping(RedisTarget("127.0.0.1", port, password="nope"), 2)
    )
    assert not wrong.up and wrong.detail == f"redis://127.0.0.1:{port}/0 refused AUTH"
    none = services.timed("redis", lambda: services.redis_ping(RedisTarget("127.0.0.1", port), 2))
    assert not none.up and "NOAUTH" in none.detail


def test_a_refused_database_login_is_down_without_the_password(ops, stack, monkeypatch):
    wrong = "wrong-pw-" + "x" * 12
    monkeypatch.setenv(
        "DATABASE_URL", f"postgresql://stellar:{wrong}@127.0.0.1:{stack.ports['postgres']}/stellar_escrow"
    )
    result = flow.check(runtime(), "services")
    assert result.status == "critical"
    (postgres,) = [i for i in result.items if i["name"] == "postgres"]
    assert not postgres["up"]
    assert "password authentication failed" in postgres["detail"]
    assert wrong not in json.dumps(result.as_dict())
