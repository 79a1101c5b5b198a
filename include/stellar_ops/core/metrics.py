"""Batch-job metrics: pushed to the Prometheus Pushgateway (job ``stellar_ops``) and POSTed to the API.

Each procedure pushes into its own group (``procedure=<name>``) with ``pushadd``, so the backup's
push never wipes the DR test's metrics.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from stellar_ops.core.config import MetricsConfig
from stellar_ops.core.errors import StellarOpsError
from stellar_ops.core.http import HttpEndpoint

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
    url: str,
    *,
    job: str,
    procedure: str,
    metrics: list[Metric],
    timeout: float = 10.0,
    grouping: dict[str, str] | None = None,
) -> None:
    """``pushadd`` into the group ``procedure`` (plus ``grouping``'s labels, for example one group
    per domain, so that one domain's push never replaces another's samples)."""
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
            url,
            job=job,
            registry=registry,
            grouping_key={**(grouping or {}), "procedure": procedure},
            timeout=timeout,
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


def publish(
    points: list[Metric],
    *,
    procedure: str,
    config: MetricsConfig,
    gateway: HttpEndpoint | None,
    api: HttpEndpoint | None,
    say: Callable[[str], None] = log.info,
    warn: Callable[[str], None] = log.warning,
    grouping: dict[str, str] | None = None,
) -> None:
    """Push to the Pushgateway and, when the API is configured, POST to its /api/metrics."""
    if gateway is not None:
        push_to_gateway(
            gateway.base_url,
            job=config.job,
            procedure=procedure,
            metrics=points,
            timeout=config.timeout_seconds,
            grouping=grouping,
        )
        say(f"pushed {len(points)} metrics to {gateway.base_url} (job {config.job})")
    else:
        warn("no Pushgateway is configured: metrics not pushed")
    if api is not None and config.push_to_api:
        post_to_api(
            api.base_url, api.secret or "", source=procedure, metrics=points, timeout=config.timeout_seconds
        )
        say(f"posted {len(points)} metrics to {api.url('/api/metrics')}")
