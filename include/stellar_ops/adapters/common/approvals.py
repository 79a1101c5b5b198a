"""The one approval operator of every DAG: asked of the right people, who are told and reminded.

:class:`Approval` is the standard provider's ``ApprovalOperator`` with the rules of
:mod:`stellar_ops.core.approvals` laid on it:

- its respondents (``assigned_users``) come from ``approvals.steps`` when it opens, minus, for a
  four-eyes step, the one who triggered the run and every earlier approver of it; the UI and the
  API refuse anyone else (the rule is applied by :class:`~stellar_ops.adapters.common.auth.StellarAuthManager`);
- when it opens, the route of its severity gets what is asked, who may answer and a link to the
  Required Action; a reminder and an escalation follow while no one answers. The task waits in
  Airflow's ``awaiting_input`` state between them: each wait's timeout is the next milestone, the
  scheduler wakes the task then, it sends the message and waits again. An answer given while it
  is awake is not lost (Airflow resumes a task parked after its answer at once);
- with no answer by the step's timeout it fails, and the run with it, saying so;
- the answer (who, what, when) is kept in its XCom ``answer`` for audit records and reports, and
  told on the same route.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException, TaskAwaitingInput

from stellar_ops.core import approvals
from stellar_ops.core.approvals import ApprovalRule, OpenApproval
from stellar_ops.core.approvers import Approvers
from stellar_ops.core.config import SeverityName
from stellar_ops.core.errors import ConfigError

ANSWER = "answer"
AUTH_MANAGER = "stellar_ops.adapters.common.auth.StellarAuthManager"


def _now() -> datetime:
    return datetime.now(UTC)


def answer_of(ti: Any, task_id: str) -> dict[str, Any] | None:
    """Who answered an approval of this run, what and when; None while unanswered."""
    answer = ti.xcom_pull(task_ids=task_id, key=ANSWER)
    return dict(answer) if answer else None


def _check_auth_manager(rule: ApprovalRule) -> None:
    """Roles and exclusions mean something only to the package's auth manager: with another one
    nobody could answer, and the step would wait for its timeout."""
    from airflow.sdk.configuration import conf

    configured = conf.get("core", "auth_manager", fallback="")
    if configured == AUTH_MANAGER:
        return
    try:
        from airflow.utils.module_loading import import_string

        from stellar_ops.adapters.common.auth import StellarAuthManager

        if issubclass(import_string(configured), StellarAuthManager):
            return
    except ImportError:
        pass
    raise ConfigError(
        f"[core] auth_manager is {configured or 'not set'}: approvals by role ({', '.join(rule.roles) or 'none'}) "
        f"and four-eyes need {AUTH_MANAGER}"
    )


class Approval(ApprovalOperator):  # type: ignore[misc]
    """An approval step. ``ask_only_if`` names a boolean param of the run: when it is off, the
    step is skipped without asking anyone (``db_restore``'s second approval, for ``replace``)."""

    def __init__(self, *, ask_only_if: str | None = None, **kwargs: Any) -> None:
        # the step's rule sets the real timeout when it opens; given here, the DAG's
        # execution_timeout keeps bounding the task's running time instead of becoming the wait's
        kwargs.setdefault("response_timeout", timedelta(hours=approvals.DEFAULT_TIMEOUT_HOURS))
        super().__init__(**kwargs)
        self.ask_only_if = ask_only_if

    # -- opening ---------------------------------------------------------------------------
    def execute(self, context: Any) -> Any:
        from airflow.sdk.execution_time.hitl import upsert_hitl_detail

        from stellar_ops.adapters.common.runtime import load_config

        if self.ask_only_if and not context["params"].get(self.ask_only_if):
            raise AirflowSkipException(f"not asked: the run's {self.ask_only_if} is off")
        config = load_config()
        rule = config.approvals.rule(self.dag_id, self.task_id)
        _check_auth_manager(rule)
        who = self._approvers(rule, context)
        if not who.anyone_left:
            raise ConfigError(f"{self.task_id}: nobody may answer it ({who.describe()}); add approvers")
        self.assigned_users = who.entries()  # type: ignore[assignment]  # HITLUser is this TypedDict
        upsert_hitl_detail(
            ti_id=context["task_instance"].id,
            options=self.options,
            subject=self.subject,
            body=self.body,
            defaults=self.defaults,
            multiple=self.multiple,
            params=self.serialized_params,
            assigned_users=self.assigned_users,
        )
        opened_at = _now()
        schedule = config.approvals.schedule(rule, opened_at)
        self.hitl_summary_extra["timeout_datetime"] = schedule.timeout_at.isoformat()
        state = {
            "opened_at": opened_at.isoformat(),
            "done": [],
            "who": who.describe(),
            "excluded": list(who.excluded),
        }
        self._tell(context, "opened", state, rule, opened_at)
        self.log.info("Waiting for an answer from %s until %s", who.describe(), schedule.timeout_at)
        raise TaskAwaitingInput(
            method_name="execute_complete", kwargs=state, timeout=schedule.wait(opened_at, set())
        )

    def _approvers(self, rule: ApprovalRule, context: Any) -> Approvers:
        who = rule.approvers()
        if not rule.four_eyes:
            return who
        ti = context["ti"]
        earlier = [
            task_id
            for task_id in sorted(self.get_flat_relative_ids(upstream=True))
            if isinstance(self.dag.get_task(task_id), Approval)
        ]
        approvers = [(answer_of(ti, task_id) or {}).get("by") for task_id in earlier]
        return who.excluding([context["dag_run"].triggering_user_name, *approvers])

    # -- waiting ---------------------------------------------------------------------------
    def execute_complete(
        self,
        context: Any,
        event: dict[str, Any],
        opened_at: str | None = None,
        done: list[str] | None = None,
        who: str = "",
        excluded: list[str] | None = None,
    ) -> Any:
        state = {
            "opened_at": opened_at,
            "done": list(done or []),
            "who": who,
            "excluded": list(excluded or []),
        }
        if event.get("error_type") == "timeout" and opened_at:
            return self._wake(context, state)
        if "error" not in event:
            self._record(context, event, state)
        return super().execute_complete(context, event)

    def _wake(self, context: Any, state: dict[str, Any]) -> Any:
        from stellar_ops.adapters.common.runtime import load_config

        config = load_config()
        rule = config.approvals.rule(self.dag_id, self.task_id)
        schedule = config.approvals.schedule(rule, datetime.fromisoformat(state["opened_at"]))
        now = _now()
        due = schedule.due(now, set(state["done"]))
        if "timeout" in due:
            raise AirflowFailException(approvals.timeout_error(self.task_id, schedule.timeout, state["who"]))
        if due:  # a reminder, an escalation, or both at once: the later one says it all
            self._tell(context, due[-1], state, rule, now)
            state["done"] = [*state["done"], *due]
        self.log.info(
            "Still waiting for an answer from %s; %s told", state["who"], ", ".join(state["done"]) or "none"
        )
        raise TaskAwaitingInput(
            method_name="execute_complete", kwargs=state, timeout=schedule.wait(now, set(state["done"]))
        )

    def _tell(
        self, context: Any, milestone: str, state: dict[str, Any], rule: ApprovalRule, now: datetime
    ) -> None:
        from stellar_ops.adapters.common.alerting import airflow_url, config_or_defaults

        config = config_or_defaults()
        opened_at = datetime.fromisoformat(state["opened_at"])
        ti = context["task_instance"]
        open_approval = OpenApproval(
            dag_id=self.dag_id,
            task_id=self.task_id,
            run_id=ti.run_id,
            subject=str(self.subject),
            who=state["who"],
            url=self.generate_link_to_ui(task_instance=ti, base_url=airflow_url()),
            timeout_at=config.approvals.schedule(rule, opened_at).timeout_at,
            severity=rule.severity,
        )
        if milestone == "opened":
            self._send(approvals.opened_message(open_approval, now), rule.severity)
        elif milestone == "remind":
            self._send(approvals.reminder_message(open_approval, now, opened_at), rule.severity)
        else:
            self._send(
                approvals.escalation_message(open_approval, now), approvals.NEXT_SEVERITY[rule.severity]
            )

    def _send(self, payload: dict[str, Any], severity: SeverityName) -> None:
        """On the route of ``severity``; the approval stands even when a message cannot go out."""
        from stellar_ops.adapters.common.alerting import config_or_defaults
        from stellar_ops.adapters.common.connections import AirflowResources

        config = config_or_defaults()
        try:
            AirflowResources(config).send_message(payload, config.alerts.routes[severity])
        except Exception as exc:
            self.log.warning("could not tell the approvers: %s", exc)

    # -- answered ----------------------------------------------------------------------------
    def _record(self, context: Any, event: dict[str, Any], state: dict[str, Any]) -> None:
        user = event.get("responded_by_user") or {}
        by = str(user.get("name") or user.get("id") or "timeout default")
        at: Any = event.get("responded_at")
        chosen = (event.get("chosen_options") or [None])[0]
        ti = context["ti"]
        # a rejection skips what follows, so the answer is pushed first: audit records read it
        ti.xcom_push(
            key=ANSWER,
            value={"chosen": chosen, "by": by, "at": at.isoformat() if hasattr(at, "isoformat") else at},
        )
        self.log.info("%s by %s", chosen, by)
        refusal = approvals.four_eyes_error(self.task_id, by, tuple(state["excluded"]))
        if refusal:
            raise AirflowFailException(refusal)
        self._tell_answer(ti, str(chosen), by)

    def _tell_answer(self, ti: Any, chosen: str, by: str) -> None:
        from stellar_ops.adapters.common.alerting import config_or_defaults

        rule = config_or_defaults().approvals.steps.get(f"{self.dag_id}.{self.task_id}")
        payload = approvals.answered_message(self.dag_id, self.task_id, ti.run_id, chosen, by)
        self._send(payload, rule.severity if rule else "P3")
