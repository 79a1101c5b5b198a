"""The morning health check's steps, defined once: ``morning_health_check``'s tasks and ``stellar-ops health``.

Each check reads its targets through the :class:`~stellar_ops.runtime.Runtime` and runs under its
own timeout (:func:`check`); :func:`summarize` sends the one message and pushes the metrics, and
says whether the run must fail.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from stellar_ops.catalogue.location import BackupLocation
from stellar_ops.core.errors import StellarOpsError
from stellar_ops.health import (
    certificates,
    disk,
    freshness,
    lag,
    overnight,
    services,
    summary,
    tls_probe,
    wal_archive,
)
from stellar_ops.health.config import CHECK_NAMES, HealthConfig
from stellar_ops.health.results import CheckResult, run_all, run_bounded
from stellar_ops.postgres.pitr import PitrConfig
from stellar_ops.runtime import Runtime, RuntimeConfig

DAG_ID = "morning_health_check"


class HealthSections(RuntimeConfig, Protocol):
    """The sections the health check reads: ``backup`` (where), ``health``, ``pitr`` (WAL
    archiving), and the runtime's own."""

    @property
    def backup(self) -> BackupLocation: ...
    @property
    def health(self) -> HealthConfig: ...
    @property
    def pitr(self) -> PitrConfig: ...


def state_key(rt: Runtime[HealthSections], name: str) -> str:
    """Where a check keeps what the next check compares with (the bucket: any worker reads it)."""
    return f"{rt.config.backup.prefix}health/{name}.json"


def _read_state(rt: Runtime[HealthSections], name: str) -> dict[str, Any] | None:
    try:
        store = rt.store()
        key = state_key(rt, name)
        document = store.get_json(key) if store.exists(key) else None
    except StellarOpsError as exc:
        rt.warn(f"the previous check's {name} could not be read: {exc}")
        return None
    return document if isinstance(document, dict) else None


def _write_state(rt: Runtime[HealthSections], name: str, document: dict[str, Any]) -> None:
    try:
        rt.store().put_json(state_key(rt, name), document)
    except StellarOpsError as exc:
        rt.warn(f"what this check saw ({name}) could not be recorded for the next one: {exc}")


def _docker(rt: Runtime[HealthSections]) -> tuple[Any | None, str | None]:
    try:
        client = rt.resources.docker()
        if client is not None:
            client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure to reach the daemon means no Docker here
        return None, f"the Docker daemon did not answer ({' '.join(str(exc).split())[:160]})"
    return client, None if client is not None else "no Docker connection"


def check_services(rt: Runtime[HealthSections], *, record: bool = True) -> CheckResult:
    settings = rt.config.health
    timeout = settings.probe_timeout_seconds
    client, why_not = (None, None) if settings.services_source == "endpoints" else _docker(rt)
    if client is not None:
        previous = _read_state(rt, "restarts") or {}
        result, restarts = services.by_docker(client, settings, dict(previous.get("restarts") or {}))
        if record:
            _write_state(rt, "restarts", {"checked_at": datetime.now(UTC).isoformat(), "restarts": restarts})
        return result
    if settings.services_source == "docker":
        return CheckResult(services.NAME, "unknown", f"services are checked through Docker, but {why_not}")
    probes: dict[str, Callable[[], str]] = {}
    probes["postgres"] = lambda: services.postgres(rt.database(), timeout)
    redis = rt.resources.redis()
    if redis is not None:
        probes["redis"] = lambda: services.redis_ping(redis, timeout)
    api = rt.resources.endpoint("api")
    if api is not None:
        probes["api"] = lambda: services.api_health(api, timeout)

    def head_bucket() -> str:
        rt.store().check_bucket()
        return f"HeadBucket {rt.config.backup.bucket}"

    probes["s3"] = head_bucket
    for item in settings.endpoints:
        probes[item.name] = lambda item=item: services.endpoint(item, timeout)  # type: ignore[misc]
    return services.by_endpoints(probes, note=why_not)


def check_alerts(rt: Runtime[HealthSections], *, record: bool = True) -> CheckResult:
    settings = rt.config.health
    endpoint = rt.resources.endpoint("alertmanager")
    if endpoint is None:
        return CheckResult(overnight.NAME, "unknown", "no Alertmanager connection (connections.alertmanager)")
    alerts = overnight.fetch(endpoint, settings.probe_timeout_seconds)
    now = datetime.now(UTC)
    result, seen = overnight.summarize(
        alerts,
        now=now,
        previous=_read_state(rt, "alerts_seen"),
        lookback=timedelta(hours=settings.alerts_lookback_hours),
        ignore_dags=settings.ignore_alert_dags,
    )
    if record:
        _write_state(rt, "alerts_seen", seen)
    return result


def check_backups(rt: Runtime[HealthSections]) -> CheckResult:
    backup = rt.config.backup
    return freshness.check(
        rt.store(), backup.prefix, backup.legacy_prefix, rt.config.health, datetime.now(UTC)
    )


