"""The point-in-time recovery procedure in the taxonomy: ``db_base_backup``, P2, BaseBackupFailed."""

from __future__ import annotations

from stellar_ops.core.taxonomy import DagEntry, Procedure
from stellar_ops.postgres.pitr import PitrConfig

PROCEDURE = Procedure(
    name="pitr",
    section="pitr",
    config=PitrConfig,
    dags=(
        DagEntry(
            dag_id="db_base_backup",
            procedure="pitr",
            severity="P2",
            alert_name="BaseBackupFailed",
            schedule="0 3 * * 0",
            runbook="PITR-BASE",
            expected_minutes=180,
        ),
    ),
)
