"""Metrics of a run: to the Pushgateway and, when the API connection exists, to its /api/metrics."""

from __future__ import annotations

from stellar_ops import metrics
from stellar_ops.adapters.connections import optional_endpoint
from stellar_ops.adapters.runtime import task_logger
from stellar_ops.config import StellarOpsConfig

log = task_logger()


def send_metrics(config: StellarOpsConfig, procedure: str, points: list[metrics.Metric]) -> None:
    """Push to the Pushgateway and, when the API connection exists, POST to /api/metrics."""
    gateway = optional_endpoint(config.connections.pushgateway, "the Prometheus Pushgateway")
    if gateway:
        metrics.push_to_gateway(
            gateway.base_url,
            job=config.metrics.job,
            procedure=procedure,
            metrics=points,
            timeout=config.metrics.timeout_seconds,
        )
        log.info("pushed %d metrics to %s (job %s)", len(points), gateway.base_url, config.metrics.job)
    else:
        log.warning("no Pushgateway connection: metrics not pushed")
    api = optional_endpoint(config.connections.api, "the StellarEscrow API")
    if api and config.metrics.push_to_api:
        metrics.post_to_api(
            api.base_url,
            api.secret or "",
            source=procedure,
            metrics=points,
            timeout=config.metrics.timeout_seconds,
        )
        log.info("posted %d metrics to %s/api/metrics", len(points), api.base_url)
