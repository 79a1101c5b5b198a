"""The checks of the other sources: API latency, container CPU and memory, the Redis hit rate,
disk usage. A source that is not configured or does not answer gives ``unknown`` with the reason."""

from __future__ import annotations

import shutil
from typing import Any

from stellar_ops.core.http import HttpEndpoint, RedisTarget
from stellar_ops.perf.checks import CheckResult, State, grade_above, grade_below, limits, unknown, worst
from stellar_ops.perf.config import PerfConfig

MB = 1_000_000


def api_latency(endpoint: HttpEndpoint | None, settings: PerfConfig) -> CheckResult:
    """p50/p95/p99 TTFB from ``/health/metrics``; ``api_percentile`` is graded."""
    import requests

    if endpoint is None:
        return unknown(
            "api_latency",
            "the API is not configured (connections.api; STELLAR_API_URL and STELLAR_API_KEY for the CLI)",
        )
    url = endpoint.url("/health/metrics")
    try:
        response = requests.get(
            url, headers={"X-API-Key": endpoint.secret or ""}, timeout=settings.timeout_seconds
        )
    except requests.RequestException as exc:
        return unknown("api_latency", f"GET {url} did not answer ({type(exc).__name__})")
    if response.status_code != 200:
        return unknown("api_latency", f"GET {url} answered HTTP {response.status_code}")
    try:
        latency = response.json()["latency"]
        percentiles = {p: float(latency[f"{p}_ms"]) for p in ("p50", "p95", "p99")}
        requests_seen = int(latency.get("requests", 0))
    except (ValueError, KeyError, TypeError):
        return unknown("api_latency", f"GET {url} answered without latency.p50_ms/p95_ms/p99_ms")
    if requests_seen == 0:
        return unknown("api_latency", "the API has served no requests to measure yet", requests=0)
    graded = percentiles[settings.api_percentile]
    state = grade_above(graded, settings.ttfb_ms)
    values: dict[str, Any] = {f"{p}_ms": v for p, v in percentiles.items()}
    values.update(requests=requests_seen, graded=settings.api_percentile)
    findings = (
        []
        if state == "ok"
        else [f"API TTFB {settings.api_percentile} {graded:.0f} ms over {requests_seen:,} requests"]
    )
    return CheckResult(
        "api_latency",
        state,
        f"TTFB p50 {percentiles['p50']:.0f} / p95 {percentiles['p95']:.0f} / p99 {percentiles['p99']:.0f} ms; "
        f"{settings.api_percentile} graded ({limits(settings.ttfb_ms)} ms)",
        values,
        findings,
    )


def redis_hit_rate(target: RedisTarget | None, settings: PerfConfig) -> CheckResult:
    """keyspace_hits / (hits + misses) from ``INFO stats``."""
    import redis

    if target is None:
        return unknown("redis_hit_rate", "Redis is not configured (connections.redis; REDIS_URL for the CLI)")
    client = target.client(timeout=settings.timeout_seconds)
    try:
        stats = client.info("stats")
    except redis.RedisError as exc:
        return unknown("redis_hit_rate", f"Redis {target.describe()} did not answer ({type(exc).__name__})")
    finally:
        client.close()
    hits, misses = int(stats.get("keyspace_hits", 0)), int(stats.get("keyspace_misses", 0))
    values: dict[str, Any] = {
        "keyspace_hits": hits,
        "keyspace_misses": misses,
        "evicted_keys": int(stats.get("evicted_keys", 0)),
    }
    if hits + misses == 0:
        return unknown(
            "redis_hit_rate",
            f"Redis {target.describe()} has had no keyspace lookups since its statistics were reset",
            **values,
        )
    rate = 100 * hits / (hits + misses)
    values["hit_rate_percent"] = round(rate, 3)
    state = grade_below(rate, settings.redis_hit_rate_percent)
    findings = (
        []
        if state == "ok"
        else [
            f"Redis hit rate {rate:.1f}% ({hits:,} hits, {misses:,} misses, {values['evicted_keys']:,} evictions)"
        ]
    )
    return CheckResult(
        "redis_hit_rate",
        state,
        f"hit rate {rate:.1f}% of {hits + misses:,} lookups ({limits(settings.redis_hit_rate_percent)} %)",
        values,
        findings,
    )


