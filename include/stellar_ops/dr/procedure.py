"""Disaster recovery in the taxonomy: the monthly drill ``dr_restore_test`` (P2) and the real
recovery ``db_restore`` (P1: it runs when the database is already lost)."""

from __future__ import annotations

from stellar_ops.core.taxonomy import DagEntry, Procedure
from stellar_ops.dr.config import DrConfig

PROCEDURE = Procedure(
    name="dr",
    section="dr",
    config=DrConfig,
    dags=(
        DagEntry(
            dag_id="dr_restore_test",
            procedure="dr",
            severity="P2",
            alert_name="DisasterRecoveryTestFailed",
            schedule="0 4 1 * *",
            runbook="RB-003",
            expected_minutes=120,
        ),
        DagEntry(
            dag_id="db_restore",
            procedure="dr",
            severity="P1",
            alert_name="DatabaseRestoreFailed",
            schedule=None,
            runbook="RB-001",
            expected_minutes=240,
        ),
    ),
)
