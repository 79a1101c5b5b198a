"""The maintenance procedure's steps, defined once: ``db_maintenance``'s tasks and ``stellar-ops maintenance``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from stellar_ops.core.errors import StellarOpsError
from stellar_ops.core.metrics import run_finished
from stellar_ops.maintenance import summary, vacuum
from stellar_ops.maintenance.config import MaintenanceConfig
from stellar_ops.maintenance.vacuum import StatStatements, TableBloat
from stellar_ops.runtime import Runtime, RuntimeConfig

DAG_ID = "db_maintenance"
# Of a per-table list that one step hands the next (an XCom in the DAG): the worst first. The
# task log names every table; the lists grow with the tables, the handover must not.
SHOWN = 10


class MaintenanceSections(RuntimeConfig, Protocol):
    """The sections db_maintenance's steps read: ``maintenance``, and the runtime's own."""

    @property
    def maintenance(self) -> MaintenanceConfig: ...


@dataclass(frozen=True)
class OutsideWindow:
    """A vacuum that should wait: ``reason`` says why."""

    reason: str


def tables(rt: Runtime[MaintenanceSections], chosen: list[str] | None) -> list[str]:
    """The tables asked for, else ``maintenance.tables`` (empty: every table)."""
    return list(chosen) if chosen else list(rt.config.maintenance.tables)


def check_pg_stat_statements(rt: Runtime[MaintenanceSections]) -> StatStatements:
    status = vacuum.ensure_pg_stat_statements(rt.database())
    if status.warning:
        rt.warn(status.warning)
    else:
        rt.say("pg_stat_statements is installed and preloaded")
    return status


def measure_bloat(
    rt: Runtime[MaintenanceSections], chosen: list[str] | None, *, when: str = "before"
) -> list[TableBloat]:
    settings = rt.config.maintenance
    report = vacuum.bloat_report_for(rt.database(), settings, tables(rt, chosen))
    rt.say(f"bloat {when} VACUUM ANALYZE:\n{vacuum.format_report(report)}")
    if when == "before":
        for row in report:
            if row.warning:
                rt.warn(
                    f"table {row.table} is bloated: {row.dead_tuples:,} dead tuples, "
                    f"{row.dead_ratio * 100:.1f}% of its rows (threshold {settings.bloat_warn_dead_ratio * 100:.1f}%)"
                )
    return report


def window_check(rt: Runtime[MaintenanceSections], now: datetime, *, manual: bool) -> OutsideWindow | None:
    """None inside the low-traffic window; outside it, a manual run goes on with a warning."""
    settings = rt.config.maintenance
    if vacuum.in_window(now, settings.window_start_utc, settings.window_end_utc):
        return None
    window = f"{settings.window_start_utc}-{settings.window_end_utc} UTC"
    if manual:
        rt.warn(f"manual run outside the low-traffic window {window}: vacuuming as asked")
        return None
    return OutsideWindow(
        f"{now:%H:%M} UTC is outside the low-traffic window {window}: not vacuuming in a "
        "late scheduled or backfilled run; trigger it manually to run anyway"
    )


def vacuum_analyze(rt: Runtime[MaintenanceSections], chosen: list[str] | None) -> dict[str, float]:
    return vacuum.vacuum_analyze(
        rt.database(),
        tables=tables(rt, chosen),
        lock_timeout_seconds=rt.config.maintenance.lock_timeout_seconds,
        say=rt.say,
    )


def bloat_before(report: list[TableBloat]) -> dict[str, Any]:
    """What :func:`report_bloat` needs of the report before the vacuum, small whatever the number
    of tables: how many, those over the threshold, and the ``SHOWN`` with the most dead tuples."""
    worst = sorted((row for row in report if row.dead_tuples > 0), key=lambda r: (-r.dead_tuples, r.table))
    warned = sorted(row.table for row in report if row.warning)
    return {
        "tables": len(report),
        "warned": warned[:SHOWN],
        "warned_count": len(warned),
        "worst": [row.as_dict() for row in worst[:SHOWN]],
    }


@dataclass(frozen=True)
class VacuumSummary:
    """What the summary needs of a VACUUM ANALYZE of every table: how many, how long, the slowest."""

    tables: int
    seconds: float
    slowest: str | None
    slowest_seconds: float

    @classmethod
    def of(cls, timings: dict[str, float]) -> VacuumSummary:
        slowest = max(timings, key=lambda name: timings[name]) if timings else None
        return cls(
            tables=len(timings),
            seconds=round(sum(timings.values()), 3),
            slowest=slowest,
            slowest_seconds=timings[slowest] if slowest else 0.0,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "tables": self.tables,
            "seconds": self.seconds,
            "slowest": self.slowest,
            "slowest_seconds": self.slowest_seconds,
        }

    def timings(self) -> dict[str, float]:
        """Timings with this count, total and slowest table: all that :func:`summary.message` reads
        of them (the other tables' names are not known here, and are never shown)."""
        if self.slowest is None:
            return {}
        others = self.tables - 1
        rest = max(self.seconds - self.slowest_seconds, 0.0) / others if others else 0.0
        return {self.slowest: self.slowest_seconds, **{f"(another table {n})": rest for n in range(others)}}


def report_bloat(
    rt: Runtime[MaintenanceSections], before: list[dict[str, Any]] | dict[str, Any], chosen: list[str] | None
) -> dict[str, Any]:
    """The bloat report again after the vacuum; ``top`` pairs the tables with the most dead tuples
    before it (worst first) with their state after it. ``before`` is the report before the
    vacuum, or its :func:`bloat_before`; the lists of tables in the result are the ``SHOWN`` worst,
    with their counts."""
    after = measure_bloat(rt, chosen, when="after")
    rows: list[dict[str, Any]]
    if isinstance(before, dict):
        rows, warned_before, warned_count = (
            list(before["worst"]),
            list(before["warned"]),
            int(before["warned_count"]),
        )
    else:
        rows = before
        warned_before = sorted(row["table"] for row in rows if row["warning"])
        warned_count = len(warned_before)
    dead_before = {row["table"]: row["dead_tuples"] for row in rows}
    removed = {
        row.table: dead_before.get(row.table, 0) - row.dead_tuples
        for row in after
        if dead_before.get(row.table, 0) > row.dead_tuples
    }
    now = {row.table: row for row in after}
    worst = sorted(
        (row for row in rows if row["dead_tuples"] > 0), key=lambda r: (-r["dead_tuples"], r["table"])
    )
    top = [
        {
            "table": row["table"],
            "dead_before": row["dead_tuples"],
            "dead_ratio_before": row["dead_ratio"],
            "warning_before": row["warning"],
            "dead_after": now[row["table"]].dead_tuples if row["table"] in now else 0,
            "dead_ratio_after": now[row["table"]].dead_ratio if row["table"] in now else 0.0,
        }
        for row in worst[: summary.TOP_TABLES]
    ]
    still = sorted(row.table for row in after if row.warning)
    most_removed = sorted(removed, key=lambda table: (-removed[table], table))[:SHOWN]
    return {
        "tables": len(after),
        "warned_before": warned_before[:SHOWN],
        "warned_before_count": warned_count,
        "still_bloated": still[:SHOWN],
        "still_bloated_count": len(still),
        "dead_tuples_removed": {table: removed[table] for table in sorted(most_removed)},
        "top": top,
    }


def send_summary(
    rt: Runtime[MaintenanceSections],
    statements: dict[str, Any],
    vacuumed: dict[str, float] | VacuumSummary,
    bloat: dict[str, Any],
) -> dict[str, Any]:
    """One message on the ops route: what VACUUM ANALYZE did, how long it took, the bloat left,
    and whether pg_stat_statements is there; then the run's end, to the Pushgateway."""
    if isinstance(vacuumed, VacuumSummary):
        vacuumed = vacuumed.timings()
    payload = summary.message(statements=statements, vacuumed=vacuumed, bloat=bloat)
    rt.notify(payload)
    rt.say(payload["text"])
    # Maintenance has no metric of its own: this push is what MaintenanceSilent watches.
    try:
        rt.publish_metrics(DAG_ID, [run_finished()])
    except StellarOpsError as exc:  # the vacuum is done; a missing push is MaintenanceSilent's to say
        rt.warn(f"the run's end was not pushed: {exc}")
    return {"tables": len(vacuumed), "seconds": round(sum(vacuumed.values()), 3)}
