"""Batch-job metrics: pushed to the Prometheus Pushgateway (job ``stellar_ops``) and POSTed to the API.

Each procedure pushes into its own group (``procedure=<name>``) with ``pushadd``, so the backup's
push never wipes the DR test's metrics.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from stellar_ops.errors import StellarOpsError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Metric:
    name: str
    value: float
    help: str
    labels: dict[str, str] = field(default_factory=dict)


class MetricsError(StellarOpsError):
    """A metrics endpoint refused or could not be reached."""


def push_to_gateway(
    url: str, *, job: str, procedure: str, metrics: list[Metric], timeout: float = 10.0
) -> None:
    from prometheus_client import CollectorRegistry, Gauge, pushadd_to_gateway

    registry = CollectorRegistry()
    gauges: dict[str, Gauge] = {}
    for metric in metrics:
        gauge = gauges.get(metric.name)
        if gauge is None:
            gauge = Gauge(metric.name, metric.help, sorted(metric.labels), registry=registry)
            gauges[metric.name] = gauge
        (gauge.labels(**metric.labels) if metric.labels else gauge).set(metric.value)
    try:
        pushadd_to_gateway(
            url, job=job, registry=registry, grouping_key={"procedure": procedure}, timeout=timeout
        )
    except Exception as exc:  # urllib raises several types; all mean "not pushed"
        raise MetricsError(
            f"pushing {len(metrics)} metrics to the Pushgateway at {url} failed: {exc}"
        ) from None


def post_to_api(url: str, api_key: str, *, source: str, metrics: list[Metric], timeout: float = 10.0) -> None:
    import requests

    payload: dict[str, Any] = {
        "source": source,
        "sent_at": datetime.now(UTC).isoformat(),
        "metrics": [{"name": m.name, "value": m.value, "labels": m.labels} for m in metrics],
    }
    endpoint = url.rstrip("/") + "/api/metrics"
    try:
        response = requests.post(endpoint, json=payload, headers={"X-API-Key": api_key}, timeout=timeout)
    except requests.RequestException as exc:
        raise MetricsError(f"POST {endpoint} failed: {type(exc).__name__}") from None
    if response.status_code >= 300:
        raise MetricsError(f"POST {endpoint} answered {response.status_code}: {response.text[:200]}")


def backup_metrics(
    *, success: bool, finished_at: datetime, size_bytes: int, duration_seconds: float
) -> list[Metric]:
    metrics = [Metric("stellar_backup_success", 1.0 if success else 0.0, "1 if the last backup succeeded")]
    if success:
        metrics += [
            Metric(
                "stellar_backup_last_success_timestamp_seconds",
                finished_at.timestamp(),
                "Unix time the last successful backup finished",
            ),
            Metric("stellar_backup_size_bytes", float(size_bytes), "Compressed size of the last backup"),
            Metric("stellar_backup_duration_seconds", duration_seconds, "Duration of the last backup's dump"),
        ]
    return metrics


def dr_metrics(
    *, success: bool, restore_seconds: float | None, backup_age_seconds: float | None
) -> list[Metric]:
    metrics = [Metric("stellar_dr_test_success", 1.0 if success else 0.0, "1 if the last DR test passed")]
    if restore_seconds is not None:
        metrics.append(
            Metric("stellar_dr_restore_seconds", restore_seconds, "Recovery time of the last DR test (RTO)")
        )
    if backup_age_seconds is not None:
        metrics.append(
            Metric("stellar_dr_backup_age_seconds", backup_age_seconds, "Age of the tested backup (RPO)")
        )
    return metrics
