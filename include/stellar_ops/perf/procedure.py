"""The performance review in the taxonomy: ``perf_analysis``, P3, DBQueryLatency, RB-006."""

from __future__ import annotations

from stellar_ops.core.taxonomy import DagEntry, Procedure
from stellar_ops.perf.config import PerfConfig

PROCEDURE = Procedure(
    name="perf",
    section="perf",
    config=PerfConfig,
    dags=(
        DagEntry(
            dag_id="perf_analysis",
            procedure="perf",
            severity="P3",
            alert_name="PerfAnalysisFailed",
            schedule="0 3 * * 0",
            runbook="RB-006",
            expected_minutes=60,
        ),
    ),
)
