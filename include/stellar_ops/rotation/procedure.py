"""Key rotation in the taxonomy: ``api_key_rotation`` and ``secret_rotation`` (P2), and the ledger
``secrets_rotation_audit`` (P3)."""

from __future__ import annotations

from stellar_ops.core.taxonomy import AlertRef, DagEntry, Procedure
from stellar_ops.rotation.config import RotationConfig

PROCEDURE = Procedure(
    name="rotation",
    section="rotation",
    config=RotationConfig,
    dags=(
        DagEntry(
            dag_id="api_key_rotation",
            procedure="rotation",
            severity="P2",
            alert_name="KeyRotationFailed",
            schedule="0 9 1 1,4,7,10 *",
            runbook="SEC-3.2",
            # two approvals and a transition window of days: its deadline is the window and a margin
            expected_minutes=14 * 24 * 60,
        ),
        DagEntry(
            dag_id="secret_rotation",
            procedure="rotation",
            severity="P2",
            alert_name="SecretRotationFailed",
            schedule="30 9 * * 1",
            runbook="SEC-3.4",
            # two approvals and a window after the switch: its deadline is the longest wait and a margin
            expected_minutes=14 * 24 * 60,
        ),
        DagEntry(
            dag_id="secrets_rotation_audit",
            procedure="rotation",
            severity="P3",
            alert_name="SecretsAuditFailed",
            schedule="0 8 * * 1",
            runbook="SEC-3.3",
            expected_minutes=30,
        ),
    ),
    alerts=(
        AlertRef("KeyRotationRolledBack", "P2", "SEC-3.2"),
        AlertRef("SecretRotationRolledBack", "P2", "SEC-3.4"),
        AlertRef("SecretRotationStuck", "P2", "SEC-3.3"),
    ),
)
