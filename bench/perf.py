"""perf_analysis: every database check against databases of 100 and 2,000 tables (each with its
indexes, a sequence and its own entries in pg_stat_statements); the time per table must not grow:
2,000 tables within 25 times the time of 100."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.report import table, verdict
from stellar_ops.core.processes import unprivileged_user
from stellar_ops.perf import database
from stellar_ops.perf.config import PerfConfig
from stellar_ops.postgres.server import LocalPgServer
from stellar_ops.postgres.target import PgTarget, connect

SIZES = (100, 2000)
LIMIT = 25.0

SCHEMA_SQL = """
DO $$
BEGIN
  FOR i IN 1..{tables} LOOP
    EXECUTE format('CREATE TABLE t%s (id serial PRIMARY KEY, account int NOT NULL, note text)', i);
    EXECUTE format('CREATE INDEX t%s_account ON t%s (account)', i, i);
    EXECUTE format('CREATE INDEX t%s_account_note ON t%s (account, note)', i, i);
    EXECUTE format('INSERT INTO t%s (account, note) SELECT g %% 7, md5(g::text) FROM generate_series(1, 20) g', i);
  END LOOP;
END $$;
"""


def populate(target: PgTarget, tables: int) -> None:
    with connect(target) as conn:
        conn.execute(SCHEMA_SQL.format(tables=tables))
        # two query shapes per table: pg_stat_statements holds an entry for each
        for i in range(1, tables + 1):
            conn.execute(f"SELECT count(*) FROM t{i} WHERE note LIKE 'a%'")
            conn.execute(f"SELECT * FROM t{i} WHERE id = 1")
        conn.execute("ANALYZE")


def analyse(target: PgTarget, settings: PerfConfig) -> float:
    """Seconds for every database check, each in its own session, as the mapped tasks run them."""
    started = time.perf_counter()
    for check in database.DATABASE_CHECKS.values():
        with database.read_only_session(target, settings) as session:
            result = check(session, settings)
            assert result.state != "unknown", result.summary
    return time.perf_counter() - started


def run(repeat: int = 3) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="stellar-bench-perf-"))
    root.chmod(0o755)
    server = LocalPgServer(
        root / "pg",
        run_as=unprivileged_user("postgres"),
        settings={
            "shared_preload_libraries": "'pg_stat_statements'",
            "pg_stat_statements.max": "10000",
            "max_locks_per_transaction": "256",
            "fsync": "off",
            "synchronous_commit": "off",
        },
    )
    settings = PerfConfig(snapshot_size=10000)
    results: dict[str, Any] = {}
    try:
        server.init()
        server.start()
        for size in SIZES:
            admin = server.target()
            with connect(admin) as conn:
                conn.execute(f"CREATE DATABASE bench{size}")
            target = admin.with_dbname(f"bench{size}")
            with connect(target) as conn:
                conn.execute("CREATE EXTENSION pg_stat_statements")
            print(f"\n# {size} tables...", flush=True)
            populate(target, size)
            best = min(analyse(target, settings) for _ in range(repeat))
            results[f"{size} tables"] = {
                "seconds": round(best, 4),
                "ms_per_table": round(best * 1000 / size, 4),
            }
    finally:
        server.remove()
        shutil.rmtree(root, ignore_errors=True)
    small, large = (results[f"{s} tables"]["seconds"] for s in SIZES)
    ratio = large / small
    table(
        "perf_analysis: every database check",
        ["tables", "seconds", "ms per table"],
        [[s, results[f"{s} tables"]["seconds"], results[f"{s} tables"]["ms_per_table"]] for s in SIZES],
    )
    print(verdict(f"{SIZES[1]} tables / {SIZES[0]} tables", ratio, f"<= {LIMIT:g}x", ratio <= LIMIT))
    results["ratio"] = round(ratio, 2)
    results["met"] = ratio <= LIMIT
    return results
