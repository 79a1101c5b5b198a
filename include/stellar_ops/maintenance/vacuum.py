"""Database maintenance: VACUUM ANALYZE in the low-traffic window, a bloat report, pg_stat_statements."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from datetime import time as clock_time
from typing import Any

from stellar_ops.core.durations import humanize_duration
from stellar_ops.core.errors import ConfigError, StellarOpsError
from stellar_ops.maintenance.config import MaintenanceConfig
from stellar_ops.postgres import catalog
from stellar_ops.postgres.target import PgTarget, connect, qualified

log = logging.getLogger(__name__)

_BLOAT_SQL = """
SELECT schemaname || '.' || relname, n_live_tup, n_dead_tup,
       last_vacuum, last_autovacuum, last_analyze, last_autoanalyze
FROM pg_stat_user_tables
ORDER BY n_dead_tup DESC, 1
"""


@dataclass(frozen=True)
class TableBloat:
    table: str
    live_tuples: int
    dead_tuples: int
    dead_ratio: float
    last_vacuum: str | None
    last_autovacuum: str | None
    last_analyze: str | None
    last_autoanalyze: str | None
    warning: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def in_window(moment: datetime, start: str, end: str) -> bool:
    """Whether ``moment`` (UTC) falls in [start, end); the window may wrap past midnight."""
    begin, finish = clock_time.fromisoformat(start), clock_time.fromisoformat(end)
    now = moment.astimezone(UTC).time().replace(tzinfo=None) if moment.tzinfo else moment.time()
    if begin <= finish:
        return begin <= now < finish
    return now >= begin or now < finish


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def bloat_report(
    target: PgTarget, *, warn_ratio: float, min_dead: int, tables: list[str] | None = None
) -> list[TableBloat]:
    """Dead and live tuples of each table, worst first; ``warning`` marks tables over the threshold."""
    with connect(target) as conn:
        # Flush this backend's pending counters; PostgreSQL < 15 has no such function.
        with contextlib.suppress(Exception):
            conn.execute("SELECT pg_stat_force_next_flush()")
        rows = conn.execute(_BLOAT_SQL).fetchall()
    wanted = {_normalise(t) for t in tables} if tables else None
    report = []
    for name, live, dead, vacuumed, autovacuumed, analyzed, autoanalyzed in rows:
        if wanted is not None and name not in wanted:
            continue
        total = (live or 0) + (dead or 0)
        ratio = (dead or 0) / total if total else 0.0
        report.append(
            TableBloat(
                table=name,
                live_tuples=int(live or 0),
                dead_tuples=int(dead or 0),
                dead_ratio=round(ratio, 4),
                last_vacuum=_iso(vacuumed),
                last_autovacuum=_iso(autovacuumed),
                last_analyze=_iso(analyzed),
                last_autoanalyze=_iso(autoanalyzed),
                warning=ratio > warn_ratio and (dead or 0) >= min_dead,
            )
        )
    return report


def bloat_report_for(
    target: PgTarget, settings: MaintenanceConfig, tables: list[str] | None
) -> list[TableBloat]:
    """:func:`bloat_report` with the thresholds of ``settings``."""
    return bloat_report(
        target,
        warn_ratio=settings.bloat_warn_dead_ratio,
        min_dead=settings.bloat_min_dead_tuples,
        tables=tables,
    )


def format_report(report: list[TableBloat]) -> str:
    lines = [f"{'table':<32} {'live':>12} {'dead':>10} {'dead %':>7}  last vacuum / analyze"]
    for row in report:
        vacuumed = max(filter(None, [row.last_vacuum, row.last_autovacuum]), default="never")
        analyzed = max(filter(None, [row.last_analyze, row.last_autoanalyze]), default="never")
        flag = "  << WARNING" if row.warning else ""
        lines.append(
            f"{row.table:<32} {row.live_tuples:>12,} {row.dead_tuples:>10,} {row.dead_ratio * 100:>6.1f}%"
            f"  {vacuumed[:19]} / {analyzed[:19]}{flag}"
        )
    return "\n".join(lines)


def _normalise(name: str) -> str:
    return name if "." in name else f"public.{name}"


def vacuum_analyze(
    target: PgTarget,
    *,
    tables: list[str] | None,
    lock_timeout_seconds: int,
    say: Callable[[str], None] = log.info,
) -> dict[str, float]:
    """VACUUM (ANALYZE) each table (all user tables when ``tables`` is empty); seconds per table."""
    timings: dict[str, float] = {}
    with connect(target) as conn:  # autocommit: VACUUM cannot run inside a transaction
        existing = set(catalog.list_tables(conn))
        chosen = [_normalise(t) for t in tables] if tables else sorted(existing)
        unknown = [t for t in chosen if t not in existing]
        if unknown:
            raise ConfigError(
                f"maintenance.tables names tables that do not exist in {target.dbname}: {', '.join(unknown)}"
            )
        conn.execute(f"SET lock_timeout = '{int(lock_timeout_seconds)}s'")
        for name in chosen:
            schema, table = name.split(".", 1)
            started = time.monotonic()
            try:
                conn.execute(f"VACUUM (ANALYZE) {qualified(schema, table)}")
            except Exception as exc:
                raise StellarOpsError(
                    f"VACUUM ANALYZE of {name} failed: {' '.join(str(exc).split())}"
                ) from None
            timings[name] = round(time.monotonic() - started, 3)
            say(f"VACUUM ANALYZE {name}: {humanize_duration(timings[name])}")
    return timings


@dataclass(frozen=True)
class StatStatements:
    installed: bool
    preloaded: bool
    warning: str | None


def ensure_pg_stat_statements(target: PgTarget) -> StatStatements:
    """``CREATE EXTENSION IF NOT EXISTS pg_stat_statements``; warn when the library is not preloaded.

    Whether it is preloaded is asked of the view itself, which refuses to answer when it is not:
    ``SHOW shared_preload_libraries`` needs privileges an application role rarely has.
    """
    with connect(target) as conn:
        try:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        except Exception as exc:
            raise StellarOpsError(
                f"cannot create extension pg_stat_statements in {target.dbname} as {target.user}: "
                f"{' '.join(str(exc).split())} (a superuser must create it once)"
            ) from None
        installed = (
            conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'").fetchone()
            is not None
        )
        try:
            conn.execute("SELECT 1 FROM pg_stat_statements LIMIT 1").fetchall()
            preloaded = True
        except Exception as exc:
            if "shared_preload_libraries" not in str(exc):
                raise StellarOpsError(
                    f"cannot read pg_stat_statements: {' '.join(str(exc).split())}"
                ) from None
            preloaded = False
    warning = None
    if not preloaded:
        warning = (
            "pg_stat_statements is installed but not preloaded: add it to shared_preload_libraries in "
            "postgresql.conf and restart PostgreSQL, or perf_analysis will have no query statistics"
        )
    return StatStatements(installed=installed, preloaded=preloaded, warning=warning)
