"""``db_restore`` with ``target_time``, run by ``dag.test()`` against the stack (the approvals given
at once, as Airflow's UI would): the moment's database in the target with exactly the rows before it,
the three checks green, the report under the archive's ``restores/`` naming the time reached; a
moment outside the window fails at ``resolve_backup``, before anyone is asked."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from stellar_ops.pitr.recovery import WalArchive, iso
from stellar_ops.postgres.target import connect
from tests.support.dagrun import run_dag
from tests.support.pitr_recovery import TABLE, TOOLS_DIR, History, make_copies, make_history

pytestmark = pytest.mark.integration

ROOT = "t/pitr-recovery-dag"


@pytest.fixture(scope="module")
def history(stack) -> History:
    return make_history(stack, ROOT)


@pytest.fixture(scope="module")
def copies(stack, history) -> Iterator[dict[str, WalArchive]]:
    yield from make_copies(stack, history)


@pytest.fixture
def approved_at_once(monkeypatch):
    from airflow.sdk.exceptions import AirflowSkipException

    from stellar_ops.adapters.common.approvals import Approval

    # Approvals block under dag.test() (AIRFLOW_NOTES trap 5): here a lead approves at once.
    def approve(self: Any, context: Any) -> Any:
        if self.ask_only_if and not context["params"].get(self.ask_only_if):
            raise AirflowSkipException("not asked")
        return {"chosen_options": ["Approve"], "params_input": {}}

    monkeypatch.setattr(Approval, "execute", approve)


@pytest.fixture
def pitr_ops(ops, copies):
    ops.update(pitr={"prefix": f"{ROOT}/pitr", "server_name": "whole", "tools_dir": str(TOOLS_DIR)})
    return ops


def test_db_restore_recovers_a_moment_into_the_target(airflow_db, stack, history, pitr_ops, approved_at_once):
    target_time = history.second.between(2)  # after row 7, before row 8
    database = "pitr_dag_copy"
    outcome = run_dag("db_restore", conf={"target_time": iso(target_time), "target_database": database})
    try:
        assert outcome.state == "success", outcome.tasks
        assert outcome.xcom("resolve_backup")["base_backup_id"] == history.record.backup_id
        for check in ("verify_row_counts", "verify_schema", "verify_sanity_queries"):
            assert outcome.xcom(check)["passed"] is True, outcome.xcom(check)
        recovery = outcome.xcom("restore_backup")["recovery"]
        reached = datetime.fromisoformat(recovery["reached"].replace("Z", "+00:00"))
        assert (
            history.second.before[2] <= reached <= target_time
        )  # row 7 committed, or later before the target
        with connect(stack.superuser.with_dbname(database)) as conn:
            assert [r[0] for r in conn.execute(f"SELECT id FROM {TABLE} ORDER BY id")] == list(range(1, 8))
        [report_key] = [k for k in pitr_ops.store().list_objects(f"{ROOT}/pitr/whole/restores/")]
        report = pitr_ops.store().get_json(report_key.key)
        assert report["success"] is True and report["reached"] == recovery["reached"]
        assert report["target_time"] == iso(target_time)
    finally:
        with connect(stack.superuser.with_dbname("postgres")) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def test_a_moment_outside_the_window_fails_before_the_approval(airflow_db, history, pitr_ops):
    too_early = history.record.stop_time - timedelta(days=1)
    outcome = run_dag("db_restore", conf={"target_time": iso(too_early.astimezone(UTC))})
    assert outcome.state == "failed"
    assert outcome.tasks["resolve_backup"] == "failed"
    assert outcome.tasks.get("approve_restore") in ("upstream_failed", None)
