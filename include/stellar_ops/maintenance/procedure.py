"""Database maintenance in the taxonomy: ``db_maintenance``, P3, MaintenanceFailed."""

from __future__ import annotations

from stellar_ops.core.taxonomy import DagEntry, Procedure
from stellar_ops.maintenance.config import MaintenanceConfig

PROCEDURE = Procedure(
    name="maintenance",
    section="maintenance",
    config=MaintenanceConfig,
    dags=(DagEntry("db_maintenance", "maintenance", "P3", "MaintenanceFailed"),),
)
