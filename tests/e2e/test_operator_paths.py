"""Every DAG as an on-call engineer takes it through the UI, in a real Chromium on a live scheduler.

For each of the ten DAGs: the trigger form with its defaults, any approval answered under
Required Actions, a realistic failure that turns the run red with a clear alert, the fault fixed
as a person fixes it, Clear on the failed task in the UI, and the cleared run green with its
message at the receiver. Then backfills of ``db_backup`` and ``dr_restore_test`` from the
backfill dialog. Actions go through the UI only; REST reads state and sets up the faults.
"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest

from stellar_ops.postgres.target import connect
from tests.support.api_stand_in import new_stand_in
from tests.support.manifests import publish_verified_backup
from tests.support.operator_ui import OperatorUIError
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

RED = ("failed",)
GREEN = ("success",)


def failure_alerts(receiver, dag_id: str, task_id: str) -> list[str]:
    return [t for t in receiver.texts() if f"{dag_id}.{task_id} failed" in t]


def wait_failure_alert(receiver, dag_id: str, task_id: str) -> str:
    return wait_for(lambda: failure_alerts(receiver, dag_id, task_id), 90, f"{dag_id}.{task_id} alert")[0]


def wait_resolved(receiver, dag_id: str, run_id: str) -> str:
    found = wait_for(
        lambda: [
            t
            for t in receiver.texts()
            if "RESOLVED" in t and f"{dag_id} succeeded again in run {run_id}" in t
        ],
        90,
        f"{dag_id} resolution",
    )
    return found[0]


def alertmanager_alerts(stack, dag_id: str) -> list[dict]:
    import requests

    alerts = requests.get(f"{stack.url('alertmanager')}/api/v2/alerts", timeout=10).json()
    return [a for a in alerts if a["labels"].get("dag_id") == dag_id and a["status"]["state"] == "active"]


def red_then_cleared_green(ui, api, receiver, dag_id: str, run_id: str, failed_task: str, fix) -> None:
    """The run red with the failed task named, the fault fixed, Clear in the UI, the run green."""
    assert ui.wait_for_state(dag_id, run_id, RED + GREEN) == "failed", api.task_states(dag_id, run_id)
    states = api.task_states(dag_id, run_id)
    assert states[failed_task] == "failed", states
    assert states["confirm_success"] == "upstream_failed", states
    wait_failure_alert(receiver, dag_id, failed_task)
    fix()
    affected = ui.clear_task(dag_id, run_id, failed_task)
    assert failed_task in affected and "confirm_success" in affected, affected
    assert ui.wait_for_state(dag_id, run_id, ("queued", "running", "success"), timeout=60) != "failed"


def finish_green(ui, api, receiver, dag_id: str, run_id: str) -> None:
    assert ui.wait_for_state(dag_id, run_id, RED + GREEN) == "success", api.task_states(dag_id, run_id)
    assert api.task_states(dag_id, run_id)["confirm_success"] == "success"
    wait_resolved(receiver, dag_id, run_id)


# -- db_backup, and the drill it starts --------------------------------------------------------


def test_db_backup_red_on_a_missing_bucket_cleared_green_and_its_drill_started(
    ui, api, stack, receiver, configure, e2e_prefix
):
    api.unpause("db_backup")
    api.unpause("dr_restore_test")
    configure(backup={"bucket": "no-such-bucket"}, dr={"trigger_on_new_backup": True})
    run_id = ui.trigger_with_defaults("db_backup")

    def fix():
        assert not [
            r for r in api.dag_runs("dr_restore_test") if r["conf"].get("backup", "").startswith(e2e_prefix)
        ]
        configure(dr={"trigger_on_new_backup": True})

    red_then_cleared_green(ui, api, receiver, "db_backup", run_id, "check_prerequisites", fix)
    assert "S3 bucket 'no-such-bucket' does not exist" in api.task_log(
        "db_backup", run_id, "check_prerequisites"
    )
    finish_green(ui, api, receiver, "db_backup", run_id)
    published = api.xcom("db_backup", run_id, "publish_backup")
    assert published["key"].startswith(e2e_prefix)
    assert any(published["key"] in t for t in receiver.texts()), "no success message names the backup"

    drills = wait_for(
        lambda: [r for r in api.dag_runs("dr_restore_test") if r["conf"].get("backup") == published["key"]],
        60,
        "the drill of the new backup",
    )
    (drill,) = drills
    assert api.wait_run("dr_restore_test", drill["dag_run_id"], timeout=420) == "success"
    report = api.xcom("dr_restore_test", drill["dag_run_id"], "publish_report")
    assert report["success"] is True


def test_a_backup_with_the_drill_off_starts_no_drill_run(ui, api, configure, e2e_prefix):
    configure()
    before = len(api.dag_runs("dr_restore_test"))
    run_id = ui.trigger_with_defaults("db_backup")
    assert ui.wait_for_state("db_backup", run_id, RED + GREEN) == "success", api.task_states(
        "db_backup", run_id
    )
    assert api.task_states("db_backup", run_id)["trigger_drill"] == "skipped"
    assert len(api.dag_runs("dr_restore_test")) == before


# -- dr_restore_test ---------------------------------------------------------------------------


def test_dr_restore_test_red_on_an_unusable_work_dir_cleared_green(
    ui, api, stack, receiver, configure, e2e_prefix
):
    configure()
    backup = ui.trigger_with_defaults("db_backup")
    assert api.wait_run("db_backup", backup) == "success"
    receiver.clear()
    configure(dr={"work_dir": "/proc/stellar-scratch"})
    run_id = ui.trigger_with_defaults("dr_restore_test")
    red_then_cleared_green(
        ui, api, receiver, "dr_restore_test", run_id, "restore_backup", lambda: configure()
    )
    finish_green(ui, api, receiver, "dr_restore_test", run_id)
    key = api.xcom("db_backup", backup, "publish_backup")["key"]
    assert api.xcom("dr_restore_test", run_id, "resolve_backup")["location"] == key
    assert stack.s3_client().head_object(Bucket="stellar-backups", Key=key + ".dr_report.json")


# -- db_maintenance ----------------------------------------------------------------------------


def test_db_maintenance_red_on_a_missing_table_cleared_green_once_it_exists(
    ui, api, stack, receiver, configure
):
    api.unpause("db_maintenance")
    configure(maintenance={"tables": ["public.settlement_batches"]})
    run_id = ui.trigger_with_defaults("db_maintenance")

    def create_the_table():
        with connect(stack.db) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS public.settlement_batches (id bigint PRIMARY KEY)")

    try:
        failed = wait_for(
            lambda: [
                t
                for t, s in api.task_states("db_maintenance", run_id).items()
                if s == "failed" and t != "confirm_success"
            ],
            240,
            "a failed maintenance task",
        )
        red_then_cleared_green(
            ui, api, receiver, "db_maintenance", run_id, sorted(failed)[0], create_the_table
        )
        finish_green(ui, api, receiver, "db_maintenance", run_id)
        assert any("settlement_batches" in t for t in receiver.texts() if "RESOLVED" not in t)
    finally:
        with connect(stack.db) as conn:
            conn.execute("DROP TABLE IF EXISTS public.settlement_batches")


# -- morning_health_check ----------------------------------------------------------------------


def test_morning_health_check_red_without_a_backup_cleared_green_after_one(
    ui, api, stack, receiver, configure, e2e_prefix
):
    api.unpause("morning_health_check")
    configure(health={"disk_paths": [stack.data_dir]})
    run_id = ui.trigger_with_defaults("morning_health_check")
    assert ui.wait_for_state("morning_health_check", run_id, RED + GREEN) == "failed"
    states = api.task_states("morning_health_check", run_id)
    assert states["summarize_health"] == "failed" and states["confirm_success"] == "upstream_failed"
    assert api.xcom("morning_health_check", run_id, "check_backups")["status"] == "critical"
    wait_failure_alert(receiver, "morning_health_check", "summarize_health")
    publish_verified_backup(stack, e2e_prefix, age=timedelta(hours=1))
    # the check that found the fault runs again, and the summary after it
    affected = ui.clear_task("morning_health_check", run_id, "check_backups")
    assert {"check_backups", "summarize_health", "confirm_success"} <= set(affected), affected
    finish_green(ui, api, receiver, "morning_health_check", run_id)
    assert api.xcom("morning_health_check", run_id, "check_backups")["status"] == "ok"


# -- tls_cert_check ----------------------------------------------------------------------------


def test_tls_cert_check_red_on_a_bad_domain_entry_cleared_green(ui, api, stack, receiver, configure):
    api.unpause("tls_cert_check")
    good = stack.ops_config()["tls"]
    bad = {**good, "domains": [{**good["domains"][0], "port": 0}]}
    configure(tls=bad)
    run_id = ui.trigger_with_defaults("tls_cert_check")
    red_then_cleared_green(
        ui, api, receiver, "tls_cert_check", run_id, "list_domains", lambda: configure(tls=good)
    )
    finish_green(ui, api, receiver, "tls_cert_check", run_id)
    assert "tls.domains" in api.task_log("tls_cert_check", run_id, "list_domains", try_number=1)


# -- perf_analysis -----------------------------------------------------------------------------


def test_perf_analysis_triggers_with_its_defaults_red_on_a_bad_check_name_cleared_green(
    ui, api, receiver, configure
):
    api.unpause("perf_analysis")
    configure(perf={"checks": ["cache_hit_ratio", "slow_querys"]})
    run_id = ui.trigger_with_defaults("perf_analysis")  # compare_to left empty
    red_then_cleared_green(
        ui,
        api,
        receiver,
        "perf_analysis",
        run_id,
        "list_checks",
        lambda: configure(perf={"checks": ["cache_hit_ratio"]}),
    )
    finish_green(ui, api, receiver, "perf_analysis", run_id)
    assert (
        api.request("GET", f"/dags/perf_analysis/dagRuns/{quote(run_id, safe='')}")["conf"]["compare_to"]
        is None
    )


# -- db_restore --------------------------------------------------------------------------------


def test_db_restore_red_without_createdb_cleared_approved_and_green(
    ui, ui_as, api, stack, receiver, configure, e2e_prefix
):
    configure()
    backup = ui.trigger_with_defaults("db_backup")
    assert api.wait_run("db_backup", backup) == "success"
    key = api.xcom("db_backup", backup, "publish_backup")["key"]
    api.unpause("db_restore")
    with connect(stack.superuser) as conn:
        conn.execute("ALTER ROLE stellar_restore NOCREATEDB")
    try:
        run_id = ui.trigger("db_restore", {"backup": key})  # target_conn_id: its default
        assert ui.wait_for_state("db_restore", run_id, RED + GREEN) == "failed"
        assert api.task_tries("db_restore", run_id)["check_target"] == 1, "a missing privilege is not retried"
        alert = wait_failure_alert(receiver, "db_restore", "check_target")
        assert "may not create databases" in alert and "nothing was written" in alert
        # the page stays firing in Alertmanager until a run succeeds, not its 5-minute resolve_timeout
        firing = wait_for(lambda: alertmanager_alerts(stack, "db_restore"), 60, "the Alertmanager alert")
        ends = datetime.fromisoformat(firing[0]["endsAt"].replace("Z", "+00:00"))
        assert ends - datetime.now(UTC) > timedelta(days=1), firing[0]

        with connect(stack.superuser) as conn:
            conn.execute("ALTER ROLE stellar_restore CREATEDB")
        ui.clear_task("db_restore", run_id, "check_target")
        api.wait_for_approval("db_restore", run_id, "approve_restore")
        answer = ui_as("lead").approve("db_restore", run_id, "approve_restore")
        assert answer["chosen_options"] == ["Approve"]
        finish_green(ui, api, receiver, "db_restore", run_id)
        wait_for(
            lambda: not alertmanager_alerts(stack, "db_restore"), 60, "the alert resolved by the success"
        )
        database = api.xcom("db_restore", run_id, "check_target")["database"]
        assert any("Restore done" in t and database in t for t in receiver.texts())
    finally:
        with connect(stack.superuser) as conn:
            conn.execute("ALTER ROLE stellar_restore CREATEDB")
            for (name,) in conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE 'stellar_escrow_2%'"
            ):
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- db_base_backup, and db_restore to a moment ------------------------------------------------


@pytest.fixture
def base_backups_removed(stack):
    """The stack's base backups deleted after the test: later drills of the session (whose
    rehearsal is ``auto``: on when a base backup exists) do not depend on this module's order."""
    yield
    client = stack.s3_client()
    pages = client.get_paginator("list_objects_v2").paginate(
        Bucket="stellar-backups", Prefix="pitr/stellar/base/"
    )
    for page in pages:
        for item in page.get("Contents", []):
            client.delete_object(Bucket="stellar-backups", Key=item["Key"])


