"""Database maintenance in the taxonomy: ``db_maintenance``, P3, MaintenanceFailed."""

from __future__ import annotations

from stellar_ops.core.taxonomy import DagEntry, Procedure
from stellar_ops.maintenance.config import MaintenanceConfig

PROCEDURE = Procedure(
    name="maintenance",
    section="maintenance",
    config=MaintenanceConfig,
    dags=(
        DagEntry(
            dag_id="db_maintenance",
            procedure="maintenance",
            severity="P3",
            alert_name="MaintenanceFailed",
            schedule="0 3 * * 6",
            runbook="RB-006",
            expected_minutes=180,
        ),
    ),
)