def check_disk(rt: Runtime[HealthSections]) -> CheckResult:
    settings = rt.config.health
    where = disk.places(settings)
    if settings.disk_volumes:
        client, why_not = _docker(rt)
        for name in settings.disk_volumes:
            where.append(_volume(client, name, why_not))
    return disk.check(settings, where=where)


def _volume(client: Any | None, name: str, why_not: str | None) -> disk.Place:
    label = f"volume {name}"
    if client is None:
        return disk.Place(label, None, f"not measured: {why_not}")
    try:
        mountpoint = str(client.inspect_volume(name)["Mountpoint"])
    except Exception as exc:  # noqa: BLE001 - docker raises NotFound, APIError, connection errors
        return disk.Place(label, None, f"not found through Docker ({' '.join(str(exc).split())[:160]})")
    if not os.path.isdir(mountpoint):
        return disk.Place(
            label, None, f"its mountpoint {mountpoint} is not visible here (mount it on the worker)"
        )
    return disk.Place(label, mountpoint)


def check_indexer_lag(rt: Runtime[HealthSections]) -> CheckResult:
    endpoint = rt.resources.endpoint("api")
    if endpoint is None:
        return CheckResult(lag.NAME, "unknown", "no API connection (connections.api)")
    return lag.check(lag.fetch(endpoint, rt.config.health.probe_timeout_seconds), rt.config.health)


def check_certificates(
    rt: Runtime[HealthSections], prober: certificates.Prober = tls_probe.probe
) -> CheckResult:
    try:
        store = rt.store()
    except StellarOpsError as exc:
        rt.warn(f"TLS results not read: {exc}")
        store = None
    return certificates.check(store, rt.config.backup.prefix, rt.config.health, prober, datetime.now(UTC))


def check_wal_archive(rt: Runtime[HealthSections]) -> CheckResult:
    state = wal_archive.fetch(rt.database(), rt.config.health.probe_timeout_seconds)
    return wal_archive.check(state, rt.config.pitr)


@dataclass(frozen=True)
class Check:
    name: str
    run: Callable[..., CheckResult]
    records: bool = False  # keeps what it saw for the next check


CHECKS: dict[str, Check] = {
    "services": Check("services", check_services, records=True),
    "alerts": Check("alerts", check_alerts, records=True),
    "backups": Check("backups", check_backups),
    "disk": Check("disk", check_disk),
    "indexer_lag": Check("indexer_lag", check_indexer_lag),
    "certificates": Check("certificates", check_certificates),
    "wal_archive": Check("wal_archive", check_wal_archive),
}
assert tuple(CHECKS) == CHECK_NAMES


def _bound(rt: Runtime[HealthSections], name: str, record: bool) -> Callable[[], CheckResult]:
    spec = CHECKS[name]
    return (lambda: spec.run(rt, record=record)) if spec.records else (lambda: spec.run(rt))


def check(rt: Runtime[HealthSections], name: str, *, record: bool = True) -> CheckResult:
    """One check under ``health.check_timeout_seconds``; said as one line."""
    if name not in CHECKS:
        raise StellarOpsError(f"no health check named {name!r}; the checks are {', '.join(CHECKS)}")
    result = run_bounded(name, _bound(rt, name, record), rt.config.health.check_timeout_seconds)
    _say(rt, result)
    return result


def check_all(
    rt: Runtime[HealthSections], names: list[str] | None = None, *, record: bool = True
) -> list[CheckResult]:
    """The checks named (all by default) at once, each under its own timeout."""
    chosen = list(names or CHECKS)
    unknown = [n for n in chosen if n not in CHECKS]
    if unknown:
        raise StellarOpsError(
            f"no health check named {', '.join(map(repr, unknown))}; the checks are {', '.join(CHECKS)}"
        )
    results = run_all({n: _bound(rt, n, record) for n in chosen}, rt.config.health.check_timeout_seconds)
    for result in results:
        _say(rt, result)
    return results


def _say(rt: Runtime[HealthSections], result: CheckResult) -> None:
    line = f"{result.name}: {result.status}: {result.detail}"
    (rt.warn if result.status in ("warning", "critical", "unknown") else rt.say)(line)


@dataclass(frozen=True)
class Summary:
    status: str
    critical: list[str]
    message: dict[str, Any]


def summarize(rt: Runtime[HealthSections], results: list[CheckResult], *, run: str) -> Summary:
    """Send the one message (on the route of the worst critical check's alert) and push the metrics."""
    payload = summary.message(results, rt.config.alerts, run=run)
    rt.notify(payload, summary.severity(results))
    try:
        rt.publish_metrics(DAG_ID, summary.metrics(results))
    except StellarOpsError as exc:
        rt.warn(f"the health metrics were not published: {exc}")
    bad = [r.name for r in summary.critical(results)]
    return Summary(summary.verdict(results), bad, payload)


def failure_reason(outcome: Summary, results: list[CheckResult]) -> str:
    lines = [f"{r.name}: {r.detail}" for r in results if r.status == "critical"]
    return f"{len(outcome.critical)} critical health check(s): " + " | ".join(lines)
