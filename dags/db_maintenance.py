"""
# db_maintenance: VACUUM ANALYZE, bloat report, pg_stat_statements

**Schedule:** Saturdays 03:00 UTC, inside the low-traffic window (`maintenance.window_start_utc`
to `maintenance.window_end_utc`, 02:00-06:00 by default). **Severity:** P3. **Owner:** platform.

## What it does
1. `check_pg_stat_statements`: `CREATE EXTENSION IF NOT EXISTS pg_stat_statements`; warns when
   the library is not in `shared_preload_libraries` (perf_analysis then has no query statistics).
2. `measure_bloat`: dead and live tuples, dead ratio, last (auto)vacuum and (auto)analyze of each
   table; warns for tables over `maintenance.bloat_warn_dead_ratio` with at least
   `maintenance.bloat_min_dead_tuples` dead tuples.
3. `vacuum_analyze`: `VACUUM (ANALYZE)` of each configured table (all tables when the list is
   empty), with `lock_timeout`. A late scheduled run outside the window skips itself; a manual
   run proceeds with a warning.
4. `report_bloat`: the same report after the vacuum, with the dead tuples removed per table.
5. `send_summary`: one message on the ops channel: the tables vacuumed and the time it took, the
   tables with the most dead tuples before and after, those still bloated, and whether
   pg_stat_statements is installed and preloaded. A run that skipped its vacuum sends nothing.
6. `confirm_success`: the run's verdict: green when every step above succeeded or the vacuum
   was skipped outside the window, red when any failed.

## Is it safe to re-run?
Yes, at any time. VACUUM takes no lock that blocks reads or writes; it only adds I/O. A
backfilled run vacuums now (a past week's maintenance cannot be made up) and, outside the
low-traffic window, skips `vacuum_analyze` as a scheduled run does: backfill only inside it.

## When it fails
- *cannot connect*: check the `stellar_db` connection and that PostgreSQL is up.
- *VACUUM ANALYZE of X failed ... lock timeout*: a long transaction holds a conflicting lock;
  find it in `pg_stat_activity`, then clear the task.
- *cannot create extension pg_stat_statements*: a superuser must run
  `CREATE EXTENSION pg_stat_statements` once in the database.

## Triage
Not urgent (P3): autovacuum still runs. Repeated bloat warnings for a table mean autovacuum is
not keeping up: tune its `autovacuum_vacuum_scale_factor`.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param, task

from stellar_ops.adapters import maintenance as steps
from stellar_ops.adapters.common.dag import procedure_dag


@procedure_dag(
    "db_maintenance",
    schedule="0 3 * * 6",
    doc=__doc__,
    execution_timeout=timedelta(hours=2),
    params={
        "tables": Param(
            [],
            type="array",
            items={"type": "string"},
            description="Tables to VACUUM ANALYZE (schema.table); empty uses maintenance.tables, "
            "and an empty maintenance.tables means every table",
        ),
    },
)
def db_maintenance() -> None:
    @task
    def check_pg_stat_statements() -> dict:
        return steps.check_pg_stat_statements()

    @task
    def measure_bloat(params: dict | None = None) -> dict:
        return steps.measure_bloat((params or {}).get("tables"))

    @task(pool="stellar_db_heavy")
    def vacuum_analyze(params: dict | None = None) -> dict:
        return steps.vacuum_analyze((params or {}).get("tables"))

    @task
    def report_bloat(before: dict, params: dict | None = None) -> dict:
        return steps.report_bloat(before, (params or {}).get("tables"))

    @task
    def send_summary(statements: dict, vacuumed: dict, bloat: dict) -> dict:
        return steps.send_summary(statements, vacuumed, bloat)

    statements = check_pg_stat_statements()
    before = measure_bloat()
    vacuumed = vacuum_analyze()
    bloat = report_bloat(before)
    before >> vacuumed >> bloat
    send_summary(statements, vacuumed, bloat)


db_maintenance()
