"""Overnight alerts from Alertmanager's v2 API: firing now, and fired since the previous check.

Alertmanager's API lists only alerts that have not ended, so what fired and was resolved since
the previous check is what that check saw firing and is no longer: each check records the alerts
it saw (``<backup.prefix>health/alerts_seen.json``) for the next one. Alerts that fired and
resolved between two checks are only in Alertmanager's notifications.

A firing P1 (or ``critical``) alert is critical, a firing P2 (or ``warning``) is a warning, others
are listed; silenced and inhibited alerts are listed apart and count for nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from stellar_ops.core.durations import humanize_duration
from stellar_ops.core.errors import StellarOpsError
from stellar_ops.core.http import HttpEndpoint
from stellar_ops.health.results import CheckResult, Status, parse_utc

NAME = "alerts"
_SEVERITY_STATE: dict[str, Status] = {
    "P1": "critical",
    "critical": "critical",
    "page": "critical",
    "P2": "warning",
    "warning": "warning",
}
_ORDER = ("P1", "critical", "P2", "warning", "P3", "info")


def fetch(endpoint: HttpEndpoint, timeout: float) -> list[dict[str, Any]]:
    import requests

    url = endpoint.url("/api/v2/alerts")
    try:
        response = requests.get(
            url, params={"active": "true", "silenced": "true", "inhibited": "true"}, timeout=timeout
        )
    except requests.RequestException as exc:
        raise StellarOpsError(
            f"Alertmanager at {endpoint.base_url} could not be reached ({type(exc).__name__})"
        ) from None
    if response.status_code != 200:
        raise StellarOpsError(f"Alertmanager at {endpoint.base_url} answered {response.status_code}")
    document = response.json()
    if not isinstance(document, list):
        raise StellarOpsError(f"Alertmanager at {endpoint.base_url} answered something other than a list")
    return document


def _age(seconds: float) -> str:
    return humanize_duration(seconds)


def summarize(
    alerts: list[dict[str, Any]],
    *,
    now: datetime,
    previous: dict[str, Any] | None,
    lookback: timedelta,
    ignore_dags: list[str],
) -> tuple[CheckResult, dict[str, Any]]:
    """The check's result, and what to record for the next check."""
    since = parse_utc((previous or {}).get("checked_at")) or now - lookback
    seen_before: dict[str, dict[str, Any]] = dict((previous or {}).get("alerts") or {})
    firing: list[dict[str, Any]] = []
    muted: list[dict[str, Any]] = []
    for alert in alerts:
        labels = alert.get("labels") or {}
        # this check's own alerts (its failure, the rules on its metrics) would keep it red
        if labels.get("dag_id") in ignore_dags or labels.get("procedure") in ignore_dags:
            continue
        started = parse_utc(alert.get("startsAt")) or now
        am_status = alert.get("status") or {}
        item = {
            "alertname": labels.get("alertname", "?"),
            "severity": labels.get("severity", "none"),
            "fingerprint": alert.get("fingerprint") or "",
            "labels": labels,
            "summary": (alert.get("annotations") or {}).get("summary", ""),
            "started_at": started.isoformat(),
            "age": _age((now - started).total_seconds()),
            "new": started >= since,
            "state": "firing"
            if am_status.get("state", "active") == "active"
            else str(am_status.get("state")),
        }
        (firing if item["state"] == "firing" else muted).append(item)
    firing_prints = {a["fingerprint"] for a in firing + muted}
    resolved = [
        {**old, "state": "resolved"}
        for fingerprint, old in sorted(seen_before.items())
        if fingerprint not in firing_prints
    ]
    items = sorted(firing, key=lambda a: (_rank(a["severity"]), a["started_at"])) + muted + resolved
    states = [_SEVERITY_STATE.get(a["severity"], "ok") for a in firing]
    status: Status = "critical" if "critical" in states else "warning" if "warning" in states else "ok"
    groups: dict[str, list[str]] = {}
    for alert in sorted(firing, key=lambda a: _rank(a["severity"])):
        groups.setdefault(alert["severity"], []).append(f"{alert['alertname']} ({alert['age']})")
    parts = [f"{severity}: {', '.join(names)}" for severity, names in groups.items()]
    if not firing:
        parts.append("nothing firing")
    new = sum(1 for a in firing if a["new"])
    tail = [f"{new} new since {since:%Y-%m-%d %H:%M} UTC"] if firing else []
    if resolved:
        tail.append(f"{len(resolved)} resolved since: {', '.join(a['alertname'] for a in resolved)}")
    if muted:
        tail.append(f"{len(muted)} silenced or inhibited")
    record = {
        "checked_at": now.isoformat(),
        "alerts": {
            a["fingerprint"]: {k: a[k] for k in ("alertname", "severity", "started_at", "summary")}
            for a in firing
            if a["fingerprint"]
        },
    }
    return CheckResult(NAME, status, "; ".join(parts + tail), items), record


def _rank(severity: str) -> int:
    return _ORDER.index(severity) if severity in _ORDER else len(_ORDER)
