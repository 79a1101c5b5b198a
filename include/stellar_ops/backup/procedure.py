"""The backup procedure in the taxonomy: ``db_backup``, P2, BackupFailed."""

from __future__ import annotations

from stellar_ops.backup.config import BackupConfig
from stellar_ops.core.taxonomy import DagEntry, Procedure

PROCEDURE = Procedure(
    name="backup",
    section="backup",
    config=BackupConfig,
    dags=(DagEntry("db_backup", "backup", "P2", "BackupFailed"),),
)
