"""API latency, Redis hit rate, container resources and disk against real sources (the Docker
daemon through its API stand-in: no daemon runs here)."""

from __future__ import annotations

import shutil

import pytest
import redis
import requests

from stellar_ops.core.processes import free_port
from stellar_ops.perf import flow
from tests.support.fake_docker import FakeDockerDaemon

pytestmark = pytest.mark.integration


# -- Redis ----------------------------------------------------------------------------------------


@pytest.fixture
def redis_client(stack):
    client = redis.Redis(host="127.0.0.1", port=stack.ports["redis"])
    client.config_resetstat()
    client.set("perf:present", "1")
    yield client
    client.config_resetstat()
    client.close()


def lookups(client: redis.Redis, hits: int, misses: int) -> None:
    client.config_resetstat()
    for _ in range(hits):
        client.get("perf:present")
    for i in range(misses):
        client.get(f"perf:absent:{i}")


@pytest.mark.parametrize(
    ("hits", "misses", "expected"),
    [(71, 29, "ok"), (70, 30, "ok"), (69, 31, "warning"), (60, 40, "warning"), (59, 41, "critical")],
)
def test_redis_hit_rate_on_both_sides_of_each_threshold(runtime, redis_client, hits, misses, expected):
    lookups(redis_client, hits, misses)
    result = flow.run_check(runtime(), "redis_hit_rate")
    assert result.values["keyspace_hits"] == hits
    assert result.values["keyspace_misses"] == misses
    assert result.values["hit_rate_percent"] == pytest.approx(hits)
    assert result.state == expected


def test_redis_without_lookups_unreachable_or_unconfigured_is_unknown(runtime, redis_client, monkeypatch):
    redis_client.config_resetstat()
    assert flow.run_check(runtime(), "redis_hit_rate").state == "unknown"
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    down = flow.run_check(runtime(), "redis_hit_rate")
    assert down.state == "unknown" and "did not answer" in down.summary
    monkeypatch.delenv("REDIS_URL")
    unset = flow.run_check(runtime(), "redis_hit_rate")
    assert unset.state == "unknown" and "not configured" in unset.summary


# -- API latency ----------------------------------------------------------------------------------


@pytest.fixture
def api(stack):
    def control(**settings):
        response = requests.post(
            f"{stack.url('api')}/_control", json=settings, headers={"X-API-Key": stack.admin_key}, timeout=10
        )
        response.raise_for_status()

    def serve(delay_ms: int, count: int = 5) -> None:
        control(delay_ms=delay_ms, reset_latencies=True)
        for _ in range(count):
            requests.get(f"{stack.url('api')}/health", headers={"X-API-Key": stack.api_key}, timeout=10)
        control(delay_ms=0)

    yield serve
    control(delay_ms=0, reset_latencies=True)


@pytest.mark.parametrize(("delay_ms", "expected"), [(0, "ok"), (450, "warning"), (850, "critical")])
def test_api_latency_on_both_sides_of_each_threshold(runtime, api, delay_ms, expected):
    api(delay_ms)
    result = flow.run_check(runtime(), "api_latency")
    assert result.state == expected, result.summary
    assert result.values["requests"] == 5
    assert result.values["p95_ms"] >= delay_ms
    assert result.values["p50_ms"] <= result.values["p95_ms"] <= result.values["p99_ms"]


def test_the_graded_percentile_is_configurable(runtime, api):
    api(450)
    assert (
        flow.run_check(
            runtime(api_percentile="p50", ttfb_ms={"warning": 1000, "critical": 2000}), "api_latency"
        ).state
        == "ok"
    )


def test_an_api_that_is_not_configured_or_does_not_answer_is_unknown(runtime, monkeypatch):
    monkeypatch.delenv("STELLAR_API_URL")
    assert "not configured" in flow.run_check(runtime(), "api_latency").summary
    monkeypatch.setenv("STELLAR_API_URL", f"http://127.0.0.1:{free_port()}")
    result = flow.run_check(runtime(), "api_latency")
    assert result.state == "unknown" and "did not answer" in result.summary


