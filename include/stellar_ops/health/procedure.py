"""The morning health check in the taxonomy: ``morning_health_check``, P2, HealthCheckFailed, and
the alerts its checks stand for (IndexerLag, the WAL archive's)."""

from __future__ import annotations

from stellar_ops.core.taxonomy import DagEntry, Procedure
from stellar_ops.health import lag, wal_archive
from stellar_ops.health.config import HealthConfig

PROCEDURE = Procedure(
    name="health",
    section="health",
    config=HealthConfig,
    dags=(
        DagEntry(
            dag_id="morning_health_check",
            procedure="health",
            severity="P2",
            alert_name="HealthCheckFailed",
            schedule="0 7 * * *",
            runbook="SEC-1.1",
            expected_minutes=10,
        ),
    ),
    alerts=(lag.LAG, *wal_archive.ALERTS),
)
