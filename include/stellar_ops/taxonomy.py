"""The small, closed vocabulary of DAG tags, owners and alert severities.

Every DAG is tagged ``procedure:<name>``, ``severity:<P1-P3>`` and ``owner:<team>``; the policy
tests reject anything else, so the UI's tag filter stays useful.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["P1", "P2", "P3"]

SEVERITIES: tuple[Severity, ...] = ("P1", "P2", "P3")
SEVERITY_MEANING: dict[Severity, str] = {
    "P1": "page now: customer impact or data at risk",
    "P2": "fix today: a safety net (backup, DR, certificates) is down",
    "P3": "fix this week: degradation or hygiene",
}
OWNERS = ("platform",)
PROCEDURES = ("backup", "dr", "tls", "perf", "keys", "health", "maintenance", "audit")


@dataclass(frozen=True)
class Procedure:
    """What the alerting conventions need to know about one DAG."""

    dag_id: str
    procedure: str
    severity: Severity
    alert_name: str
    owner: str = "platform"

    @property
    def tags(self) -> list[str]:
        return [f"procedure:{self.procedure}", f"severity:{self.severity}", f"owner:{self.owner}"]


CATALOGUE: dict[str, Procedure] = {
    p.dag_id: p
    for p in (
        Procedure("db_backup", "backup", "P2", "BackupFailed"),
        Procedure("dr_restore_test", "dr", "P2", "DisasterRecoveryTestFailed"),
        Procedure("tls_cert_check", "tls", "P2", "CertificateCheckFailed"),
        Procedure("perf_analysis", "perf", "P3", "PerformanceAnalysisFailed"),
        Procedure("api_key_rotation", "keys", "P2", "ApiKeyRotationFailed"),
        Procedure("morning_health_check", "health", "P2", "HealthCheckFailed"),
        Procedure("db_maintenance", "maintenance", "P3", "MaintenanceFailed"),
        Procedure("secrets_rotation_audit", "audit", "P3", "SecretsRotationOverdue"),
    )
}


def allowed_tags() -> set[str]:
    tags = {f"procedure:{p}" for p in PROCEDURES}
    tags |= {f"severity:{s}" for s in SEVERITIES}
    tags |= {f"owner:{o}" for o in OWNERS}
    return tags


def procedure_for(dag_id: str) -> Procedure:
    try:
        return CATALOGUE[dag_id]
    except KeyError:
        raise KeyError(f"DAG {dag_id!r} is not in stellar_ops.taxonomy.CATALOGUE") from None
