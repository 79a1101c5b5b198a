"""Certificates: the days left that the latest ``tls_cert_check`` recorded, or a fresh probe.

The TLS procedure writes its latest results to ``<backup.prefix>tls/latest.json``:
``{"checked_at": ISO 8601 UTC, "domains": [{"host", "port", "server_name", "state", "days_left",
"not_after", "error"}, ...]}``. When that document is missing, unreadable or older than
``health.tls_results_max_age_hours``, each of ``health.tls_domains`` is probed here.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from stellar_ops.core.errors import StellarOpsError
from stellar_ops.health.config import HealthConfig
from stellar_ops.health.results import AlertRef, CheckResult, Status, parse_utc, worst
from stellar_ops.storage.s3 import S3Store

NAME = "certificates"
EXPIRING = AlertRef("TLSCertExpiringSoon", "P2", "RB-004")
STATE_STATUS: dict[str, Status] = {
    "ok": "ok",
    "warning": "warning",
    "critical": "critical",
    "expired": "critical",
    "invalid": "critical",
    "unreachable": "critical",
}
Prober = Callable[..., Any]  # (host, port, server_name, *, ca_file, timeout, warning_days, critical_days)


def results_key(prefix: str) -> str:
    return f"{prefix}tls/latest.json"


def recorded(
    store: S3Store, prefix: str, settings: HealthConfig, now: datetime
) -> tuple[dict[str, Any] | None, str]:
    """The TLS procedure's latest results when they are recent enough; else None and why not."""
    key = results_key(prefix)
    if not store.exists(key):
        return None, f"no TLS results at {store.url(key)}"
    try:
        document = store.get_json(key)
    except StellarOpsError as exc:
        return None, f"TLS results unreadable ({exc})"
    checked = parse_utc(document.get("checked_at")) if isinstance(document, dict) else None
    if checked is None or not isinstance(document.get("domains"), list):
        return None, f"TLS results at {store.url(key)} have no checked_at or domains"
    age_hours = (now - checked).total_seconds() / 3600
    if age_hours > settings.tls_results_max_age_hours:
        return None, f"TLS results are {age_hours:.1f}h old (over {settings.tls_results_max_age_hours:g}h)"
    return document, f"recorded {age_hours:.1f}h ago by tls_cert_check"


def fresh(settings: HealthConfig, prober: Prober, now: datetime) -> dict[str, Any]:
    domains = []
    for domain in settings.tls_domains:
        result = prober(
            domain.host,
            domain.port,
            domain.server_name,
            ca_file=settings.tls_ca_file,
            timeout=settings.probe_timeout_seconds,
            warning_days=settings.tls_warning_days,
            critical_days=settings.tls_critical_days,
            now=now,
        )
        domains.append(result.as_dict())
    return {"checked_at": now.isoformat(), "domains": domains}


def check(
    store: S3Store | None, prefix: str, settings: HealthConfig, prober: Prober, now: datetime
) -> CheckResult:
    why = "no bucket"
    document: dict[str, Any] | None = None
    if store is not None:
        try:
            document, why = recorded(store, prefix, settings, now)
        except StellarOpsError as exc:
            why = f"TLS results not read ({exc})"
    source = why
    if document is None:
        if not settings.tls_domains:
            return CheckResult(NAME, "unknown", f"{why}, and no domain to probe (health.tls_domains)")
        document = fresh(settings, prober, now)
        source = f"probed now ({why})"
    return from_results(document, source)


def from_results(document: dict[str, Any], source: str) -> CheckResult:
    domains = [d for d in document.get("domains") or [] if isinstance(d, dict)]
    if not domains:
        return CheckResult(NAME, "unknown", f"no domains in the TLS results ({source})")
    states: list[Status] = []
    parts: list[str] = []
    for domain in domains:
        state = str(domain.get("state"))
        states.append(STATE_STATUS.get(state, "unknown"))
        name = domain.get("server_name") or domain.get("host")
        days = domain.get("days_left")
        shown = f"{days:.0f}d" if isinstance(days, int | float) else "?"
        parts.append(f"{name} {shown}" + ("" if state == "ok" else f" {state}"))
    status = worst(states)
    alert = EXPIRING if status == "critical" else None
    least = min(
        (d["days_left"] for d in domains if isinstance(d.get("days_left"), int | float)), default=None
    )
    head = f"fewest days left {least:.0f}" if least is not None else "no days left known"
    return CheckResult(
        NAME,
        status,
        f"{head}: {', '.join(parts)} ({source})",
        domains,
        alert,
        alert.runbook if alert else "RB-004",
    )
