"""Task bodies of ``db_migration`` and ``config_change``: each runs one step of
:mod:`stellar_ops.changes.migration` or :mod:`stellar_ops.changes.config_change`.

Every step finds its change by an id derived from the run (:func:`change_for`), so a cleared
task resumes the same change and its record in the change log.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stellar_ops.adapters.common.approvals import answer_of
from stellar_ops.adapters.common.runs import start_run
from stellar_ops.adapters.common.runtime import (
    checked,
    current_context,
    run_slot,
    task_runtime,
    task_states,
    try_token,
)
from stellar_ops.changes import config_change, migration
from stellar_ops.changes.changelog import change_id
from stellar_ops.dr.scratch import scratch_name


def change_for(kind: str) -> str:
    """This run's change id."""
    dag_run = current_context()["dag_run"]
    return change_id(kind, dag_run.run_after, str(dag_run.run_id))


def _requested_by() -> str:
    dag_run = current_context()["dag_run"]
    return str(getattr(dag_run, "triggering_user_name", None) or "scheduler")


# -- db_migration --------------------------------------------------------------------------------


@checked
def check_script(params: Mapping[str, Any]) -> dict[str, Any]:
    return migration.check(
        task_runtime(),
        change_for("migration"),
        migration=str(params.get("migration") or ""),
        rollback=(str(params["rollback"]).strip() or None) if params.get("rollback") else None,
        requested_by=_requested_by(),
        reason=params.get("reason") or None,
    )


@checked
def take_pre_change_backup(checked_script: dict[str, Any]) -> dict[str, Any]:
    context = current_context()
    return migration.take_pre_change_backup(
        task_runtime(),
        checked_script["change_id"],
        slot=run_slot(context),
        run_id=context["dag_run"].run_id,
        token=try_token(context),
    )


@checked
def rehearse_migration(checked_script: dict[str, Any], backup: dict[str, Any]) -> dict[str, Any]:
    rt = task_runtime()
    rehearsed = migration.rehearse(
        rt, checked_script, backup["key"], scratch_name(current_context()["dag_run"].run_id)
    )
    record_url = rt.store().url(migration.change_log(rt).record_key(checked_script["change_id"]))
    body = migration.approval_body(checked_script, backup, rehearsed, record_url=record_url)
    # the approval shows the report; XCom carries it once, cut to a readable length
    return {**{k: v for k, v in rehearsed.items() if k != "summary"}, "approval": body}


@checked
def apply_migration(checked_script: dict[str, Any], rehearsed: dict[str, Any]) -> dict[str, Any]:
    return migration.apply(task_runtime(), checked_script, rehearsed)


@checked
def verify_migration(checked_script: dict[str, Any], rehearsed: dict[str, Any]) -> list[dict[str, Any]]:
    return [v.as_dict() for v in migration.verify(task_runtime(), checked_script, rehearsed)]


def _approval_url(task_id: str) -> str | None:
    from stellar_ops.adapters.common.alerting import airflow_url

    ti = current_context()["ti"]
    return f"{airflow_url().rstrip('/')}/dags/{ti.dag_id}/runs/{ti.run_id}/tasks/{task_id}/required_actions?map_index=-1"


@checked
def page_way_back() -> dict[str, Any]:
    """Runs when the apply or the verification failed: pages with the way back, and offers the
    rollback for approval only when production was changed."""
    from airflow.sdk.exceptions import AirflowSkipException

    ti = current_context()["ti"]
    states = task_states(ti, ["apply_migration", "verify_migration"])
    if states.get("apply_migration") not in ("success", "failed"):
        raise AirflowSkipException("the migration never reached production: there is no way back to take")
    failed_step = "apply_migration" if states.get("apply_migration") == "failed" else "verify_migration"
    outcome = migration.way_back(
        task_runtime(),
        ti.xcom_pull(task_ids="check_script"),
        ti.xcom_pull(task_ids="take_pre_change_backup"),
        ti.xcom_pull(task_ids="rehearse_migration"),
        failed_step=failed_step,
        approval_url=_approval_url("approve_rollback"),
    )
    if not outcome["production_changed"]:
        raise AirflowSkipException("paged; production is as it was before the change: no rollback to approve")
    return outcome


