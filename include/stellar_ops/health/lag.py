"""Indexer lag from the API's ``/health``: over 5 minutes (``health.indexer_lag_critical_seconds``)
is P2 IndexerLag."""

from __future__ import annotations

from typing import Any

from stellar_ops.core.durations import humanize_duration
from stellar_ops.core.errors import StellarOpsError
from stellar_ops.core.http import HttpEndpoint
from stellar_ops.health.config import HealthConfig
from stellar_ops.health.results import AlertRef, CheckResult

NAME = "indexer_lag"
LAG = AlertRef("IndexerLag", "P2", "RB-001")


def fetch(endpoint: HttpEndpoint, timeout: float) -> dict[str, Any]:
    import requests

    url = endpoint.url("/health")
    headers = {"X-API-Key": endpoint.secret} if endpoint.secret else {}
    try:
        response = requests.get(url, headers=headers, timeout=timeout)
    except requests.RequestException as exc:
        raise StellarOpsError(f"{url} could not be reached ({type(exc).__name__})") from None
    try:
        document = response.json()
    except ValueError:
        raise StellarOpsError(f"{url} answered HTTP {response.status_code} without JSON") from None
    if not isinstance(document, dict):
        raise StellarOpsError(f"{url} answered JSON that is not an object")
    document["http_status"] = response.status_code
    return document


def check(document: dict[str, Any], settings: HealthConfig) -> CheckResult:
    raw = document.get("indexer_lag_seconds")
    status_text = str(document.get("status", "?"))
    if not isinstance(raw, int | float) or isinstance(raw, bool):
        return CheckResult(
            NAME, "unknown", f"/health reports no indexer_lag_seconds (status {status_text})", [document]
        )
    lag = float(raw)
    item = {"indexer_lag_seconds": lag, "status": status_text, "http_status": document.get("http_status")}
    if lag > settings.indexer_lag_critical_seconds:
        return CheckResult(
            NAME,
            "critical",
            f"indexer {humanize_duration(lag)} behind (over {humanize_duration(settings.indexer_lag_critical_seconds)}): P2 IndexerLag",
            [item],
            LAG,
            LAG.runbook,
        )
    if lag > settings.indexer_lag_warning_seconds:
        return CheckResult(
            NAME,
            "warning",
            f"indexer {humanize_duration(lag)} behind (over {humanize_duration(settings.indexer_lag_warning_seconds)})",
            [item],
        )
    note = "" if status_text == "ok" else f"; the API reports status {status_text}"
    return CheckResult(NAME, "ok", f"indexer {humanize_duration(lag)} behind{note}", [item])
