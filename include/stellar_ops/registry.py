"""The procedures this package runs, and the root configuration composed of their sections.

This is the one place a new procedure is registered: its section becomes a field of
:class:`StellarOpsConfig` and its taxonomy entry joins :data:`PROCEDURES`. Everything else of a
procedure lives in its own package (``stellar_ops/<procedure>/``), its adapter module, its DAG
file and its CLI module.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field

from stellar_ops.backup.config import BackupConfig, RetentionConfig
from stellar_ops.backup.procedure import PROCEDURE as BACKUP
from stellar_ops.changes.config import ChangesConfig
from stellar_ops.changes.procedure import PROCEDURE as CHANGES
from stellar_ops.core.approvals import ApprovalsConfig
from stellar_ops.core.config import (
    AlertsConfig,
    ConnectionIds,
    MetricsConfig,
    RootSection,
    parse_root,
)
from stellar_ops.core.config import reference_markdown as _reference_markdown
from stellar_ops.core.taxonomy import OWNERS, SEVERITIES, DagEntry, Procedure
from stellar_ops.dr.config import DrConfig
from stellar_ops.dr.procedure import PROCEDURE as DR
from stellar_ops.health.config import HealthConfig
from stellar_ops.health.procedure import PROCEDURE as HEALTH
from stellar_ops.maintenance.config import MaintenanceConfig
from stellar_ops.maintenance.procedure import PROCEDURE as MAINTENANCE
from stellar_ops.perf.config import PerfConfig
from stellar_ops.perf.procedure import PROCEDURE as PERF
from stellar_ops.pitr.procedure import PROCEDURE as PITR
from stellar_ops.postgres.pitr import PitrConfig
from stellar_ops.rotation.config import RotationConfig
from stellar_ops.rotation.procedure import PROCEDURE as ROTATION
from stellar_ops.tls.config import TlsConfig
from stellar_ops.tls.procedure import PROCEDURE as TLS


class StellarOpsConfig(RootSection):
    connections: ConnectionIds = Field(default_factory=ConnectionIds)  # type: ignore[arg-type]
    backup: BackupConfig = Field(default_factory=BackupConfig)  # type: ignore[arg-type]
    retention: RetentionConfig = Field(default_factory=RetentionConfig)  # type: ignore[arg-type]
    dr: DrConfig = Field(default_factory=DrConfig)  # type: ignore[arg-type]
    maintenance: MaintenanceConfig = Field(default_factory=MaintenanceConfig)  # type: ignore[arg-type]
    health: HealthConfig = Field(default_factory=HealthConfig)  # type: ignore[arg-type]
    pitr: PitrConfig = Field(default_factory=PitrConfig)  # type: ignore[arg-type]
    tls: TlsConfig = Field(default_factory=TlsConfig)  # type: ignore[arg-type]
    perf: PerfConfig = Field(default_factory=PerfConfig)  # type: ignore[arg-type]
    rotation: RotationConfig = Field(default_factory=RotationConfig)  # type: ignore[arg-type]
    changes: ChangesConfig = Field(default_factory=ChangesConfig)  # type: ignore[arg-type]
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)  # type: ignore[arg-type]
    approvals: ApprovalsConfig = Field(default_factory=ApprovalsConfig)  # type: ignore[arg-type]
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)  # type: ignore[arg-type]


PROCEDURES: tuple[Procedure, ...] = (BACKUP, PITR, DR, MAINTENANCE, HEALTH, TLS, PERF, ROTATION, CHANGES)
CATALOGUE: dict[str, DagEntry] = {entry.dag_id: entry for p in PROCEDURES for entry in p.dags}


def parse_config(raw: Mapping[str, Any] | str | None) -> StellarOpsConfig:
    """Validate ``raw`` (a mapping or a JSON string; None means all defaults)."""
    return parse_root(StellarOpsConfig, raw)


def reference_markdown() -> str:
    """Every field with its default and description (docs/configuration.md)."""
    return _reference_markdown(StellarOpsConfig())


def procedure_for(dag_id: str) -> DagEntry:
    try:
        return CATALOGUE[dag_id]
    except KeyError:
        raise KeyError(f"DAG {dag_id!r} is not registered in stellar_ops.registry.PROCEDURES") from None


def allowed_tags() -> set[str]:
    tags = {entry.tags[0] for entry in CATALOGUE.values()}
    tags |= {f"severity:{s}" for s in SEVERITIES}
    tags |= {f"owner:{o}" for o in OWNERS}
    return tags
