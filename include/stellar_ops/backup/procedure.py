"""The backup procedure in the taxonomy: ``db_backup``, P2, BackupFailed."""

from __future__ import annotations

from stellar_ops.backup.config import BackupConfig
from stellar_ops.core.taxonomy import DagEntry, Procedure

PROCEDURE = Procedure(
    name="backup",
    section="backup",
    config=BackupConfig,
    dags=(
        DagEntry(
            dag_id="db_backup",
            procedure="backup",
            severity="P2",
            alert_name="BackupFailed",
            schedule="0 2 * * *",
            runbook="RB-002",
            expected_minutes=60,
        ),
    ),
)