def test_db_base_backup_red_on_a_missing_bucket_cleared_green(
    ui, api, stack, receiver, configure, base_backups_removed
):
    api.unpause("db_base_backup")
    configure(backup={"bucket": "no-such-bucket"})
    run_id = ui.trigger_with_defaults("db_base_backup")
    red_then_cleared_green(ui, api, receiver, "db_base_backup", run_id, "check_prerequisites", configure)
    assert "S3 bucket 'no-such-bucket' does not exist" in api.task_log(
        "db_base_backup", run_id, "check_prerequisites"
    )
    finish_green(ui, api, receiver, "db_base_backup", run_id)
    taken = api.xcom("db_base_backup", run_id, "take_base_backup")
    key = f"pitr/stellar/base/{taken['backup_id']}/backup.json"
    record = json.loads(stack.s3_client().get_object(Bucket="stellar-backups", Key=key)["Body"].read())
    assert record["backup_id"] == taken["backup_id"] and record["stop_time"] == taken["stop_time"]
    assert any(taken["backup_id"] in t for t in receiver.texts()), "no success message names it"


def _commit_rows(stack, label: str, count: int) -> datetime:
    """``count`` rows labelled ``label`` in one transaction; its commit time."""
    with connect(stack.db) as conn:  # the application's role owns it, as its tables
        conn.execute("CREATE TABLE IF NOT EXISTS e2e_moments (label text, n int)")
        conn.execute("INSERT INTO e2e_moments SELECT %s, generate_series(1, %s)", (label, count))
        committed = conn.execute("SELECT clock_timestamp()").fetchone()[0]
        conn.commit()
    return committed


