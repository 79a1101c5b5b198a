"""Task bodies of ``db_restore``: each runs one step of :mod:`stellar_ops.dr.recovery`, or, when
the run asks for a ``target_time``, of :mod:`stellar_ops.dr.point_in_time` (the same tasks, so the
approvals, the checks and the report are where the operator expects them).

What the operator asked for is the run's trigger params, read as one
:class:`~stellar_ops.dr.request.RestoreRequest` (checked there) by every task that needs it. The
target comes from the postgres connection it names; its password is masked and travels only in the
child processes' environment.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stellar_ops.adapters.common.approvals import answer_of
from stellar_ops.adapters.common.connections import pg_target
from stellar_ops.adapters.common.runtime import (
    checked,
    current_context,
    run_slot,
    task_logger,
    task_runtime,
    task_states,
)
from stellar_ops.dr import flow, point_in_time, recovery
from stellar_ops.dr.flow import Resolved
from stellar_ops.dr.recovery import RestorePlan
from stellar_ops.dr.request import RestoreRequest
from stellar_ops.dr.verdicts import Verdict

log = task_logger()


# each verify task's verdict in a point-in-time restore (reached by restore_backup, which compares
# the copy with the recovered server it came from)
PITR_CHECKS = dict(zip(recovery.CHECK_STEPS, point_in_time.CHECKS, strict=True))


@checked
def resolve_backup(params: Mapping[str, Any]) -> dict[str, Any]:
    request = RestoreRequest.from_params(params)
    if request.point_in_time:
        return point_in_time.resolve(task_runtime(), request)
    return flow.resolve_backup(
        task_runtime(), request.backup, slot=run_slot(current_context()), month_scoped=False
    ).as_dict()


@checked
def check_backup(resolved: dict[str, Any]) -> dict[str, Any]:
    if point_in_time.is_point_in_time(resolved):
        return point_in_time.check_archive(task_runtime(), resolved)
    return flow.check_backup(task_runtime(), Resolved.from_dict(resolved))


@checked
def check_target(resolved: dict[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    request = RestoreRequest.from_params(params)
    target = pg_target(request.target)
    if point_in_time.is_point_in_time(resolved):
        moment = point_in_time.check(task_runtime(), request, target)
        log.info("%s", moment.summary())
        return {**moment.as_dict(), "summary": moment.summary()}
    plan = recovery.check_target(task_runtime(), Resolved.from_dict(resolved), target, request)
    log.info("%s", plan.summary())
    return {**plan.as_dict(), "summary": plan.summary()}


def _plan(data: dict[str, Any]) -> RestorePlan:
    return RestorePlan.from_dict({k: v for k, v in data.items() if k != "summary"})


def _moment_plan(data: dict[str, Any]) -> point_in_time.PointInTimePlan:
    return point_in_time.PointInTimePlan.from_dict(data)


@checked
def restore_backup(
    resolved: dict[str, Any], plan: dict[str, Any], params: Mapping[str, Any]
) -> dict[str, Any]:
    target = pg_target(RestoreRequest.from_params(params).target)
    if point_in_time.is_point_in_time(resolved):
        return point_in_time.restore_to_moment(task_runtime(), _moment_plan(plan), target)
    rt, backup = task_runtime(), Resolved.from_dict(resolved)
    restored = recovery.restore_backup(rt, backup, target, _plan(plan))
    # the observation (every table's row count, the schema) waits in the bucket; XCom has where
    return flow.stage_observation(rt, backup, restored, current_context()["dag_run"].run_id)


@checked
def verify(check: str, resolved: dict[str, Any], restored: dict[str, Any]) -> dict[str, Any]:
    if point_in_time.is_point_in_time(resolved):
        found = next(c for c in restored["checks"] if c["check"] == PITR_CHECKS[check])
        judged = Verdict(**found)
        judged.raise_if_failed()
        return judged.as_dict()
    rt = task_runtime()
    backup = Resolved.from_dict(resolved)
    restored = flow.load_observation(rt, backup, restored)
    verdict = {
        "verify_row_counts": lambda: flow.verify_row_counts(rt, backup, restored),
        "verify_schema": lambda: flow.verify_schema(rt, backup, restored),
        "verify_sanity_queries": lambda: flow.verify_sanity_queries(rt, restored),
    }[check]()
    verdict.raise_if_failed()
    return verdict.as_dict()


def _rejected(ti: Any) -> str:
    for task_id in recovery.APPROVALS:
        answer = answer_of(ti, task_id)
        if answer and answer["chosen"] == "Reject":
            return f"{task_id} by {answer['by']}"
    return recovery.APPROVALS[0]


@checked
def publish_report() -> dict[str, Any]:
    """Runs whatever happened (a rejection too): the report beside the backup, metrics, the outcome."""
    ti = current_context()["ti"]
    states = task_states(ti, recovery.STEPS)
    resolved = ti.xcom_pull(task_ids="resolve_backup")
    plan = ti.xcom_pull(task_ids="check_target")
    failed = sorted(t for t, s in states.items() if s in ("failed", "upstream_failed"))
    if states.get("restore_backup") == "skipped" and not failed:
        failed = [f"{_rejected(ti)} (rejected)"]
    approvals = {task_id: answer_of(ti, task_id) for task_id in recovery.APPROVALS}
    asked = (current_context().get("params") or {}).get("target_time")
    if point_in_time.is_point_in_time(resolved) or (resolved is None and asked):
        moment = point_in_time.publish_report(
            task_runtime(),
            plan=_moment_plan(plan) if plan else None,
            restored=ti.xcom_pull(task_ids="restore_backup") or {},
            failed_steps=failed,
            run_id=ti.run_id,
            approvals=approvals,
        )
        return {"success": moment["success"], "rto_seconds": moment["rto_seconds"]}
    document = recovery.publish_report(
        task_runtime(),
        resolved=Resolved.from_dict(resolved) if resolved else None,
        plan=_plan(plan) if plan else None,
        restored=ti.xcom_pull(task_ids="restore_backup") or {},
        checks=[v for v in (ti.xcom_pull(task_ids=t) for t in recovery.CHECK_STEPS) if v],
        failed_steps=failed,
        run_id=ti.run_id,
        approvals=approvals,
    )
    if resolved:
        flow.discard_observation(
            task_runtime(), Resolved.from_dict(resolved), ti.xcom_pull(task_ids="restore_backup") or {}
        )
    return {"success": document["success"], "rto_seconds": document["rto_seconds"]}