def _cpu_percent(stats: dict[str, Any]) -> float:
    """As ``docker stats`` computes it: the container's share of the host's CPU time, times CPUs."""
    cpu, pre = stats.get("cpu_stats") or {}, stats.get("precpu_stats") or {}
    usage = (cpu.get("cpu_usage") or {}).get("total_usage", 0) - (pre.get("cpu_usage") or {}).get(
        "total_usage", 0
    )
    system = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
    cpus = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or []) or 1
    return round(100.0 * usage / system * cpus, 2) if system > 0 and usage > 0 else 0.0


def _memory_bytes(stats: dict[str, Any]) -> int:
    """Usage less the page cache, as ``docker stats`` shows it (cgroup v2 and v1)."""
    memory = stats.get("memory_stats") or {}
    detail = memory.get("stats") or {}
    cache = detail.get("inactive_file", detail.get("total_inactive_file", 0))
    return int(memory.get("usage", 0)) - int(cache)


def containers(client: Any | None, settings: PerfConfig) -> CheckResult:
    """CPU and memory of the running containers; the indexer is graded on its memory."""
    if client is None:
        return unknown(
            "containers", "no Docker connection is configured (connections.docker; DOCKER_HOST for the CLI)"
        )
    try:
        listed = client.containers()
        report = []
        for item in listed:
            name = (item.get("Names") or ["/?"])[0].lstrip("/")
            if settings.containers and name not in settings.containers and name != settings.indexer_container:
                continue
            stats = client.stats(item["Id"], stream=False)
            memory = _memory_bytes(stats)
            limit = int((stats.get("memory_stats") or {}).get("limit", 0))
            report.append(
                {
                    "name": name,
                    "image": item.get("Image"),
                    "cpu_percent": _cpu_percent(stats),
                    "memory_mb": round(memory / MB, 1),
                    "memory_limit_mb": round(limit / MB, 1) if limit else None,
                }
            )
    except Exception as exc:  # noqa: BLE001 - docker-py and requests raise many types; all mean "did not answer"
        return unknown(
            "containers",
            f"the Docker daemon did not answer ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})",
        )
    indexer = next((c for c in report if c["name"] == settings.indexer_container), None)
    values: dict[str, Any] = {"containers": report, "indexer": settings.indexer_container}
    if indexer is None:
        return unknown(
            "containers",
            f"the indexer container {settings.indexer_container!r} is not running ({len(report)} containers seen)",
            **values,
        )
    state = grade_above(indexer["memory_mb"], settings.indexer_memory_mb)
    findings = (
        [] if state == "ok" else [f"indexer {indexer['name']} uses {indexer['memory_mb']:.0f} MB ({state})"]
    )
    return CheckResult(
        "containers",
        state,
        f"indexer memory {indexer['memory_mb']:.0f} MB ({limits(settings.indexer_memory_mb)} MB), "
        f"CPU {indexer['cpu_percent']:.1f}%; {len(report)} containers",
        values,
        findings,
    )


def disk(settings: PerfConfig) -> CheckResult:
    """Usage of each configured path as ``df`` shows it: used / (used + available)."""
    if not settings.disk_paths:
        return unknown("disk", "no disk paths are configured (perf.disk_paths)")
    report: list[dict[str, Any]] = []
    states: list[State] = []
    missing: list[str] = []
    for path in settings.disk_paths:
        try:
            usage = shutil.disk_usage(path)
        except OSError as exc:
            missing.append(f"{path}: {exc.strerror}")
            continue
        percent = 100 * usage.used / (usage.used + usage.free) if usage.used + usage.free else 0.0
        state = grade_above(percent, settings.disk_usage_percent)
        states.append(state)
        report.append(
            {
                "path": path,
                "used_percent": round(percent, 2),
                "free_gb": round(usage.free / 1e9, 2),
                "state": state,
            }
        )
    if not report:
        return unknown("disk", f"no configured path could be measured: {'; '.join(missing)}")
    findings = [
        f"{d['path']} is {d['used_percent']:.1f}% full, {d['free_gb']:.1f} GB free ({d['state']})"
        for d in report
        if d["state"] != "ok"
    ]
    findings += [f"cannot measure {m}" for m in missing]
    fullest = max(report, key=lambda d: d["used_percent"])
    graded = worst(states)
    return CheckResult(
        "disk",
        # a path that cannot be measured must not pass as ok
        "unknown" if missing and graded == "ok" else graded,
        f"fullest {fullest['path']} {fullest['used_percent']:.1f}% ({limits(settings.disk_usage_percent)} %)",
        {"paths": report, "unmeasured": missing},
        findings,
    )
