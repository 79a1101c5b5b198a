"""db_maintenance against the stack's PostgreSQL: dead tuples, bloat warnings, pg_stat_statements."""

from __future__ import annotations

import re

import pytest

from stellar_ops.core.alerts import markdown_leftovers
from stellar_ops.core.processes import unprivileged_user
from stellar_ops.maintenance import vacuum as maintenance
from stellar_ops.postgres.server import LocalPgServer
from stellar_ops.postgres.target import connect
from tests.support.dagrun import run_dag

pytestmark = pytest.mark.integration


@pytest.fixture
def bloated_table(stack):
    """A table with many dead tuples that autovacuum is told to leave alone."""
    with connect(stack.db) as conn:
        conn.execute("DROP TABLE IF EXISTS bloat_probe")
        conn.execute(
            "CREATE TABLE bloat_probe (id int PRIMARY KEY, note text) WITH (autovacuum_enabled = false)"
        )
        conn.execute("INSERT INTO bloat_probe SELECT g, md5(g::text) FROM generate_series(1, 20000) g")
        conn.execute("UPDATE bloat_probe SET note = note || 'x'")  # 20000 dead tuples
        conn.execute("SELECT pg_stat_force_next_flush()")
    yield "public.bloat_probe"
    with connect(stack.db) as conn:
        conn.execute("DROP TABLE IF EXISTS bloat_probe")


def test_bloat_report_sees_dead_tuples_and_vacuum_removes_them(stack, bloated_table):
    report = maintenance.bloat_report(stack.db, warn_ratio=0.2, min_dead=1000, tables=[bloated_table])
    (row,) = report
    assert row.table == bloated_table
    assert row.dead_tuples >= 20000
    assert row.live_tuples == 20000
    assert row.dead_ratio == pytest.approx(0.5, abs=0.05)
    assert row.warning

    timings = maintenance.vacuum_analyze(stack.db, tables=[bloated_table], lock_timeout_seconds=5)
    assert list(timings) == [bloated_table]

    (after,) = maintenance.bloat_report(stack.db, warn_ratio=0.2, min_dead=1000, tables=[bloated_table])
    assert after.dead_tuples == 0
    assert not after.warning
    assert after.last_vacuum is not None
    assert after.last_analyze is not None


def test_vacuum_of_an_unknown_table_names_it(stack):
    from stellar_ops.core.errors import ConfigError

    with pytest.raises(ConfigError, match="public.no_such_table"):
        maintenance.vacuum_analyze(stack.db, tables=["no_such_table"], lock_timeout_seconds=5)


def test_db_maintenance_dag_vacuums_reports_and_sends_its_summary(airflow_db, ops, receiver, bloated_table):
    ops.update(maintenance={"tables": [bloated_table], "bloat_min_dead_tuples": 100})
    outcome = run_dag("db_maintenance")
    assert outcome.state == "success", outcome.tasks
    assert set(outcome.tasks.values()) == {"success"}
    before = outcome.xcom("measure_bloat")  # a summary: the worst tables, not every table's row
    assert before["tables"] == 1 and before["warned"] == [bloated_table] and before["warned_count"] == 1
    assert [row["table"] for row in before["worst"]] == [bloated_table]
    assert before["worst"][0]["warning"] is True
    assert outcome.xcom("vacuum_analyze")["tables"] == 1
    assert outcome.xcom("vacuum_analyze")["slowest"] == bloated_table
    summary = outcome.xcom("report_bloat")
    assert summary["warned_before"] == [bloated_table]
    assert summary["still_bloated"] == []
    assert summary["dead_tuples_removed"][bloated_table] >= 20000
    assert outcome.xcom("check_pg_stat_statements") == {"installed": True, "preloaded": True, "warning": None}
    (top,) = summary["top"]
    assert top["table"] == bloated_table and top["dead_before"] >= 20000 and top["dead_after"] == 0

    (message,) = [m for m in receiver.messages() if "text" in (m.get("json") or {})]  # the summary
    assert "/B0ALERTS/" in message["path"]  # the ops channel's webhook
    text = message["json"]["text"]
    assert message["json"]["blocks"][0]["text"] == {"type": "mrkdwn", "text": text}
    assert markdown_leftovers(text) == [], text
    headline, *rest = text.splitlines()
    assert re.fullmatch(
        r":broom: \*Database maintenance done:\* VACUUM ANALYZE of 1 table in \d+(\.\d)? (ms|s)", headline
    ), headline
    assert any(
        re.fullmatch(rf"• {bloated_table}: 2\d,\d{{3}} \(5\d\.\d%\) → 0 \(0\.0%\) .*", line) for line in rest
    ), rest
    assert "*pg_stat_statements:* installed and preloaded" in rest
    assert outcome.xcom("send_summary")["tables"] == 1


def test_pg_stat_statements_not_preloaded_gives_a_clear_warning(server_dir):
    server = LocalPgServer(server_dir / "pg", run_as=unprivileged_user("postgres"))
    server.init()
    server.start()
    try:
        status = maintenance.ensure_pg_stat_statements(server.target())
    finally:
        server.remove()
    assert status.installed
    assert not status.preloaded
    assert "shared_preload_libraries" in status.warning
