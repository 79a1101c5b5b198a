"""The change procedures as an operator takes them through the UI, in a real Chromium on a live scheduler.

``db_migration``: a migration and its rollback put in the bucket, triggered from the form by an
on-call engineer, rehearsed on a restore of a fresh backup, the rehearsal read in the approval and
approved by a platform lead (never the one who triggered), applied to the stack's production
database; then the same migration stopped in production by a lock another session holds, which
leaves production as it was, and cleared in the UI once the lock is gone. ``config_change``: a
variable of the stack's API set through its env file, approved by a second on-call engineer and
rolled out with a reload; then a change that makes the API unhealthy, reverted to the very bytes
before. And each DAG's trigger form with its defaults, refused at its first step with a message
that says what is missing. Actions go through the UI only; REST reads state.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
import requests

from stellar_ops.postgres.target import connect
from tests.support.operator_ui import OperatorUIError
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

RED = ("failed",)
GREEN = ("success",)
BUCKET = "stellar-backups"


def failure_alert(receiver, dag_id: str, task_id: str) -> str:
    return wait_for(
        lambda: [t for t in receiver.texts() if f"{dag_id}.{task_id} failed" in t],
        90,
        f"{dag_id}.{task_id} failure alert",
    )[0]


def change_records(stack, prefix: str) -> list[dict]:
    """Every change record under the change log ``prefix``."""
    client = stack.s3_client()
    listed = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    return [
        json.loads(client.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read())
        for item in listed
        if item["Key"].endswith("/record.json")
    ]


# -- db_migration ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Migration:
    column: str
    index: str
    key: str
    rollback_key: str
    log_prefix: str


def _column_exists(stack, column: str) -> bool:
    with connect(stack.db) as conn:
        found = conn.execute(
            "SELECT 1 FROM information_schema.columns WHERE table_name = 'trades' AND column_name = %s",
            (column,),
        ).fetchone()
    return found is not None


@pytest.fixture
def migration(stack, e2e_prefix) -> Iterator[Migration]:
    """A migration adding a column and a concurrent index to ``trades``, and its rollback, in the
    bucket under the test's prefix; production's schema restored afterwards, whatever happened."""
    stamp = datetime.now(UTC).strftime("%H%M%S")
    column, index = f"e2e_note_{stamp}", f"trades_e2e_note_{stamp}_idx"
    found = Migration(
        column,
        index,
        key=f"{e2e_prefix}migrations/0042_trades_note.sql",
        rollback_key=f"{e2e_prefix}migrations/0042_trades_note.rollback.sql",
        log_prefix=f"{e2e_prefix}changes/",
    )
    client = stack.s3_client()
    client.put_object(
        Bucket=BUCKET,
        Key=found.key,
        Body=(
            f"ALTER TABLE trades ADD COLUMN {column} text DEFAULT 'n/a';\n"
            f"CREATE INDEX CONCURRENTLY {index} ON trades ({column});\n"
        ).encode(),
    )
    client.put_object(
        Bucket=BUCKET,
        Key=found.rollback_key,
        Body=(
            f"DROP INDEX CONCURRENTLY IF EXISTS {index};\nALTER TABLE trades DROP COLUMN IF EXISTS {column};\n"
        ).encode(),
    )
    try:
        yield found
    finally:
        with connect(stack.db) as conn:  # the application's role owns trades
            conn.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {index}")
            conn.execute(f"ALTER TABLE trades DROP COLUMN IF EXISTS {column}")


def pending_body(api, dag_id: str, run_id: str, task_id: str) -> str:
    for item in api.pending_approvals():
        ti = item.get("task_instance", item)
        if ti.get("dag_run_id", ti.get("run_id")) == run_id and ti.get("task_id") == task_id:
            return str(item.get("body") or "")
    raise AssertionError(f"no pending {dag_id}.{task_id} in {run_id}")


def test_db_migration_rehearsed_approved_by_a_lead_and_applied(
    ui_as, api, stack, receiver, configure, migration
):
    configure(changes={"log_prefix": migration.log_prefix})
    api.unpause("db_migration")
    oncall = ui_as("oncall")
    run_id = oncall.trigger(
        "db_migration",
        {"migration": migration.key, "rollback": migration.rollback_key, "reason": "e2e: CHG-42"},
    )
    api.wait_for_approval("db_migration", run_id, "approve_migration", timeout=420)

    # the approval carries the rehearsal on a restore of the pre-change backup
    backup = api.xcom("db_migration", run_id, "take_pre_change_backup")
    body = pending_body(api, "db_migration", run_id, "approve_migration")
    assert re.search(r"statement\(s\) in \d+\.\d+ s", body), body
    assert re.search(r"AccessExclusiveLock on \S*trades", body), body
    assert migration.column in body, body
    assert backup["key"] in body, body
    assert "Rollback: gives back the schema before" in body, body
    assert not _column_exists(stack, migration.column), "production changed before the approval"

    # the one who triggered cannot answer it; a platform lead can, and the UI shows them the report
    with pytest.raises(OperatorUIError, match="403|no way to answer"):
        oncall.approve("db_migration", run_id, "approve_migration")
    lead = ui_as("lead")
    lead.open_required_action("db_migration", run_id, "approve_migration")
    lead.page.get_by_test_id("hitl-option-Approve").wait_for()
    assert "AccessExclusiveLock" in lead.page.inner_text("main, body"), lead.screenshot()
    answer = lead.approve("db_migration", run_id, "approve_migration")
    assert answer["chosen_options"] == ["Approve"]

    assert lead.wait_for_state("db_migration", run_id, RED + GREEN) == "success", api.task_states(
        "db_migration", run_id
    )
    states = api.task_states("db_migration", run_id)
    assert states["apply_migration"] == states["verify_migration"] == "success", states
    assert states["page_way_back"] == "skipped", states
    assert _column_exists(stack, migration.column)

    (record,) = change_records(stack, migration.log_prefix)
    assert record["approval"]["by"] == "lead" and record["approval"]["chosen"] == "Approve", record
    assert record["requested_by"] == "oncall", record
    assert record["result"] == "done" and record["pre_change_backup"] == backup["key"], record


def test_db_migration_red_on_a_held_lock_production_unchanged_cleared_green(
    ui, ui_as, api, stack, receiver, configure, migration
):
    configure(changes={"log_prefix": migration.log_prefix, "lock_timeout": "2s"})
    api.unpause("db_migration")
    run_id = ui.trigger(
        "db_migration", {"migration": migration.key, "rollback": migration.rollback_key, "reason": "e2e"}
    )
    api.wait_for_approval("db_migration", run_id, "approve_migration", timeout=420)
    with connect(stack.db, autocommit=False) as holder:  # another session reads trades, and waits
        holder.execute("LOCK TABLE trades IN ACCESS SHARE MODE")
        ui_as("lead").approve("db_migration", run_id, "approve_migration")
        assert ui.wait_for_state("db_migration", run_id, RED + GREEN) == "failed", api.task_states(
            "db_migration", run_id
        )
        states = api.task_states("db_migration", run_id)
        assert states["apply_migration"] == "failed", states
        # paged, but no rollback is offered: production was not changed
        assert states["page_way_back"] == states["approve_rollback"] == "skipped", states
        assert api.task_tries("db_migration", run_id)["apply_migration"] == 1, "a failed apply is not retried"
        alert = failure_alert(receiver, "db_migration", "apply_migration")
        assert "lock timeout" in alert and "production is as it was" in alert, alert
        assert not _column_exists(stack, migration.column)
        holder.rollback()  # the lock is gone

    affected = ui.clear_task("db_migration", run_id, "apply_migration")
    assert {"apply_migration", "verify_migration", "page_way_back", "confirm_success"} <= set(affected)
    assert ui.wait_for_state("db_migration", run_id, RED + GREEN) == "success", api.task_states(
        "db_migration", run_id
    )
    assert _column_exists(stack, migration.column)
    states = api.task_states("db_migration", run_id)
    assert states["verify_migration"] == states["record_migration"] == "success", states
    (record,) = change_records(stack, migration.log_prefix)
    assert record["result"] == "done" and record["approval"]["by"] == "lead", record


def test_db_migration_with_the_form_s_defaults_is_refused_at_check_script(ui, api, receiver, configure):
    configure()
    api.unpause("db_migration")
    run_id = ui.trigger_with_defaults("db_migration")
    assert ui.wait_for_state("db_migration", run_id, RED + GREEN) == "failed"
    states = api.task_states("db_migration", run_id)
    assert states["check_script"] == "failed", states
    assert states["take_pre_change_backup"] == "upstream_failed", states
    assert "no migration named" in api.task_log("db_migration", run_id, "check_script")
    assert "no migration named" in failure_alert(receiver, "db_migration", "check_script")


# -- config_change -----------------------------------------------------------------------------


def api_health(stack) -> requests.Response:
    return requests.get(f"{stack.url('api')}/health", headers={"X-API-Key": stack.api_key}, timeout=10)


@pytest.fixture
def api_env(stack) -> Iterator[bytes]:
    """The stack's API env file; its exact bytes written back afterwards and the API reloaded."""
    path = stack.api_env_file
    original = path.read_bytes()
    versions = path.with_name(path.name + ".versions")
    had_versions = versions.exists()
    try:
        yield original
    finally:
        path.write_bytes(original)
        requests.post(
            f"{stack.url('api')}/_reload", headers={"X-API-Key": stack.admin_key}, timeout=10
        ).raise_for_status()
        if not had_versions and versions.is_dir():
            for item in versions.iterdir():
                item.unlink()
            versions.rmdir()


