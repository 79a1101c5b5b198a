"""Task bodies of ``api_key_rotation`` and ``secrets_rotation_audit``: each runs one step of
:mod:`stellar_ops.rotation.flow`.

Keys never reach XCom or the log: steps return fingerprints. Secrets Manager is reached through
the amazon provider's hook, the Docker daemon through the docker provider's.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from stellar_ops.adapters.common.approvals import answer_of
from stellar_ops.adapters.common.runtime import (
    checked,
    current_context,
    run_slot,
    task_runtime,
    task_states,
)
from stellar_ops.rotation import flow
from stellar_ops.rotation.backends import Tools, build_tools
from stellar_ops.rotation.flow import Plan
from stellar_ops.rotation.keystore import KeyState, KeyStore
from stellar_ops.runtime import Runtime

APPROVALS = ("approve_rollout", "approve_removal")
STEPS = (
    "check_rotation_due",
    "generate_keys",
    "notify_consumers",
    "add_new_keys",
    "restart_api",
    "test_new_keys",
    "wait_transition_window",
    "remove_old_keys",
    "restart_api_after_removal",
    "verify_rotation",
    "finish_rotation",
)


def secrets_client(rt: Runtime[flow.RotationSections]) -> Any:
    from airflow.providers.amazon.aws.hooks.secrets_manager import SecretsManagerHook

    return SecretsManagerHook(aws_conn_id=rt.config.rotation.aws_conn_id).get_conn()


class MaskedKeyStore:
    """A key store whose every key read is registered with the task log's secret masker, so a key
    that a step ever printed by mistake would show as ``***``."""

    def __init__(self, store: KeyStore) -> None:
        self.store = store
        self.name = store.name

    def state(self, key_set: str) -> KeyState:
        from airflow.sdk.log import mask_secret

        state = self.store.state(key_set)
        for key in (*state.served, *(state.pending or ()), *(state.outgoing or ()), *(state.previous or ())):
            mask_secret(key)
        return state

    def admin_key(self) -> str | None:
        from airflow.sdk.log import mask_secret

        key = self.store.admin_key()
        if key:
            mask_secret(key)
        return key

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def tools(rt: Runtime[flow.RotationSections]) -> Tools:
    built = build_tools(
        rt.config.rotation,
        rt.resources.endpoint("api"),
        secrets_client=lambda: secrets_client(rt),
        docker_client=rt.resources.docker,
    )
    built.keystore = MaskedKeyStore(built.keystore)  # type: ignore[assignment]
    return built


def _fail(message: str) -> Exception:
    from airflow.sdk.exceptions import AirflowFailException

    return AirflowFailException(message)


def _runs_rotating(ti: Any) -> list[str]:
    """The other runs of this DAG that passed their check and are still going: rotating keys."""
    checks = ti.get_task_states(dag_id=ti.dag_id, task_ids=["check_rotation_due"])
    return sorted(
        run_id
        for run_id, states in checks.items()
        if run_id != ti.run_id
        and str(getattr(states.get("check_rotation_due"), "value", states.get("check_rotation_due")))
        == "success"
        and str(ti.get_dagrun_state(dag_id=ti.dag_id, run_id=run_id)) in ("running", "DagRunState.RUNNING")
    )


def _first_look(ti: Any, context: Any) -> bool:
    """Whether this is the run's first look: not a reschedule, and not a retry of a try that looked
    (a retry starts with no reschedules of its own). A cleared task starts over and looks first."""
    first_try = ti.try_number == ti.max_tries - (ti.task.retries or 0) + 1
    return first_try and ti.get_first_reschedule_date(context) is None


def _wait_for(rt: Runtime[flow.RotationSections], context: Any, plan: Plan, others: list[str]) -> Exception:
    """Log (and, on the run's first look, tell the ops channel) why this run waits; look again later."""
    from datetime import timedelta

    from airflow.sdk.exceptions import AirflowRescheduleException

    from stellar_ops.core.alerts import info_message

    ti = context["ti"]
    reason = flow.waiting_message(plan, others, dag_id=ti.dag_id, run_id=ti.run_id)
    rt.warn(reason)
    if _first_look(ti, context):
        rt.notify(info_message(reason))
    seconds = rt.config.rotation.wait_poll_seconds
    rt.say(f"looking again in {seconds:g} seconds")
    return AirflowRescheduleException(datetime.now(UTC) + timedelta(seconds=seconds))


@checked
def check_rotation_due(params: dict[str, Any]) -> dict[str, Any]:
    context = current_context()
    outcome = flow.plan(
        task_runtime(),
        key_set=str(params.get("key_set")),
        count=int(params.get("count") or 0),
        transition_days=params.get("transition_days"),
        reason=str(params.get("reason")),
        dry_run=bool(params.get("dry_run")),
        slot=run_slot(context),
        run_id=context["ti"].run_id,
    )
    if isinstance(outcome, flow.Skip):
        from airflow.sdk.exceptions import AirflowSkipException

        raise AirflowSkipException(outcome.reason)
    others = _runs_rotating(context["ti"])
    if others:
        raise _wait_for(task_runtime(), context, outcome, others)
    return outcome.as_dict()


def _step(name: str, plan: dict[str, Any], *args: Any) -> dict[str, Any]:
    rt = task_runtime()
    action = getattr(flow, name)
    return action(rt, tools(rt), Plan.from_dict(plan), *args)  # type: ignore[no-any-return]


@checked
def generate_keys(plan: dict[str, Any]) -> dict[str, Any]:
    return _step("generate", plan)


@checked
def notify_consumers(plan: dict[str, Any], generated: dict[str, Any]) -> dict[str, Any]:
    return flow.notify(task_runtime(), Plan.from_dict(plan), generated, datetime.now(UTC))


@checked
def add_new_keys(plan: dict[str, Any]) -> dict[str, Any]:
    return _step("add", plan)


@checked
def restart_api(plan: dict[str, Any], phase: str) -> dict[str, Any]:
    return _step("restart", plan, phase)


@checked
def test_new_keys(plan: dict[str, Any]) -> dict[str, Any]:
    try:
        return _step("test", plan)
    except flow.RolledBackError as exc:
        raise _fail(str(exc)) from None  # rolled back: a retry would only test the old set again


@checked
def remove_old_keys(plan: dict[str, Any]) -> dict[str, Any]:
    return _step("remove", plan)


@checked
def verify_rotation(plan: dict[str, Any]) -> dict[str, Any]:
    return _step("verify", plan)


def approval(ti: Any, task_id: str) -> dict[str, Any] | None:
    """Who answered an approval, what and when."""
    return answer_of(ti, task_id)


@checked
def finish_rotation(plan: dict[str, Any]) -> dict[str, Any]:
    ti = current_context()["ti"]
    removal = approval(ti, "approve_removal") or {}
    return _step("finish", plan, datetime.now(UTC), str(removal.get("by") or "api_key_rotation"))


def rejected_approval(ti: Any) -> str | None:
    """The approval of this run that was rejected, if any (both rotation DAGs name theirs alike)."""
    for task_id in APPROVALS:
        answer = approval(ti, task_id)
        if answer and answer["chosen"] == "Reject":
            return task_id
    return None


def audit_outcome(
    ti: Any, steps: tuple[str, ...], *, test_task: str, rejected_means: str
) -> tuple[str, dict[str, Any]]:
    """What a rotation run came to, and what each step that succeeded returned, for its audit record."""
    states = task_states(ti, steps)
    rejected = rejected_approval(ti)
    failed = sorted(t for t, s in states.items() if s in ("failed", "upstream_failed"))
    if states.get("finish_rotation") == "success":
        outcome = "rotated"
    elif rejected:
        outcome = f"{rejected_means}: {rejected} rejected"
    elif states.get(test_task) == "failed":
        outcome = f"rolled back after {test_task} failed"
    else:
        outcome = f"failed at {', '.join(failed) or 'an unknown step'}"
    returned = {t: ti.xcom_pull(task_ids=t) for t in steps[1:] if states.get(t) == "success"}
    return outcome, {t: v for t, v in returned.items() if v is not None}


@checked
def discard_rejected_rotation() -> dict[str, Any]:
    """Runs whatever happened: only a rejected approval discards the pending keys. A failure keeps
    them, so clearing the failed task resumes the rotation."""
    ti = current_context()["ti"]
    plan = ti.xcom_pull(task_ids="check_rotation_due")
    rejected = rejected_approval(ti)
    if not plan or not rejected:
        return {"discarded": []}
    return _step("discard", plan, f"{rejected} was rejected")


@checked
def record_audit() -> dict[str, Any]:
    ti = current_context()["ti"]
    plan = ti.xcom_pull(task_ids="check_rotation_due")
    if not plan:
        return {"outcome": "nothing rotated"}
    outcome, steps = audit_outcome(ti, STEPS, test_task="test_new_keys", rejected_means="cancelled")
    return flow.record_audit(
        task_runtime(),
        Plan.from_dict(plan),
        outcome=outcome,
        approvals={t: approval(ti, t) for t in APPROVALS},
        steps=steps,
        now=datetime.now(UTC),
    )


def transition_window(
    task_id: str, target_time: str = "{{ ti.xcom_pull(task_ids='restart_api')['old_keys_stop'] }}"
) -> Any:
    """A deferred sensor until the window ends (by default the old keys' announced stop): no
    worker slot while it waits."""
    from datetime import timedelta

    from airflow.providers.standard.sensors.date_time import DateTimeSensorAsync

    return DateTimeSensorAsync(
        task_id=task_id,
        target_time=target_time,
        execution_timeout=timedelta(days=30),
    )


OVERDUE_SHOWN = 15  # overdue secrets in the audit's XCom; the alert and the log name them all


@checked
def audit_rotation_ledger() -> dict[str, Any]:
    """How many secrets are overdue and the first few of them; the ledger is at ``ledger_key``."""
    rt = task_runtime()
    now = datetime.now(UTC)
    found = flow.audit_secrets(rt, now)
    return {
        "ledger_key": rt.config.rotation.ledger_key,
        "overdue_count": len(found),
        "overdue": [item.as_dict() for item in found[:OVERDUE_SHOWN]],
    }
