"""Task bodies of ``db_maintenance``: each is the single call its DAG task makes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from stellar_ops import maintenance
from stellar_ops.adapters.connections import pg_target
from stellar_ops.adapters.runtime import checked, current_context, load_config, task_logger

log = task_logger()


@checked
def check_pg_stat_statements() -> dict[str, Any]:
    config = load_config()
    status = maintenance.ensure_pg_stat_statements(pg_target(config.connections.db))
    if status.warning:
        log.warning("%s", status.warning)
    else:
        log.info("pg_stat_statements is installed and preloaded")
    return {"installed": status.installed, "preloaded": status.preloaded, "warning": status.warning}


def _tables(param: list[str] | None) -> list[str]:
    return list(param) if param else list(load_config().maintenance.tables)


@checked
def measure_bloat(tables: list[str] | None) -> list[dict[str, Any]]:
    config = load_config()
    settings = config.maintenance
    report = maintenance.bloat_report_for(
        pg_target(config.connections.db),
        settings,
        _tables(tables),
    )
    log.info("bloat before VACUUM ANALYZE:\n%s", maintenance.format_report(report))
    for row in report:
        if row.warning:
            log.warning(
                "table %s is bloated: %s dead tuples, %.1f%% of its rows (threshold %.1f%%)",
                row.table,
                f"{row.dead_tuples:,}",
                row.dead_ratio * 100,
                settings.bloat_warn_dead_ratio * 100,
            )
    return [row.as_dict() for row in report]


@checked
def vacuum_analyze(tables: list[str] | None) -> dict[str, float]:
    config = load_config()
    settings = config.maintenance
    context = current_context()
    now = datetime.now(UTC)
    if not maintenance.in_window(now, settings.window_start_utc, settings.window_end_utc):
        window = f"{settings.window_start_utc}-{settings.window_end_utc} UTC"
        run_type = str(getattr(context["dag_run"].run_type, "value", context["dag_run"].run_type))
        if run_type != "manual":
            from airflow.sdk.exceptions import AirflowSkipException

            raise AirflowSkipException(
                f"{now:%H:%M} UTC is outside the low-traffic window {window}: not vacuuming in a "
                "late scheduled or backfilled run; trigger it manually to run anyway"
            )
        log.warning("manual run outside the low-traffic window %s: vacuuming as asked", window)
    return maintenance.vacuum_analyze(
        pg_target(config.connections.db),
        tables=_tables(tables),
        lock_timeout_seconds=settings.lock_timeout_seconds,
        say=log.info,
    )


@checked
def report_bloat(before: list[dict[str, Any]], tables: list[str] | None) -> dict[str, Any]:
    config = load_config()
    settings = config.maintenance
    after = maintenance.bloat_report_for(
        pg_target(config.connections.db),
        settings,
        _tables(tables),
    )
    log.info("bloat after VACUUM ANALYZE:\n%s", maintenance.format_report(after))
    dead_before = {row["table"]: row["dead_tuples"] for row in before}
    removed = {
        row.table: dead_before.get(row.table, 0) - row.dead_tuples
        for row in after
        if dead_before.get(row.table, 0) > row.dead_tuples
    }
    return {
        "tables": len(after),
        "warned_before": sorted(row["table"] for row in before if row["warning"]),
        "still_bloated": sorted(row.table for row in after if row.warning),
        "dead_tuples_removed": removed,
    }