def configure_changes(configure, stack, e2e_prefix) -> None:
    configure(
        rotation={"env_file": str(stack.api_env_file), "restart": "http_reload"},
        changes={
            "log_prefix": f"{e2e_prefix}changes/",
            "healthy_timeout_seconds": 5,
            "health_settle_seconds": 1,
        },
    )


def test_config_change_approved_by_a_second_engineer_then_an_unhealthy_one_reverted(
    ui, ui_as, api, stack, receiver, configure, e2e_prefix, api_env
):
    configure_changes(configure, stack, e2e_prefix)
    api.unpause("config_change")
    oncall = ui_as("oncall")

    run_id = oncall.trigger(
        "config_change", {"set": {"INDEXER_LAG_SECONDS": "4"}, "reason": "e2e: INC-7 indexer lag"}
    )
    api.wait_for_approval("config_change", run_id, "approve_change")
    with pytest.raises(OperatorUIError, match="403|no way to answer"):  # four eyes
        oncall.approve("config_change", run_id, "approve_change")
    ui_as("oncall2").approve("config_change", run_id, "approve_change")
    assert ui.wait_for_state("config_change", run_id, RED + GREEN) == "success", api.task_states(
        "config_change", run_id
    )
    assert api_health(stack).json()["indexer_lag_seconds"] == 4
    assert b"INDEXER_LAG_SECONDS=4" in stack.api_env_file.read_bytes()
    written = stack.api_env_file.read_bytes()

    receiver.clear()
    run_id = oncall.trigger(
        "config_change", {"set": {"HEALTH_STATUS": "degraded"}, "reason": "e2e: a bad value"}
    )
    api.wait_for_approval("config_change", run_id, "approve_change")
    ui_as("oncall2").approve("config_change", run_id, "approve_change")
    assert ui.wait_for_state("config_change", run_id, RED + GREEN) == "failed", api.task_states(
        "config_change", run_id
    )
    states = api.task_states("config_change", run_id)
    assert states["restart_services"] == "failed", states
    assert states["revert_change"] == "success", states
    assert states["check_health"] == "upstream_failed", states
    assert api_health(stack).status_code == 200, "the API is not healthy again after the revert"
    assert stack.api_env_file.read_bytes() == written, "the revert did not give back the very bytes"
    assert "unhealthy after its restart" in failure_alert(receiver, "config_change", "restart_services")
    records = [r for r in change_records(stack, f"{e2e_prefix}changes/") if "HEALTH_STATUS" in r["what"]]
    assert records and records[0]["result"].endswith("; reverted"), records


def test_config_change_with_the_form_s_defaults_is_refused_at_check_change(
    ui, api, stack, receiver, configure, e2e_prefix, api_env
):
    configure_changes(configure, stack, e2e_prefix)
    api.unpause("config_change")
    run_id = ui.trigger_with_defaults("config_change")
    assert ui.wait_for_state("config_change", run_id, RED + GREEN) == "failed"
    states = api.task_states("config_change", run_id)
    assert states["check_change"] == "failed" and states["write_change"] == "upstream_failed", states
    assert "no reason given" in api.task_log("config_change", run_id, "check_change")
    assert "no reason given" in failure_alert(receiver, "config_change", "check_change")
    assert stack.api_env_file.read_bytes() == api_env
