"""The morning health check in the taxonomy: ``morning_health_check``, P2, HealthCheckFailed."""

from __future__ import annotations

from stellar_ops.core.taxonomy import DagEntry, Procedure
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
)
