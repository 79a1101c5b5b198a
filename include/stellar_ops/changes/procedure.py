"""The change procedures in the taxonomy: ``db_migration`` (MigrationFailed) and ``config_change``
(ConfigChangeFailed), both manual, both P2 (a migration's own page is P1 once production changed)."""

from __future__ import annotations

from stellar_ops.changes.config import ChangesConfig
from stellar_ops.core.taxonomy import DagEntry, Procedure

PROCEDURE = Procedure(
    name="changes",
    section="changes",
    config=ChangesConfig,
    dags=(
        DagEntry(
            dag_id="db_migration",
            procedure="changes",
            severity="P2",
            alert_name="MigrationFailed",
            schedule=None,
            runbook="CHG-MIGRATION",
            expected_minutes=240,
        ),
        DagEntry(
            dag_id="config_change",
            procedure="changes",
            severity="P2",
            alert_name="ConfigChangeFailed",
            schedule=None,
            runbook="CHG-CONFIG",
            expected_minutes=60,
        ),
    ),
)
