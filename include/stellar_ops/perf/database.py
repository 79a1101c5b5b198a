"""The PostgreSQL checks, each over a read-only session with ``statement_timeout`` and
``lock_timeout`` set: catalog and statistics views only, so no lock beyond ACCESS SHARE.

The index checks follow PgHero's: large tables that are mostly scanned sequentially, unused,
duplicate (covered by another index) and invalid indexes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from stellar_ops.core.durations import humanize_duration
from stellar_ops.core.errors import ConfigError, StellarOpsError
from stellar_ops.perf.checks import CheckResult, State, grade_above, grade_below, limits, unknown, worst
from stellar_ops.perf.config import PerfConfig
from stellar_ops.postgres.target import PgTarget, clean_error, connection_error, quote_ident

# Every statement of the analysis starts with this, so its own queries are left out of the
# slow-query lists (pg_stat_statements keeps the first text of each query, comment included).
MARKER = "/* stellar-ops perf_analysis */ "
XID_SPACE = 2**31
TEXT_CHARS = 300
SEQUENCE_BATCH = 200
INT_MAX = {"smallint": 2**15 - 1, "integer": 2**31 - 1, "bigint": 2**63 - 1}


class SourceUnavailable(StellarOpsError):
    """A source of a check is not configured, cannot be reached, or did not answer in time."""


@dataclass
class Session:
    conn: Any
    where: str

    def rows(self, sql: str, params: tuple[Any, ...] | None = None) -> list[tuple[Any, ...]]:
        import psycopg

        try:
            return list(self.conn.execute(MARKER + sql, params).fetchall())
        except (psycopg.errors.QueryCanceled, psycopg.errors.LockNotAvailable) as exc:
            raise SourceUnavailable(
                f"PostgreSQL {self.where} did not answer in time: {' '.join(str(exc).split())}"
            ) from None
        except psycopg.OperationalError as exc:
            raise SourceUnavailable(
                f"PostgreSQL {self.where} went away: {' '.join(str(exc).split())}"
            ) from None

    def one(self, sql: str, params: tuple[Any, ...] | None = None) -> tuple[Any, ...]:
        return self.rows(sql, params)[0]

    def lock_modes(self) -> set[str]:
        """The relation lock modes this session holds now (inside its one transaction)."""
        found = self.rows(
            "SELECT DISTINCT mode FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'relation'"
        )
        return {row[0] for row in found}


@contextmanager
def read_only_session(target: PgTarget, settings: PerfConfig) -> Iterator[Session]:
    """One read-only transaction; a server that cannot be reached is :class:`SourceUnavailable`."""
    import psycopg

    options = " ".join(
        [
            f"-c statement_timeout={int(settings.statement_timeout_seconds * 1000)}",
            f"-c lock_timeout={int(settings.lock_timeout_seconds * 1000)}",
            "-c default_transaction_read_only=on",
            f"-c idle_in_transaction_session_timeout={int(settings.statement_timeout_seconds * 4000)}",
        ]
    )
    target.check_files()
    # the connection's own options (search_path...) first, then the read-only limits over them
    kwargs = target.with_options(options).connect_kwargs()
    try:
        conn = psycopg.connect(autocommit=False, **kwargs)
    except psycopg.OperationalError as exc:
        error = connection_error(str(exc), target)
        if isinstance(error, ConfigError):
            raise error from None  # a TLS setting is wrong: no retry can fix it
        raise SourceUnavailable(
            f"cannot connect to PostgreSQL {target.describe()}: {clean_error(str(exc), target)}"
        ) from None
    try:
        yield Session(conn, target.describe())
    finally:
        try:
            conn.rollback()
        finally:
            conn.close()


def _ms(value: Any) -> float:
    return round(float(value or 0), 3)


def _statement(row: tuple[Any, ...]) -> dict[str, Any]:
    queryid, calls, total, rows, query = row
    calls = int(calls or 0)
    return {
        "queryid": str(queryid),
        "calls": calls,
        "mean_ms": _ms(float(total or 0) / calls) if calls else 0.0,
        "total_ms": _ms(total),
        "rows": int(rows or 0),
        "query": " ".join(str(query or "").split())[:TEXT_CHARS],
    }


_STATEMENTS = """
SELECT s.queryid, sum(s.calls), sum(s.total_exec_time), sum(s.rows), min(s.query)
FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
WHERE d.datname = current_database() AND s.queryid IS NOT NULL
  AND s.query NOT LIKE '/* stellar-ops perf_analysis */%%'
