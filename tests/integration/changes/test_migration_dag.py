"""``db_migration`` run whole by ``dag.test()`` against the stack's production database (the demo
data), the approvals given at once by a platform lead as Airflow's UI would: a migration is backed
up, rehearsed on a restore of that backup (duration, locks, diff, rollback), approved, applied and
verified; one that fails in the rehearsal never reaches the approval; one that meets a lock in
production past ``lock_timeout`` leaves production as it was and pages; one that changed production
before failing is rolled back by its rehearsed script; a rollback script that does not give back the
schema is refused in the rehearsal.

The migrations change the stack's real database: every test puts its schema back in ``finally``
(as the application role, which owns the tables) and checks the fingerprint is the one before.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from stellar_ops.changes.apply import schema_fingerprint
from stellar_ops.changes.changelog import ChangeLog
from stellar_ops.postgres.target import connect
from tests.support.dagrun import Outcome, run_dag

pytestmark = pytest.mark.integration

CLI = str(Path(sys.executable).parent / "stellar-ops")
LEAD = "lead-e2e"
_numbers = itertools.count(1)


@dataclass
class Lead:
    """A platform lead who answers every approval at once; ``before[task_id]`` runs just before."""

    asked: list[str] = field(default_factory=list)
    before: dict[str, Callable[[], None]] = field(default_factory=dict)


@pytest.fixture
def lead(monkeypatch) -> Lead:
    from stellar_ops.adapters.common.approvals import ANSWER, Approval

    answered = Lead()

    # Approvals block under dag.test() (AIRFLOW_NOTES trap 5): the lead approves at once, and the
    # answer is kept where the UI's would be, for the change record.
    def approve(self: Any, context: Any) -> Any:
        answered.asked.append(self.task_id)
        if self.task_id in answered.before:
            answered.before[self.task_id]()
        context["ti"].xcom_push(
            key=ANSWER, value={"chosen": "Approve", "by": LEAD, "at": datetime.now(UTC).isoformat()}
        )
        return {"chosen_options": ["Approve"], "params_input": {}}

    monkeypatch.setattr(Approval, "execute", approve)
    return answered


@dataclass
class Production:
    """Names of this test's objects in the stack's database, and the schema before the test."""

    column: str
    index: str
    fingerprint: str


@pytest.fixture
def production(stack) -> Iterator[Production]:
    n = f"{os.getpid()}_{next(_numbers)}"
    names = Production(
        column=f"chg_e2e_{n}", index=f"chg_e2e_{n}_idx", fingerprint=schema_fingerprint(stack.db)[0]
    )
    try:
        yield names
    finally:
        with connect(stack.db) as conn:
            conn.execute(f"DROP INDEX IF EXISTS {names.index}")
            conn.execute(f"ALTER TABLE trades DROP COLUMN IF EXISTS {names.column}")
        assert schema_fingerprint(stack.db)[0] == names.fingerprint


@pytest.fixture
def changes_ops(ops):
    ops.update(
        changes={"log_prefix": f"{ops.prefix}changes/", "lock_timeout": "1s", "statement_timeout": "2min"}
    )
    return ops


def put_sql(ops, name: str, text: str) -> str:
    key = f"{ops.prefix}sql/{name}"
    ops.store().put_bytes(key, text.encode(), content_type="text/plain")
    return key


def record_of(ops, outcome: Outcome) -> dict[str, Any]:
    change = outcome.xcom("check_script")["change_id"]
    record = ChangeLog(ops.store(), f"{ops.prefix}changes/").read(change)
    assert record is not None, f"no record of {change}"
    return record


def add_column_and_index(p: Production) -> tuple[str, str]:
    migration = (
        f"ALTER TABLE trades ADD COLUMN {p.column} text DEFAULT 'n/a';\n"
        f"CREATE INDEX CONCURRENTLY {p.index} ON trades ({p.column});\n"
    )
    rollback = f"DROP INDEX CONCURRENTLY IF EXISTS {p.index};\nALTER TABLE trades DROP COLUMN IF EXISTS {p.column};\n"
    return migration, rollback


def production_has(stack, p: Production) -> tuple[bool, bool]:
    with connect(stack.db) as conn:
        column = conn.execute(
            "SELECT 1 FROM information_schema.columns WHERE table_name = 'trades' AND column_name = %s",
            [p.column],
        ).fetchone()
        index = conn.execute("SELECT 1 FROM pg_indexes WHERE indexname = %s", [p.index]).fetchone()
    return column is not None, index is not None


def test_a_migration_is_rehearsed_approved_applied_and_verified(
    airflow_db, stack, changes_ops, lead, production
):
    migration, rollback = add_column_and_index(production)
    outcome = run_dag(
        "db_migration",
        conf={
            "migration": put_sql(changes_ops, "add.sql", migration),
            "rollback": put_sql(changes_ops, "add.rollback.sql", rollback),
            "reason": "OPS-42 notes on trades",
        },
    )
    assert outcome.state == "success", outcome.tasks
    assert lead.asked == ["approve_migration"]
    assert outcome.tasks["page_way_back"] == "skipped" and outcome.tasks["roll_back"] == "skipped"
    assert production_has(stack, production) == (True, True)

    rehearsed = outcome.xcom("rehearse_migration")
    assert rehearsed["fingerprint_before"] == production.fingerprint
    assert "AccessExclusiveLock on public.trades" in rehearsed["approval"], rehearsed["approval"]
    assert "summary" not in rehearsed, "the report travels once, in the approval's text"
    assert production.column in rehearsed["approval"] and production.index in rehearsed["approval"]
    assert "Rollback: gives back the schema before" in rehearsed["approval"]

    record = record_of(changes_ops, outcome)
    report = record["rehearsal"]
    assert report["ok"] is True and report["duration_seconds"] > 0
    assert any(
        lock["mode"] == "AccessExclusiveLock" and lock["relation"] == "public.trades"
        for lock in report["locks"]
    ), report["locks"]
    added = {(d["section"], d["object"]) for d in report["diff"]["added"]}
    assert ("columns", f"public.trades.{production.column}") in added, added
    assert any(production.index in obj for _, obj in added), added
    assert report["rollback"]["restores_schema"] is True
    assert record["status"] == "verified" and record["result"] == "done"
    assert record["requested_by"] and record["reason"] == "OPS-42 notes on trades"
    assert record["approval"]["by"] == LEAD and record["approval"]["chosen"] == "Approve"
    assert record["applied"]["fingerprint_after"] == rehearsed["fingerprint_after"]
    assert schema_fingerprint(stack.db)[0] == rehearsed["fingerprint_after"]
    backup_key = record["pre_change_backup"]
    assert backup_key == outcome.xcom("take_pre_change_backup")["key"]
    store = changes_ops.store()
    assert backup_key.startswith(changes_ops.prefix)
    assert store.exists(backup_key) and store.exists(backup_key + ".manifest.json")

    listed = subprocess.run(
        [CLI, "changes", "list", "--json"], capture_output=True, text=True, env=dict(os.environ), timeout=120
    )
    assert listed.returncode == 0, listed.stderr
    rows = {row["change_id"]: row for row in json.loads(listed.stdout)}
    row = rows[record["change_id"]]
    assert row["status"] == "verified" and row["approved_by"] == LEAD and row["kind"] == "migration"


def test_a_migration_that_fails_in_the_rehearsal_never_reaches_the_approval(
    airflow_db, stack, changes_ops, lead, production
):
    migration = (
        f"ALTER TABLE trades ADD COLUMN {production.column} text;\n"
        f"UPDATE trades SET {production.column} = no_such_column;\n"
    )
    outcome = run_dag("db_migration", conf={"migration": put_sql(changes_ops, "bad.sql", migration)})
    assert outcome.state == "failed", outcome.tasks
    assert outcome.tasks["rehearse_migration"] == "failed"
    assert outcome.tasks["approve_migration"] == "upstream_failed"
    assert outcome.tasks["apply_migration"] == "upstream_failed"
    assert lead.asked == []
    assert schema_fingerprint(stack.db)[0] == production.fingerprint
    record = record_of(changes_ops, outcome)
    assert record["status"] == "rehearsal failed"
    assert "no_such_column" in str(record["rehearsal"]["error"])
    assert record["result"] == "failed at rehearse_migration"


def test_a_lock_held_in_production_past_lock_timeout_leaves_it_as_it_was_and_pages(
    airflow_db, stack, changes_ops, lead, production, receiver
):
    migration, rollback = add_column_and_index(production)
    with contextlib.ExitStack() as held:

        def hold_a_lock() -> None:
            conn = held.enter_context(connect(stack.db, autocommit=False))
            conn.execute("LOCK TABLE trades IN ACCESS SHARE MODE")

        lead.before["approve_migration"] = hold_a_lock
        outcome = run_dag(
            "db_migration",
            conf={
                "migration": put_sql(changes_ops, "add.sql", migration),
                "rollback": put_sql(changes_ops, "add.rollback.sql", rollback),
            },
        )
    assert outcome.state == "failed", outcome.tasks
    assert outcome.tasks["apply_migration"] == "failed" and outcome.tries["apply_migration"] == 1
    assert outcome.tasks["verify_migration"] == "upstream_failed"
    assert outcome.tasks["approve_rollback"] == "skipped" and outcome.tasks["roll_back"] == "skipped"
    assert lead.asked == ["approve_migration"]
    assert schema_fingerprint(stack.db)[0] == production.fingerprint
    assert production_has(stack, production) == (False, False)
    record = record_of(changes_ops, outcome)
    paged = [t for t in receiver.texts() if "MigrationFailed" in t and "production is as it was" in t]
    assert any(record["pre_change_backup"] in t and "nothing to roll back" in t for t in paged), (
        receiver.texts()
    )
    assert record["status"] == "apply failed" and record["production_changed"] is False
    assert "lock timeout" in str(record["applied"]["error"]), record["applied"]
    assert record["result"] == "failed at apply_migration"


def _duplicate_a_trade(stack, made: list[int]) -> None:
    with connect(stack.db) as conn:
        row = conn.execute(
            "INSERT INTO trades (escrow_id, buyer_account, seller_account, base_asset, counter_asset, amount,"
            " price, status, tx_hash, ledger, created_at, settled_at)"
            " SELECT escrow_id, buyer_account, seller_account, base_asset, counter_asset, amount, price, status,"
            " tx_hash, ledger, created_at, settled_at FROM trades WHERE tx_hash IS NOT NULL ORDER BY id LIMIT 1"
            " RETURNING id"
        ).fetchone()
    made.append(int(row[0]))


def test_a_migration_that_changed_production_before_failing_is_rolled_back(
    airflow_db, stack, changes_ops, lead, production, receiver
):
    # a unique index over tx_hash holds on the backup; a duplicate committed after it fails it in production
    migration = (
        f"ALTER TABLE trades ADD COLUMN {production.column} text DEFAULT 'n/a';\n"
        f"CREATE UNIQUE INDEX CONCURRENTLY {production.index} ON trades (tx_hash);\n"
    )
    rollback = (
        f"DROP INDEX CONCURRENTLY IF EXISTS {production.index};\n"
        f"ALTER TABLE trades DROP COLUMN IF EXISTS {production.column};\n"
    )
    duplicates: list[int] = []
    lead.before["approve_migration"] = lambda: _duplicate_a_trade(stack, duplicates)
    try:
        outcome = run_dag(
            "db_migration",
            conf={
                "migration": put_sql(changes_ops, "unique.sql", migration),
                "rollback": put_sql(changes_ops, "unique.rollback.sql", rollback),
            },
        )
        assert outcome.state == "failed", outcome.tasks
        assert outcome.tasks["rehearse_migration"] == "success"
        assert outcome.tasks["apply_migration"] == "failed" and outcome.tries["apply_migration"] == 1
        assert outcome.tasks["page_way_back"] == "success"
        assert outcome.tasks["approve_rollback"] == "success" and outcome.tasks["roll_back"] == "success"
        assert lead.asked == ["approve_migration", "approve_rollback"]
        way_back = outcome.xcom("page_way_back")
        assert way_back["production_changed"] is True
        assert any("rollback script" in line for line in way_back["lines"]), way_back
        paged = [t for t in receiver.texts() if "[P1] MigrationFailed" in t and "production was changed" in t]
        assert any("rollback script" in t for t in paged), receiver.texts()
        assert schema_fingerprint(stack.db)[0] == production.fingerprint
        assert production_has(stack, production) == (False, False)
        record = record_of(changes_ops, outcome)
        assert record["status"] == "rolled back", record
        assert record["rolled_back"]["restores_schema"] is True
        assert record["rollback_approval"]["by"] == LEAD
        assert record["result"] == "failed at apply_migration"
    finally:
        with connect(stack.db) as conn:
            for trade in duplicates:
                conn.execute("DELETE FROM trades WHERE id = %s", [trade])


def _dag_run(dag_id: str, run_id: str) -> Any:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        run = session.query(DagRun).filter_by(dag_id=dag_id, run_id=run_id).one_or_none()
        return None if run is None else {"conf": dict(run.conf or {}), "state": str(run.state)}


def test_without_a_rollback_script_the_way_back_starts_db_restore_filled_in(
    airflow_db, stack, changes_ops, lead, production, receiver
):
    migration = (
        f"ALTER TABLE trades ADD COLUMN {production.column} text DEFAULT 'n/a';\n"
        f"CREATE UNIQUE INDEX CONCURRENTLY {production.index} ON trades (tx_hash);\n"
    )
    duplicates: list[int] = []
    lead.before["approve_migration"] = lambda: _duplicate_a_trade(stack, duplicates)
    try:
        outcome = run_dag("db_migration", conf={"migration": put_sql(changes_ops, "unique.sql", migration)})
        assert outcome.state == "failed", outcome.tasks
        assert outcome.tasks["apply_migration"] == "failed"
        way_back = outcome.xcom("page_way_back")
        assert way_back["production_changed"] is True
        backup = outcome.xcom("take_pre_change_backup")["key"]
        assert any("db_restore" in line and backup in line for line in way_back["lines"]), way_back
        assert lead.asked == ["approve_migration", "approve_rollback"]
        assert outcome.tasks["roll_back"] == "success", outcome.tasks

        # approving the way back started a db_restore of the pre-change backup over production,
        # filled in; it asks its own approvals (a restore over a database needs two leads)
        started = _dag_run("db_restore", f"rollback_of__{outcome.run_id}")
        assert started is not None, "no db_restore run was started"
        assert started["conf"] == {
            "backup": backup,
            "target_conn_id": "stellar_restore",
            "target_database": stack.db.dbname,
            "replace": True,
        }, started
        record = record_of(changes_ops, outcome)
        assert record["status"] == "restore of the pre-change backup started", record
        assert record["rollback_approval"]["by"] == LEAD
        assert production_has(stack, production)[0], "the restore, not the script, is the way back here"
    finally:
        with connect(stack.db) as conn:
            for trade in duplicates:
                conn.execute("DELETE FROM trades WHERE id = %s", [trade])
            conn.execute(f"DROP INDEX IF EXISTS {production.index}")  # the invalid index left behind


def test_a_rollback_that_does_not_give_back_the_schema_is_refused_in_the_rehearsal(
    airflow_db, stack, changes_ops, lead, production
):
    migration, _ = add_column_and_index(production)
    rollback = f"DROP INDEX CONCURRENTLY IF EXISTS {production.index};\n"  # the column stays
    outcome = run_dag(
        "db_migration",
        conf={
            "migration": put_sql(changes_ops, "add.sql", migration),
            "rollback": put_sql(changes_ops, "half.rollback.sql", rollback),
        },
    )
    assert outcome.state == "failed", outcome.tasks
    assert outcome.tasks["rehearse_migration"] == "failed"
    assert outcome.tasks["approve_migration"] == "upstream_failed"
    assert lead.asked == []
    assert schema_fingerprint(stack.db)[0] == production.fingerprint
    record = record_of(changes_ops, outcome)
    assert record["status"] == "rehearsal failed"
    assert record["rehearsal"]["rollback"]["restores_schema"] is False
    assert any(production.column in line for line in record["rehearsal"]["rollback"]["differences"])
