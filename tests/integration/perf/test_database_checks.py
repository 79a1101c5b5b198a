"""The PostgreSQL checks against the stack's server and a workload the tests generate."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from pathlib import Path

import psycopg
import pytest

from stellar_ops.core.processes import unprivileged_user
from stellar_ops.perf import database, flow
from stellar_ops.perf.config import PerfConfig
from stellar_ops.postgres.server import LocalPgServer
from stellar_ops.postgres.target import PgTarget, connect
from tests.integration.perf.conftest import repeat, reset_statements

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(("sleep", "expected"), [(0.001, "ok"), (0.03, "warning"), (0.07, "critical")])
def test_slow_hot_paths_trip_the_query_mean_thresholds(stack, runtime, sleep, expected):
    reset_statements(stack)
    repeat(stack, f"SELECT pg_sleep({sleep})", 6)
    result = flow.run_check(runtime(), "slow_queries")
    assert result.state == expected, result.summary
    (hot,) = [q for q in result.values["top"] if "pg_sleep" in q["query"]]
    assert hot["calls"] == 6
    assert hot["mean_ms"] >= sleep * 1000
    assert {"queryid", "calls", "mean_ms", "total_ms", "rows", "query"} <= set(hot)
    assert hot["queryid"] in [q["queryid"] for q in result.values["hot_paths"]]
    assert result.values["stats_reset"]
    # the analysis's own queries are not in its lists
    assert not [q for q in result.values["snapshot"] if "stellar-ops perf_analysis" in q["query"]]


def test_the_top_list_is_by_mean_and_hot_paths_by_total(stack, runtime):
    reset_statements(stack)
    repeat(stack, "SELECT pg_sleep(0.04)", 1)
    repeat(stack, "SELECT count(*) FROM pg_class", 200)
    result = flow.run_check(runtime(hot_paths=1, top_queries=2), "slow_queries")
    assert "pg_sleep" in result.values["top"][0]["query"]
    assert len(result.values["top"]) == 2
    (hot,) = result.values["hot_paths"]
    assert hot["queryid"] == result.values["snapshot"][0]["queryid"]


def test_index_usage_finds_seq_scans_unused_duplicate_and_invalid_indexes(stack, runtime, workload):
    result = flow.run_check(runtime(), "index_usage")
    assert result.state == "warning"
    values = result.values
    assert "public.perf_big" in [t["table"] for t in values["low_index_scan_tables"]]
    unused = [i["index"] for i in values["unused_indexes"]]
    assert "perf_big_account" in unused and "perf_big_account_note" in unused
    assert "perf_big_pkey" not in unused
    assert {
        "table": "public.perf_big",
        "index": "perf_big_account",
        "covered_by": "perf_big_account_note",
    } in values["duplicate_indexes"]
    assert values["invalid_indexes"] == [{"table": "public.perf_dupes", "index": "perf_dupes_v"}]
    assert any("perf_dupes_v" in f for f in result.findings)


def test_small_tables_are_not_judged_on_index_use(stack, runtime, workload):
    result = flow.run_check(runtime(min_table_rows=50000), "index_usage")
    assert "public.perf_big" not in [t["table"] for t in result.values["low_index_scan_tables"]]


def test_vacuum_reports_dead_tuples_and_stale_statistics(stack, runtime, workload):
    result = flow.run_check(runtime(), "vacuum")
    assert result.state in ("warning", "critical")
    (dead,) = [d for d in result.values["dead_tuples"] if d["table"] == "public.perf_dead"]
    assert dead["dead_tuples"] >= 20000
    assert "public.perf_dead" in [s["table"] for s in result.values["stale_statistics"]]
    tight = flow.run_check(runtime(dead_tuple_share={"warning": 0.1, "critical": 0.3}), "vacuum")
    assert tight.state == "critical"


def test_sequences_near_their_maximum_and_their_columns_limit(stack, runtime, workload):
    result = flow.run_check(runtime(), "sequences")
    assert result.state == "critical"
    found = {s["sequence"]: s for s in result.values["near_exhaustion"]}
    assert found["public.perf_seq"]["state"] == "critical"
    assert found["public.perf_seq"]["max_value"] == 1000
    # a bigint sequence feeding an integer column runs out at the column's limit
    assert found["public.perf_wide"]["max_value"] == 2**31 - 1
    assert found["public.perf_wide"]["state"] == "warning"


def test_wraparound_headroom_and_cache_hit_ratio(stack, runtime):
    rt = runtime()
    wrap = flow.run_check(rt, "wraparound")
    assert wrap.state == "ok"
    assert 0 <= wrap.values["used_share"] < 0.5
    assert max(d["xid_age"] for d in wrap.values["databases"]) > 0
    assert wrap.values["headroom"] > 2**30
    assert any(d["database"] == "stellar_escrow" for d in wrap.values["databases"])
    assert (
        flow.run_check(runtime(wraparound_used_share={"warning": 0, "critical": 1}), "wraparound").state
        == "warning"
    )
    cache = flow.run_check(rt, "cache_hit_ratio")
    assert cache.state in ("ok", "warning", "critical")
    assert 0 < cache.values["table_hit_percent"] <= 100


def test_idle_in_transaction_and_long_running_sessions(stack, runtime):
    with connect(stack.db, autocommit=False) as idle:
        idle.execute("SELECT 1")  # opens the transaction and leaves it idle
        pid = idle.info.backend_pid
        sleeper = threading.Thread(target=repeat, args=(stack, "SELECT pg_sleep(6)", 1))
        sleeper.start()
        with connect(stack.db) as watcher:
            for _ in range(100):  # until the sleeping query has run for over a second
                found = watcher.execute(
                    "SELECT 1 FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'SELECT pg_sleep(6)%' "
                    "AND now() - query_start > interval '1.2 seconds'"
                ).fetchone()
                if found:
                    break
                time.sleep(0.1)
        result = flow.run_check(
            runtime(
                idle_in_transaction_seconds={"warning": 1, "critical": 3600},
                long_running_seconds={"warning": 1, "critical": 3600},
            ),
            "sessions",
        )
        sleeper.join()
    assert result.state == "warning"
    assert pid in [s["pid"] for s in result.values["idle_in_transaction"]]
    assert result.values["long_running"], result.values
    assert result.values["oldest_active_seconds"] >= 1
    # no query text: it may hold literal values
    assert all("query" not in s for s in result.values["idle_in_transaction"])


def test_every_database_check_reads_only_and_holds_nothing_beyond_access_share(stack, workload):
    settings = PerfConfig(statement_timeout_seconds=7, lock_timeout_seconds=2)
    with database.read_only_session(stack.db, settings) as session:
        for check in database.DATABASE_CHECKS.values():
            check(session, settings)
        assert session.lock_modes() <= {"AccessShareLock"}
        assert session.one("SHOW statement_timeout") == ("7s",)
        assert session.one("SHOW lock_timeout") == ("2s",)
        assert session.one("SHOW transaction_read_only") == ("on",)
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            session.rows("CREATE TABLE perf_nope (id int)")


def test_a_lock_the_analysis_cannot_get_makes_its_check_unknown_quickly(stack, runtime, workload):
    with connect(stack.superuser, autocommit=False) as holder:
        holder.execute("DROP SEQUENCE perf_seq")  # ACCESS EXCLUSIVE until rolled back
        result = flow.run_check(runtime(lock_timeout_seconds=1), "sequences")
        holder.rollback()
    assert result.state == "unknown"
    assert "did not answer in time" in result.summary and "lock timeout" in result.summary


def test_an_unreachable_database_gives_unknown_for_each_database_check(stack, runtime, monkeypatch):
    rt = runtime()
    closed = PgTarget("127.0.0.1", 1, "nobody", "nothing", "s3cret-pw")
    monkeypatch.setattr(rt.resources, "database", lambda: closed)
    for name in database.DATABASE_CHECKS:
        result = flow.run_check(rt, name)
        assert result.state == "unknown", name
        assert "cannot connect" in result.summary and "s3cret-pw" not in result.summary


def test_without_pg_stat_statements_slow_queries_is_unknown(stack, runtime, monkeypatch):
    with connect(stack.superuser.with_dbname("postgres")) as conn:
        conn.execute("DROP DATABASE IF EXISTS perf_plain")
        # from template0: the stack's template1 carries pg_stat_statements into every new database
        conn.execute(f'CREATE DATABASE perf_plain OWNER "{stack.db.user}" TEMPLATE template0')
    rt = runtime()
    monkeypatch.setattr(rt.resources, "database", lambda: stack.db.with_dbname("perf_plain"))
    result = flow.run_check(rt, "slow_queries")
    assert result.state == "unknown"
    assert "pg_stat_statements" in result.summary


@pytest.fixture(scope="module")
def small_server():
    """A server with max_connections 10, all of them usable, to meet the table's boundaries."""
    root = Path(tempfile.mkdtemp(prefix="stellar-perf-conn-"))
    root.chmod(0o755)
    server = LocalPgServer(
        root / "pg",
        run_as=unprivileged_user("postgres"),
        settings={"max_connections": "10", "superuser_reserved_connections": "0"},
    )
    server.init()
    server.start()
    yield server
    server.remove()
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize(("held", "expected"), [(7, "ok"), (8, "warning"), (9, "critical")])
def test_connections_against_max_connections(small_server, runtime, monkeypatch, held, expected):
    """The analysis's own connection counts: 7 held + 1 is 8 of 10 (ok), 9 warning, 10 critical."""
    rt = runtime()
    target = small_server.target()
    monkeypatch.setattr(rt.resources, "database", lambda: target)
    conns = [psycopg.connect(**target.connect_kwargs()) for _ in range(held)]
    try:
        result = flow.run_check(rt, "connections")
    finally:
        for conn in conns:
            conn.close()
    assert result.values["max_connections"] == 10
    assert result.values["used"] == held + 1
    assert result.state == expected