GROUP BY s.queryid
HAVING sum(s.calls) >= %s
"""


def slow_queries(session: Session, settings: PerfConfig) -> CheckResult:
    """The top queries by mean time; hot paths (top by total time) graded on their mean."""
    import psycopg

    try:
        by_mean = session.rows(
            _STATEMENTS + " ORDER BY sum(s.total_exec_time) / sum(s.calls) DESC, 1 LIMIT %s",
            (settings.min_calls, settings.top_queries),
        )
        snapshot = session.rows(
            _STATEMENTS + " ORDER BY sum(s.total_exec_time) DESC, 1 LIMIT %s",
            (settings.min_calls, settings.snapshot_size),
        )
        (stats_reset,) = session.one("SELECT stats_reset FROM pg_stat_statements_info")
    except (psycopg.errors.UndefinedTable, psycopg.errors.ObjectNotInPrerequisiteState) as exc:
        return unknown(
            "slow_queries",
            f"pg_stat_statements cannot be read in {session.where}: {' '.join(str(exc).split())} "
            "(db_maintenance creates it; it must be in shared_preload_libraries)",
        )
    top = [_statement(row) for row in by_mean]
    entries = [_statement(row) for row in snapshot]
    hot = entries[: settings.hot_paths]
    threshold = settings.query_mean_ms
    states: list[State] = [grade_above(q["mean_ms"], threshold) for q in hot]
    state = worst(states)
    findings = [
        f"hot path {q['queryid']}: mean {q['mean_ms']:.1f} ms over {q['calls']:,} calls ({s}): {q['query'][:120]}"
        for q, s in zip(hot, states, strict=True)
        if s != "ok"
    ]
    slowest = max((q["mean_ms"] for q in hot), default=0.0)
    summary = (
        f"slowest hot path mean {slowest:.1f} ms ({limits(threshold)} ms)"
        if hot
        else "no statements recorded since the statistics were reset"
    )
    return CheckResult(
        "slow_queries",
        state,
        summary,
        {
            "top": top,
            "hot_paths": [
                {"queryid": q["queryid"], "mean_ms": q["mean_ms"], "total_ms": q["total_ms"]} for q in hot
            ],
            "slowest_hot_path_mean_ms": slowest,
            "stats_reset": stats_reset.isoformat() if isinstance(stats_reset, datetime) else stats_reset,
            "snapshot": entries,
        },
        findings,
    )


_INDEXES = """
SELECT n.nspname || '.' || t.relname, c.relname, am.amname, i.indkey::int2[], i.indclass::oid[],
       coalesce(pg_get_expr(i.indexprs, i.indrelid), ''), coalesce(pg_get_expr(i.indpred, i.indrelid), ''),
       i.indisunique, i.indisprimary, i.indisvalid, coalesce(s.idx_scan, 0)
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_class t ON t.oid = i.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
JOIN pg_am am ON am.oid = c.relam
LEFT JOIN pg_stat_user_indexes s ON s.indexrelid = i.indexrelid
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
ORDER BY 1, 2
"""


@dataclass(frozen=True)
class IndexInfo:
    table: str
    name: str
    method: str
    columns: tuple[tuple[int, int], ...]  # (attnum, opclass); attnum 0 is an expression
    expressions: str
    predicate: str
    unique: bool
    primary: bool
    valid: bool
    scans: int

    def covers(self, other: IndexInfo) -> bool:
        """Whether this index makes ``other`` redundant (PgHero's duplicate test)."""
        if self is other or self.table != other.table or not self.valid or not other.valid:
            return False
        if (self.method, self.predicate, self.expressions) != (
            other.method,
            other.predicate,
            other.expressions,
        ):
            return False
        if other.primary or self.columns[: len(other.columns)] != other.columns:
            return False
        if other.unique:  # a unique index is only redundant beside an identical unique one
            return self.unique and self.columns == other.columns and self.name < other.name
        if self.columns == other.columns and not self.unique:
            return self.name < other.name  # identical twins: report one of them
        return True


def duplicate_indexes(indexes: list[IndexInfo]) -> list[tuple[IndexInfo, IndexInfo]]:
    """Each redundant index with one index that covers it."""
    by_table: dict[str, list[IndexInfo]] = {}
    for index in indexes:
        by_table.setdefault(index.table, []).append(index)
    pairs = []
    for group in by_table.values():
        for candidate in group:
            cover = next((other for other in group if other.covers(candidate)), None)
            if cover is not None:
                pairs.append((candidate, cover))
    return pairs


def index_usage(session: Session, settings: PerfConfig) -> CheckResult:
    scans = session.rows(
        """
        SELECT schemaname || '.' || relname, seq_scan, coalesce(idx_scan, 0), n_live_tup
        FROM pg_stat_user_tables
        WHERE n_live_tup >= %s AND seq_scan + coalesce(idx_scan, 0) > 0
        ORDER BY seq_scan DESC, 1
        """,
        (settings.min_table_rows,),
    )
    low = []
    for table, seq, idx, live in scans:
        share = idx / (seq + idx)
        if share < settings.min_index_scan_share:
            low.append(
                {
                    "table": table,
                    "seq_scan": int(seq),
                    "idx_scan": int(idx),
                    "rows": int(live),
                    "index_scan_share": round(share, 4),
                }
            )
    indexes = [
        IndexInfo(
            table,
            name,
            am,
            tuple(zip(keys, classes, strict=True)),
            exprs,
            pred,
            uniq,
            prim,
            valid,
            int(scans_),
        )
        for table, name, am, keys, classes, exprs, pred, uniq, prim, valid, scans_ in session.rows(_INDEXES)
    ]
    unused = [i for i in indexes if i.valid and i.scans == 0 and not i.unique and not i.primary]
    duplicates = duplicate_indexes(indexes)
    invalid = [i for i in indexes if not i.valid]
    findings = [
        f"{t['table']}: {t['rows']:,} rows, index scans {t['index_scan_share'] * 100:.1f}% of {t['seq_scan'] + t['idx_scan']:,} scans "
        f"(below {settings.min_index_scan_share * 100:g}%): a missing index?"
        for t in low
    ]
    findings += [f"unused index {i.table} {i.name}: no scans since the statistics were reset" for i in unused]
    findings += [f"duplicate index {i.table} {i.name}: covered by {cover.name}" for i, cover in duplicates]
    findings += [
        f"invalid index {i.table} {i.name}: a failed CREATE INDEX CONCURRENTLY; drop and rebuild it"
        for i in invalid
    ]
    state: State = "warning" if findings else "ok"
    summary = (
        f"{len(low)} large tables mostly scanned sequentially, {len(unused)} unused, "
        f"{len(duplicates)} duplicate, {len(invalid)} invalid indexes"
    )
    return CheckResult(
        "index_usage",
        state,
        summary,
        {
            "low_index_scan_tables": low,
            "unused_indexes": [{"table": i.table, "index": i.name} for i in unused],
            "duplicate_indexes": [
                {"table": i.table, "index": i.name, "covered_by": c.name} for i, c in duplicates
            ],
            "invalid_indexes": [{"table": i.table, "index": i.name} for i in invalid],
            "indexes": len(indexes),
        },
        findings,
    )


def cache_hit_ratio(session: Session, settings: PerfConfig) -> CheckResult:
    heap_hit, heap_read, idx_hit, idx_read = session.one(
        """
        SELECT coalesce(sum(heap_blks_hit), 0), coalesce(sum(heap_blks_read), 0),
               coalesce(sum(idx_blks_hit), 0), coalesce(sum(idx_blks_read), 0)
        FROM pg_statio_user_tables
        """
    )
    ratios = {
        "table_hit_percent": _percent(heap_hit, heap_read),
        "index_hit_percent": _percent(idx_hit, idx_read),
    }
    graded = {name: value for name, value in ratios.items() if value is not None}
    if not graded:
        return unknown("cache_hit_ratio", "no table or index blocks read since the statistics were reset")
    threshold = settings.cache_hit_percent
    states = {name: grade_below(value, threshold) for name, value in graded.items()}
    lowest = min(graded.values())
    findings = [
        f"{name.split('_')[0]} cache hit ratio {graded[name]:.2f}% ({s})"
        for name, s in states.items()
        if s != "ok"
    ]
    return CheckResult(
        "cache_hit_ratio",
        worst(list(states.values())),
        f"lowest cache hit ratio {lowest:.2f}% ({limits(threshold)} %)",
        {**ratios, "blocks_read": int(heap_read) + int(idx_read), "blocks_hit": int(heap_hit) + int(idx_hit)},
        findings,
    )


def _percent(hit: Any, read: Any) -> float | None:
    total = int(hit) + int(read)
    return round(100 * int(hit) / total, 3) if total else None


def connections(session: Session, settings: PerfConfig) -> CheckResult:
    rows = session.rows(
        """
        SELECT coalesce(state, 'unknown'), count(*) FROM pg_stat_activity
        WHERE backend_type = 'client backend' GROUP BY 1 ORDER BY 1
        """
    )
    (maximum,) = session.one("SELECT current_setting('max_connections')::int")
    used = sum(int(count) for _, count in rows)
    share = used / maximum
    threshold = settings.connections_share
    state = grade_above(share, threshold)
    by_state = {name: int(count) for name, count in rows}
    findings = [] if state == "ok" else [f"{used} of max_connections {maximum} in use: {by_state}"]
    return CheckResult(
        "connections",
        state,
        f"{used} of {maximum} connections ({share * 100:.0f}%; {limits(threshold)} of max_connections)",
        {"used": used, "max_connections": maximum, "share": round(share, 4), "by_state": by_state},
        findings,
    )


def sessions(session: Session, settings: PerfConfig) -> CheckResult:
    rows = session.rows(
        """
        SELECT pid, coalesce(usename, ''), coalesce(application_name, ''), state,
               extract(epoch FROM now() - query_start), extract(epoch FROM now() - state_change),
               coalesce(wait_event_type || ':' || wait_event, '')
        FROM pg_stat_activity
        WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
          AND state IN ('active', 'idle in transaction', 'idle in transaction (aborted)')
        ORDER BY query_start
        """
    )
    active, idle = [], []
    for pid, user, app, state, query_age, state_age, wait in rows:
        entry = {"pid": int(pid), "user": user, "application": app, "state": state, "wait": wait}
        if state == "active":
            active.append({**entry, "seconds": round(float(query_age or 0), 1)})
        else:
            idle.append({**entry, "seconds": round(float(state_age or 0), 1)})
    oldest_active = max((s["seconds"] for s in active), default=0.0)
    oldest_idle = max((s["seconds"] for s in idle), default=0.0)
    states = [
        grade_above(oldest_active, settings.long_running_seconds),
        grade_above(oldest_idle, settings.idle_in_transaction_seconds),
    ]
    findings = [
        f"{s['state']} session pid {s['pid']} ({s['user']}, {s['application'] or 'no application name'}) for {humanize_duration(s['seconds'])}"
        for s, threshold in [(s, settings.long_running_seconds) for s in active]
        + [(s, settings.idle_in_transaction_seconds) for s in idle]
        if s["seconds"] > threshold.warning
    ]
    return CheckResult(
        "sessions",
        worst(states),
        f"oldest active query {oldest_active:.0f}s ({limits(settings.long_running_seconds)} s), "
        f"oldest idle in transaction {oldest_idle:.0f}s ({limits(settings.idle_in_transaction_seconds)} s)",
        {
            "oldest_active_seconds": oldest_active,
            "oldest_idle_in_transaction_seconds": oldest_idle,
            "long_running": [s for s in active if s["seconds"] > settings.long_running_seconds.warning],
            "idle_in_transaction": [
                s for s in idle if s["seconds"] > settings.idle_in_transaction_seconds.warning
            ],
        },
        findings,
    )


def vacuum(session: Session, settings: PerfConfig) -> CheckResult:
    rows = session.rows(
        """
        SELECT schemaname || '.' || relname, n_live_tup, n_dead_tup, n_mod_since_analyze,
               greatest(last_vacuum, last_autovacuum), greatest(last_analyze, last_autoanalyze),
               extract(epoch FROM now() - greatest(last_analyze, last_autoanalyze))
        FROM pg_stat_user_tables ORDER BY n_dead_tup DESC, 1
        """
    )
    threshold = settings.dead_tuple_share
    dead: list[dict[str, Any]] = []
    stale: list[dict[str, Any]] = []
    states: list[State] = []
    for table, live, dead_tuples, modified, vacuumed, analyzed, analyze_age in rows:
        live, dead_tuples, modified = int(live or 0), int(dead_tuples or 0), int(modified or 0)
        share = dead_tuples / (live + dead_tuples) if live + dead_tuples else 0.0
        if dead_tuples >= settings.min_dead_tuples:
            state = grade_above(share, threshold)
            if state != "ok":
                states.append(state)
                dead.append(
                    {
                        "table": table,
                        "dead_tuples": dead_tuples,
                        "live_tuples": live,
                        "dead_share": round(share, 4),
                        "last_vacuum": vacuumed.isoformat() if vacuumed else None,
                        "state": state,
                    }
                )
        old = analyze_age is None or float(analyze_age) > settings.stale_analyze_days * 86400
        if old and modified >= max(settings.min_dead_tuples, live // 10) and modified > 0:
            stale.append(
                {
                    "table": table,
                    "modified_since_analyze": modified,
                    "last_analyze": analyzed.isoformat() if analyzed else None,
                }
            )
    if stale:
        states.append("warning")
    findings = [
        f"{d['table']}: {d['dead_tuples']:,} dead tuples, {d['dead_share'] * 100:.1f}% of its rows ({d['state']}); "
        f"last vacuum {d['last_vacuum'] or 'never'}"
        for d in dead
    ]
    findings += [
        f"{s['table']}: {s['modified_since_analyze']:,} rows changed since its last analyze ({s['last_analyze'] or 'never'})"
        for s in stale
    ]
    return CheckResult(
        "vacuum",
        worst(states),
        f"{len(dead)} tables over the dead-tuple share ({limits(threshold)}), {len(stale)} with stale statistics",
        {"dead_tuples": dead, "stale_statistics": stale, "tables": len(rows)},
        findings,
    )


def sequences(session: Session, settings: PerfConfig) -> CheckResult:
    """Each sequence's share of its range used, against its owning column's type when narrower.

    ``pg_sequences.last_value`` would lock each sequence ROW EXCLUSIVE; selecting from the
    sequence itself takes ACCESS SHARE only.
    """
    catalog = session.rows(
        """
        SELECT c.oid, n.nspname, c.relname, s.seqmin, s.seqmax, s.seqincrement, s.seqcycle,
               (SELECT format_type(a.atttypid, NULL) FROM pg_depend d
                JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                  AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i') LIMIT 1)
        FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = 'S' AND has_table_privilege(c.oid, 'SELECT') ORDER BY 2, 3
        """
    )
    values: dict[int, tuple[int, bool]] = {}
    for start in range(0, len(catalog), SEQUENCE_BATCH):
        batch = catalog[start : start + SEQUENCE_BATCH]
        union = " UNION ALL ".join(
            f"SELECT {int(oid)}::oid, last_value, is_called FROM {quote_ident(schema)}.{quote_ident(name)}"
            for oid, schema, name, *_ in batch
        )
        for oid, last, called in session.rows(union):
            values[int(oid)] = (int(last), bool(called))
    threshold = settings.sequence_used_share
    report: list[dict[str, Any]] = []
    states: list[State] = []
    for oid, schema, name, low, high, step, cycle, column_type in catalog:
        if cycle or int(oid) not in values:
            continue
        last, called = values[int(oid)]
        if not called:
            continue
        high = min(int(high), INT_MAX.get(column_type or "", int(high)))
        low = int(low)
        used = (last - low) / (high - low) if int(step) > 0 else (high - last) / (high - low)
        state = grade_above(used, threshold)
        states.append(state)
        if state != "ok":
            report.append(
                {
                    "sequence": f"{schema}.{name}",
                    "last_value": last,
                    "max_value": high,
                    "used_share": round(used, 6),
                    "column_type": column_type,
                    "state": state,
                }
            )
    findings = [
        f"sequence {s['sequence']} has used {s['used_share'] * 100:.1f}% of its range (last {s['last_value']:,} of {s['max_value']:,}"
        f"{', limited by its ' + s['column_type'] + ' column' if s['column_type'] in ('smallint', 'integer') else ''}; {s['state']})"
        for s in report
    ]
    return CheckResult(
        "sequences",
        worst(states),
        f"{len(report)} of {len(catalog)} sequences near exhaustion ({limits(threshold)} of their range)",
        {"near_exhaustion": report, "sequences": len(catalog)},
        findings,
    )


def wraparound(session: Session, settings: PerfConfig) -> CheckResult:
    rows = session.rows(
        "SELECT datname, age(datfrozenxid), mxid_age(datminmxid) FROM pg_database WHERE datallowconn ORDER BY 2 DESC"
    )
    tables = session.rows(
        """
        SELECT n.nspname || '.' || c.relname, age(c.relfrozenxid) FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'm', 't') AND c.relfrozenxid <> '0'::xid
        ORDER BY 2 DESC LIMIT 5
        """
    )
    databases = [{"database": d, "xid_age": int(x), "mxid_age": int(m)} for d, x, m in rows]
    oldest = max((max(d["xid_age"], d["mxid_age"]) for d in databases), default=0)
    share = oldest / XID_SPACE
    threshold = settings.wraparound_used_share
    state = grade_above(share, threshold)
    findings = (
        []
        if state == "ok"
        else [
            f"database {d['database']}: transaction id age {d['xid_age']:,}, multixact age {d['mxid_age']:,}"
            for d in databases[:3]
        ]
    )
    return CheckResult(
        "wraparound",
        state,
        f"oldest transaction id age {oldest:,} ({share * 100:.2f}% of 2^31; {limits(threshold)})",
        {
            "used_share": round(share, 6),
            "headroom": XID_SPACE - oldest,
            "databases": databases,
            "oldest_tables": [{"table": t, "xid_age": int(a)} for t, a in tables],
        },
        findings,
    )


DATABASE_CHECKS = {
    "slow_queries": slow_queries,
    "index_usage": index_usage,
    "cache_hit_ratio": cache_hit_ratio,
    "connections": connections,
    "sessions": sessions,
    "vacuum": vacuum,
    "sequences": sequences,
    "wraparound": wraparound,
}