@checked
def roll_back(
    checked_script: dict[str, Any], rehearsed: dict[str, Any], backup: dict[str, Any]
) -> dict[str, Any]:
    """The rehearsed rollback script; without one, a ``db_restore`` run of the pre-change backup
    over production, filled in, which asks its own approvals as any restore over a database does."""
    rt = task_runtime()
    if checked_script.get("rollback"):
        return migration.roll_back(rt, checked_script, rehearsed)
    ti = current_context()["ti"]
    conf = migration.restore_conf(rt, backup["key"])
    migration.change_log(rt).update(
        checked_script["change_id"], status="restore of the pre-change backup started"
    )
    rt.say(f"no rollback script: starting db_restore run rollback_of__{ti.run_id} with {conf}")
    raise start_run(
        "db_restore",
        f"rollback_of__{ti.run_id}",
        conf,
        f"Way back of {checked_script['change_id']} (db_migration run {ti.run_id})",
    )


@checked
def record_migration() -> dict[str, Any]:
    """Whatever happened: the change's result and approvers in its record."""
    ti = current_context()["ti"]
    states = task_states(ti, (*migration.STEPS, "roll_back"))
    # the steps that failed themselves, in their order: one skipped for a failure upstream did not
    failed = [t for t in (*migration.STEPS, "roll_back") if states.get(t) == "failed"]
    approvals = {task_id: answer_of(ti, task_id) for task_id in migration.APPROVALS}
    answer = approvals.get("approve_migration") or {}
    if answer.get("chosen") == "Reject":
        failed = []
    return migration.finish(
        task_runtime(),
        change_for("migration"),
        failed_steps=failed,
        approvals=approvals,
        rejected=answer.get("chosen") == "Reject",
    )


# -- config_change -------------------------------------------------------------------------------


def _store() -> Any:
    from stellar_ops.adapters.rotation import secrets_client

    rt = task_runtime()
    return config_change.settings_store(rt, lambda: secrets_client(rt))


def _admin_key() -> str | None:
    """A key the running API accepts, for the http_reload backend: from the rotation's key store."""
    from stellar_ops.adapters.rotation import tools

    return tools(task_runtime()).keystore.admin_key()


def _checked_change() -> dict[str, Any]:
    return dict(current_context()["ti"].xcom_pull(task_ids="check_change"))


@checked
def check_change(params: Mapping[str, Any]) -> dict[str, Any]:
    asked = config_change.requested(params.get("set"), params.get("remove"), params.get("reason"))
    return config_change.check(
        task_runtime(), _store(), change_for("config"), asked, requested_by=_requested_by()
    )


@checked
def write_change(checked_change: dict[str, Any]) -> dict[str, Any]:
    return config_change.write(task_runtime(), _store(), checked_change)


@checked
def restart_services(checked_change: dict[str, Any]) -> dict[str, Any]:
    rt = task_runtime()
    return config_change.restart(
        rt, rt.resources.endpoint("api"), rt.resources.docker, _admin_key, checked_change
    )


@checked
def check_health(checked_change: dict[str, Any]) -> dict[str, Any]:
    return config_change.check_health(task_runtime(), checked_change)


@checked
def revert_change() -> dict[str, Any]:
    """Runs when the restart or the health checks failed, once the change was written."""
    from airflow.sdk.exceptions import AirflowSkipException

    ti = current_context()["ti"]
    if task_states(ti, ["write_change"]).get("write_change") != "success":
        raise AirflowSkipException("the change was never written: nothing to revert")
    rt = task_runtime()
    return config_change.revert(
        rt, _store(), rt.resources.endpoint("api"), rt.resources.docker, _admin_key, _checked_change()
    )


@checked
def record_change() -> dict[str, Any]:
    ti = current_context()["ti"]
    states = task_states(ti, (*config_change.STEPS, "revert_change"))
    failed = [t for t in config_change.STEPS if states.get(t) == "failed"]
    answer = answer_of(ti, "approve_change")
    rejected = bool(answer and answer.get("chosen") == "Reject")
    return config_change.finish(
        task_runtime(),
        change_for("config"),
        failed_steps=[] if rejected else failed,
        reverted=states.get("revert_change") == "success",
        approval=answer,
        rejected=rejected,
    )
