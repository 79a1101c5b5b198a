"""Task bodies of ``db_maintenance``: each runs one step of :mod:`stellar_ops.maintenance.flow`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from stellar_ops.adapters.common.runtime import checked, current_context, run_type, task_runtime
from stellar_ops.maintenance import flow


@checked
def check_pg_stat_statements() -> dict[str, Any]:
    status = flow.check_pg_stat_statements(task_runtime())
    return {"installed": status.installed, "preloaded": status.preloaded, "warning": status.warning}


@checked
def measure_bloat(tables: list[str] | None) -> dict[str, Any]:
    """The report's summary (the worst tables); the task log has every table's row."""
    return flow.bloat_before(flow.measure_bloat(task_runtime(), tables))


@checked
def vacuum_analyze(tables: list[str] | None) -> dict[str, float]:
    rt = task_runtime()
    outside = flow.window_check(rt, datetime.now(UTC), manual=run_type(current_context()) == "manual")
    if outside is not None:
        from airflow.sdk.exceptions import AirflowSkipException

        raise AirflowSkipException(outside.reason)
    # every table's time is in the task log; the summary needs the count, total and slowest
    return flow.VacuumSummary.of(flow.vacuum_analyze(rt, tables)).as_dict()


@checked
def report_bloat(before: dict[str, Any], tables: list[str] | None) -> dict[str, Any]:
    return flow.report_bloat(task_runtime(), before, tables)


@checked
def send_summary(
    statements: dict[str, Any], vacuumed: dict[str, Any], bloat: dict[str, Any]
) -> dict[str, Any]:
    return flow.send_summary(task_runtime(), statements, flow.VacuumSummary(**vacuumed), bloat)