def test_an_api_refusing_the_key_is_unknown(runtime, monkeypatch):
    monkeypatch.setenv("STELLAR_API_KEY", "sk_live_wrong")
    result = flow.run_check(runtime(), "api_latency")
    assert result.state == "unknown" and "HTTP 403" in result.summary


# -- containers -----------------------------------------------------------------------------------


@pytest.fixture
def daemon(monkeypatch):
    with FakeDockerDaemon() as fake:
        monkeypatch.setenv("DOCKER_HOST", fake.url)
        yield fake


@pytest.mark.parametrize(
    ("memory_mb", "expected"),
    [(150, "ok"), (200, "ok"), (201, "warning"), (400, "warning"), (401, "critical")],
)
def test_indexer_memory_on_both_sides_of_each_threshold(runtime, daemon, memory_mb, expected):
    daemon.run_workload("stellar-indexer", memory_mb=memory_mb, cpu_percent=12.5, image="stellar/indexer:1")
    daemon.run_workload("stellar-api", memory_mb=900, cpu_percent=3)
    result = flow.run_check(runtime(), "containers")
    assert result.state == expected, result.summary
    seen = {c["name"]: c for c in result.values["containers"]}
    assert seen["stellar-indexer"]["memory_mb"] == memory_mb
    assert seen["stellar-indexer"]["cpu_percent"] == 12.5
    assert seen["stellar-api"]["memory_mb"] == 900  # reported, not graded on the indexer's thresholds
    assert daemon.calls("GET", r"/containers/json")
    assert daemon.calls("GET", r"/containers/[0-9a-f]+/stats")


def test_containers_without_docker_or_without_the_indexer_are_unknown(runtime, daemon, monkeypatch):
    daemon.run_workload("stellar-api", memory_mb=100)
    result = flow.run_check(runtime(), "containers")
    assert result.state == "unknown" and "stellar-indexer" in result.summary
    assert [c["name"] for c in result.values["containers"]] == ["stellar-api"]
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{free_port()}")
    down = flow.run_check(runtime(), "containers")
    assert down.state == "unknown" and "did not answer" in down.summary
    monkeypatch.delenv("DOCKER_HOST")
    unset = flow.run_check(runtime(), "containers")
    assert unset.state == "unknown" and "no Docker connection" in unset.summary


# -- disk -----------------------------------------------------------------------------------------


def test_disk_usage_against_thresholds_around_the_real_usage(runtime, tmp_path):
    usage = shutil.disk_usage(tmp_path)
    percent = 100 * usage.used / (usage.used + usage.free)
    below = flow.run_check(
        runtime(
            disk_paths=[str(tmp_path)], disk_usage_percent={"warning": percent + 1, "critical": percent + 2}
        ),
        "disk",
    )
    assert below.state == "ok"
    assert below.values["paths"][0]["used_percent"] == pytest.approx(percent, abs=0.5)
    warn = flow.run_check(
        runtime(disk_usage_percent={"warning": max(percent - 5, 0), "critical": percent + 5}), "disk"
    )
    assert warn.state == "warning"
    crit = flow.run_check(runtime(disk_usage_percent={"warning": 0, "critical": max(percent - 5, 0)}), "disk")
    assert crit.state == "critical"


def test_a_path_that_cannot_be_measured_is_never_ok(runtime, tmp_path):
    missing = str(tmp_path / "nowhere")
    alone = flow.run_check(runtime(disk_paths=[missing]), "disk")
    assert alone.state == "unknown" and "nowhere" in alone.summary
    beside = flow.run_check(
        runtime(disk_paths=[str(tmp_path), missing], disk_usage_percent={"warning": 99.9, "critical": 99.99}),
        "disk",
    )
    assert beside.state == "unknown"
    assert any("nowhere" in f for f in beside.findings)