def _archive_now(stack) -> None:
    with connect(stack.superuser) as conn:
        conn.autocommit = True
        segment = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()[0]
        wait_for(
            lambda: (
                (conn.execute("SELECT last_archived_wal FROM pg_stat_archiver").fetchone()[0] or "")
                >= segment
            ),
            120,
            f"{segment} archived",
        )


def test_db_restore_to_a_moment_from_the_form_approved_and_exact(
    ui, ui_as, api, stack, receiver, configure, base_backups_removed
):
    """A point-in-time restore as an on-call engineer asks for it: the time typed into the form, a
    lead's approval, and exactly the rows committed before that moment in the new database."""
    configure()
    api.unpause("db_base_backup")
    base = api.trigger("db_base_backup")
    assert api.wait_run("db_base_backup", base, timeout=300) == "success"
    before = _commit_rows(stack, "before", 100)
    time.sleep(1.5)
    moment = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    time.sleep(2.5)
    after = _commit_rows(stack, "after", 100)
    assert before < moment < after
    _archive_now(stack)

    api.unpause("db_restore")
    database = "pitr_e2e_" + moment.strftime("%H%M%S")
    run_id = ui.trigger(
        "db_restore",
        {"target_time": moment.isoformat().replace("+00:00", "Z"), "target_database": database},
    )
    try:
        api.wait_for_approval("db_restore", run_id, "approve_restore")
        answer = ui_as("lead").approve("db_restore", run_id, "approve_restore")
        assert answer["chosen_options"] == ["Approve"]
        assert ui.wait_for_state("db_restore", run_id, RED + GREEN) == "success", api.task_states(
            "db_restore", run_id
        )
        with connect(stack.superuser.with_dbname(database)) as conn:
            labels = dict(conn.execute("SELECT label, count(*) FROM e2e_moments GROUP BY label").fetchall())
            canaries = conn.execute(
                "SELECT count(*) FROM stellar_ops_canary WHERE written_at > %s", (moment,)
            ).fetchone()[0]
        assert labels == {"before": 100}, labels
        assert canaries == 0, "a canary written after the moment was restored"
        assert any("Point-in-time restore done" in t and database in t for t in receiver.texts())
    finally:
        with connect(stack.superuser) as conn:
            conn.autocommit = True
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def test_dr_restore_test_rehearses_a_moment_of_the_archive_checked_by_its_canaries(
    ui, api, stack, receiver, configure, base_backups_removed
):
    """Once a base backup exists, the monthly drill from the form also recovers to a random second
    of the archive and proves it by the stack's canary rows."""
    configure(dr={"pitr_rehearsal": "on"})
    api.unpause("db_backup")
    api.unpause("db_base_backup")
    for dag_id in ("db_backup", "db_base_backup"):  # the drill's logical backup, then a base backup
        assert api.wait_run(dag_id, api.trigger(dag_id), timeout=300) == "success"
    api.unpause("dr_restore_test")
    run_id = ui.trigger_with_defaults("dr_restore_test")
    assert ui.wait_for_state("dr_restore_test", run_id, RED + GREEN) == "success", api.task_states(
        "dr_restore_test", run_id
    )
    states = api.task_states("dr_restore_test", run_id)
    assert states["restore_to_moment"] == states["verify_canaries"] == "success", states
    assert api.xcom("dr_restore_test", run_id, "publish_report")["success"] is True
    rehearsal = api.xcom("dr_restore_test", run_id, "restore_to_moment")
    assert rehearsal["canaries"]["passed"] is True, rehearsal
    reached, target = (datetime.fromisoformat(rehearsal[k]) for k in ("reached", "target"))
    assert target - timedelta(seconds=10) < reached <= target, rehearsal  # canaries every 3 s


