"""Batch-job metrics: pushed to the Prometheus Pushgateway (job ``stellar_ops``) and POSTed to the API.

Each procedure pushes into its own group (``procedure=<name>``) with ``pushadd``, so the backup's
push never wipes the DR test's metrics. A group stays on the Pushgateway until it is deleted, so
a procedure whose groups are per item (tls_cert_check: one per domain) deletes those of the items
no longer configured (:func:`prune_groups`), or their last values would alert forever.

The Pushgateway's own ``push_time_seconds`` of each group is what the silence rules read
(:mod:`stellar_ops.core.alert_rules`); a procedure with nothing else to push pushes
:func:`run_finished`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from stellar_ops.core.config import MetricsConfig
from stellar_ops.core.errors import StellarOpsError
from stellar_ops.core.http import HttpEndpoint

log = logging.getLogger(__name__)

RUN_FINISHED = "stellar_procedure_last_run_timestamp_seconds"


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


def run_finished(at: datetime | None = None) -> Metric:
    """``stellar_procedure_last_run_timestamp_seconds``: this run of the procedure got to its end
    (its group names the procedure)."""
    when = at or datetime.now(UTC)
    return Metric(RUN_FINISHED, when.timestamp(), "Unix time at which the procedure's last run finished")


def list_groups(url: str, *, job: str, timeout: float = 10.0) -> list[dict[str, str]]:
    """The grouping labels (``job`` included) of every group of ``job`` on the Pushgateway at
    ``url`` (its ``GET /api/v1/metrics``)."""
    import requests

    endpoint = url.rstrip("/") + "/api/v1/metrics"
    try:
        response = requests.get(endpoint, timeout=timeout)
    except requests.RequestException as exc:
        raise MetricsError(f"GET {endpoint} failed: {type(exc).__name__}: {exc}") from None
    if response.status_code != 200:
        raise MetricsError(f"GET {endpoint} answered {response.status_code}: {response.text[:200]}")
    try:
        groups = response.json()["data"]
        labels = [{str(k): str(v) for k, v in group["labels"].items()} for group in groups]
    except (ValueError, KeyError, TypeError, AttributeError):
        raise MetricsError(
            f"GET {endpoint} did not answer the Pushgateway's group list: {response.text[:200]}"
        ) from None
    return [group for group in labels if group.get("job") == job]


def delete_group(url: str, *, job: str, grouping: dict[str, str], timeout: float = 10.0) -> None:
    """``DELETE /metrics/job/<job>/<label>/<value>...``: the group whose grouping labels (besides
    ``job``) are exactly ``grouping``; the Pushgateway answers 202 whether it existed or not."""
    from prometheus_client import delete_from_gateway

    try:
        delete_from_gateway(url, job=job, grouping_key=grouping, timeout=timeout)
    except Exception as exc:  # urllib raises several types; all mean "not deleted"
        raise MetricsError(
            f"deleting the group {grouping} of job {job} from the Pushgateway at {url} failed: {exc}"
        ) from None


def prune_groups(
    url: str,
    *,
    job: str,
    procedure: str,
    label: str,
    keep: Iterable[str],
    timeout: float = 10.0,
) -> list[str]:
    """Delete ``procedure``'s groups whose ``label`` is not one of ``keep`` (for example the
    domains no longer configured); its groups without ``label`` stay. The values deleted, sorted."""
    kept = set(keep)
    stale = [
        group
        for group in list_groups(url, job=job, timeout=timeout)
        if group.get("procedure") == procedure and label in group and group[label] not in kept
    ]
    for group in stale:
        delete_group(url, job=job, grouping={k: v for k, v in group.items() if k != "job"}, timeout=timeout)
    return sorted(group[label] for group in stale)


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