# -- api_key_rotation --------------------------------------------------------------------------


def test_api_key_rotation_red_while_the_api_is_down_cleared_approved_twice_and_green(
    ui, ui_as, api, stack, receiver, configure, e2e_prefix, tmp_path
):
    stand_in = new_stand_in(tmp_path / "api", api_keys=2, admin_keys=1)
    api.request(
        "POST",
        "/connections",
        json={
            "connection_id": "operator_api",
            "conn_type": "http",
            "host": "127.0.0.1",
            "port": stand_in.port,
            "schema": "http",
            "password": stand_in.admin_keys[0],
        },
    )
    try:
        configure(
            connections={"api": "operator_api"},
            rotation={
                "env_file": str(stand_in.env_file),
                "restart": "http_reload",
                "audit_prefix": f"{e2e_prefix}audit/",
                "ledger_key": f"{e2e_prefix}secrets-ledger.json",
            },
        )
        api.unpause("api_key_rotation")
        # the form's defaults, but a transition window a test can wait out
        run_id = ui.trigger("api_key_rotation", {"transition_days": 20 / 86400})
        api.wait_for_approval("api_key_rotation", run_id, "approve_rollout")
        ui_as("oncall").approve("api_key_rotation", run_id, "approve_rollout")
        stand_in.stop()  # the API is down when the rotation restarts it
        red_then_cleared_green(ui, api, receiver, "api_key_rotation", run_id, "restart_api", stand_in.start)
        api.wait_for_approval("api_key_rotation", run_id, "approve_removal", timeout=180)
        # four eyes: the rollout's approver may not remove the old keys; another on-call engineer may
        with pytest.raises(OperatorUIError, match="403|no way to answer"):
            ui_as("oncall").approve("api_key_rotation", run_id, "approve_removal")
        ui_as("oncall2").approve("api_key_rotation", run_id, "approve_removal")
        finish_green(ui, api, receiver, "api_key_rotation", run_id)
        assert stand_in.status(stand_in.api_keys[0]) == 403, "an old key is still accepted"
    finally:
        stand_in.stop()
        api.request("DELETE", "/connections/operator_api")


# -- secrets_rotation_audit --------------------------------------------------------------------


def test_secrets_rotation_audit_red_on_a_missing_bucket_cleared_green_with_one_digest(
    ui, api, receiver, configure, e2e_prefix
):
    api.unpause("secrets_rotation_audit")
    configure(backup={"bucket": "no-such-bucket"})
    run_id = ui.trigger_with_defaults("secrets_rotation_audit")
    receiver.clear()
    red_then_cleared_green(
        ui, api, receiver, "secrets_rotation_audit", run_id, "audit_rotation_ledger", lambda: configure()
    )
    finish_green(ui, api, receiver, "secrets_rotation_audit", run_id)
    digests = [t for t in receiver.texts() if "overdue" in t.lower() and "RESOLVED" not in t]
    assert len(digests) == 1, digests


# -- backfills from the dialog -----------------------------------------------------------------


def test_backfill_of_db_backup_takes_backups_named_by_their_snapshot(
    ui, api, receiver, configure, e2e_prefix
):
    configure()
    today = datetime.now(UTC).date()
    start, end = today - timedelta(days=3), today - timedelta(days=1)
    earlier = {r["dag_run_id"] for r in api.dag_runs("db_backup")}
    ui.backfill("db_backup", f"{start}T00:00", f"{end}T00:00")

    def finished_backfill_runs():
        runs = [
            r
            for r in api.dag_runs("db_backup")
            if r["run_type"] == "backfill" and r["dag_run_id"] not in earlier
        ]
        done = len(runs) >= 2 and all(r["state"] in ("success", "failed") for r in runs)
        return runs if done else []

    runs = wait_for(finished_backfill_runs, 600, "the backfill's runs")
    assert {r["state"] for r in runs} == {"success"}, runs
    for run in runs:
        published = api.xcom("db_backup", run["dag_run_id"], "publish_backup")
        stamp = re.search(r"(\d{8}T\d{6}Z)", published["key"]).group(1)
        taken = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        assert taken.date() == today, f"{published['key']} is named for the past"


def test_backfill_of_dr_restore_test_tests_the_month_s_newest_backup(ui, api, configure, e2e_prefix):
    configure()
    backup = ui.trigger_with_defaults("db_backup")
    assert api.wait_run("db_backup", backup) == "success"
    key = api.xcom("db_backup", backup, "publish_backup")["key"]
    month = datetime.now(UTC).replace(day=1).date()
    earlier = {r["dag_run_id"] for r in api.dag_runs("dr_restore_test")}
    ui.backfill("dr_restore_test", f"{month}T00:00", f"{month + timedelta(days=1)}T00:00")
    (run,) = wait_for(
        lambda: [
            r
            for r in api.dag_runs("dr_restore_test")
            if r["run_type"] == "backfill" and r["dag_run_id"] not in earlier
        ],
        120,
        "the drill backfill's run",
    )
    assert api.wait_run("dr_restore_test", run["dag_run_id"], timeout=420) == "success"
    assert api.xcom("dr_restore_test", run["dag_run_id"], "resolve_backup")["location"] == key
