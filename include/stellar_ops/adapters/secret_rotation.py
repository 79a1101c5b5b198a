"""Task bodies of ``secret_rotation``: each runs one step of :mod:`stellar_ops.rotation.secret_flow`.

The backends' servers are reached through Airflow connections (``rotation.postgres.admin_conn_id``,
``rotation.redis.admin_conn_id``, ``rotation.grafana.conn_id``, ``rotation.s3.iam_conn_id``); this
package's own connections are switched through Airflow's REST API as ``rotation.airflow_api_conn_id``
(a task cannot write a connection through the Task SDK) and read back through the Task SDK.
Every credential read is registered with the task log's secret masker.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stellar_ops.adapters import rotation as key_rotation
from stellar_ops.adapters.common.approvals import answer_of
from stellar_ops.adapters.common.connections import connection, http_endpoint, pg_target, redis_target
from stellar_ops.adapters.common.runtime import checked, current_context, run_slot, task_runtime
from stellar_ops.adapters.rotation import APPROVALS, audit_outcome, rejected_approval
from stellar_ops.core.errors import ConfigError, MissingConnectionError
from stellar_ops.rotation import secret_flow as flow
from stellar_ops.rotation.airflow_connections import AirflowConnections, environment_defined
from stellar_ops.rotation.cli_env import CliEnvironment
from stellar_ops.rotation.config import SECRETS
from stellar_ops.rotation.credentials import Credential
from stellar_ops.rotation.grafana import GrafanaAdmin
from stellar_ops.rotation.s3_keys import IamAccessKeys
from stellar_ops.rotation.secret_backends import (
    GrafanaPassword,
    PostgresTwins,
    RedisPasswords,
    S3AccessKeys,
    SecretBackend,
)
from stellar_ops.rotation.secret_flow import SecretPlan, SecretTools
from stellar_ops.rotation.secret_store import build_secret_store, secret_envs
from stellar_ops.runtime import Runtime

__all__ = ["SECRETS"]  # the DAG's param choices

PLAN_TASK = "check_rotation_due"
STEPS = (
    "check_rotation_due",
    "generate_secret",
    "add_new_secret",
    "switch_consumers",
    "test_new_secret",
    "wait_transition_window",
    "remove_old_secret",
    "verify_rotation",
    "finish_rotation",
)


class TaskConnections:
    """This package's connections: switched through Airflow's REST API, read through the Task SDK."""

    def __init__(self, api_conn_id: str) -> None:
        self.api_conn_id = api_conn_id
        self._api: AirflowConnections | None = None

    def _client(self) -> AirflowConnections:
        if self._api is None:
            endpoint = http_endpoint(
                self.api_conn_id, "Airflow's REST API (the rotation switches connections)"
            )
            conn = connection(self.api_conn_id, "Airflow's REST API")
            if not conn.login or not conn.password:
                raise ConfigError(
                    f"connection {self.api_conn_id!r} needs the login and password of an Airflow user who may "
                    "edit connections"
                )
            self._api = AirflowConnections(endpoint.base_url, conn.login, conn.password)
        return self._api

    def defined_in_environment(self, conn_ids: list[str]) -> list[str]:
        return environment_defined(conn_ids, os.environ)

    def switch(self, conn_id: str, credential: Credential) -> bool:
        if self.holds(conn_id, credential):
            return False
        return self._client().switch(conn_id, credential.identity, credential.secret)

    def holds(self, conn_id: str, credential: Credential) -> bool:
        conn = connection(conn_id, "a connection of the rotated secret")
        return bool(conn.login == credential.identity and conn.password == credential.secret)


def _iam(conn_id: str) -> IamAccessKeys:
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
    from airflow.sdk.log import mask_secret

    conn = connection(conn_id, "IAM (the S3 access keys)")
    if (conn.extra_dejson or {}).get("aws_secret_access_key"):
        mask_secret(conn.extra_dejson["aws_secret_access_key"])
    hook = AwsBaseHook(aws_conn_id=conn_id, client_type="iam")
    client = hook.get_conn()
    endpoint = (conn.extra_dejson or {}).get("endpoint_url")
    return IamAccessKeys(client, task_runtime().config.rotation.s3.user, sts_endpoint_url=endpoint)


def backend(rt: Runtime[Any], secret: str) -> SecretBackend:
    settings = rt.config.rotation
    try:
        if secret == "POSTGRES_PASSWORD":
            admin = pg_target(settings.postgres.admin_conn_id)
            # a login is tried where the application logs in: its first connection's database
            app = pg_target(settings.postgres.connections[0]) if settings.postgres.connections else admin
            return PostgresTwins(admin, app, settings.postgres.app_role)
        if secret == "REDIS_PASSWORD":
            return RedisPasswords(
                redis_target(settings.redis.admin_conn_id, "Redis's ACL admin"), settings.redis.user
            )
        if secret == "GRAFANA_ADMIN_PASSWORD":
            endpoint = http_endpoint(settings.grafana.conn_id, "Grafana")
            user = connection(settings.grafana.conn_id, "Grafana").login or "admin"
            return GrafanaPassword(GrafanaAdmin(endpoint.base_url, user))
        return S3AccessKeys(_iam(settings.s3.iam_conn_id))
    except MissingConnectionError as exc:
        raise ConfigError(f"{secret} cannot rotate here: {exc}") from None


def _masked(store: Any) -> Any:
    """Every credential the key store gives is registered with the secret masker."""
    from airflow.sdk.log import mask_secret

    class Masked:
        name = store.name

        def __getattr__(self, attribute: str) -> Any:
            target = getattr(store, attribute)
            if not callable(target):
                return target

            def call(*args: Any, **kwargs: Any) -> Any:
                found = target(*args, **kwargs)
                for item in found if isinstance(found, tuple) else (found,):
                    if isinstance(item, Credential):
                        mask_secret(item.secret)
                return found

            return call

    return Masked()


def tools(rt: Runtime[Any], secret: str) -> SecretTools:
    settings = rt.config.rotation
    store = _masked(build_secret_store(settings, secrets_client=lambda: key_rotation.secrets_client(rt)))
    restarter = api = None
    admin_key: Any = lambda: None  # noqa: E731
    api_key: Any = lambda: None  # noqa: E731
    if secret in flow.API_SECRETS:
        try:
            keys = key_rotation.tools(rt)
        except ConfigError as exc:
            rt.warn(f"the API is not restarted after the switch: {exc}")
        else:
            restarter, api, admin_key = keys.restarter, keys.api, keys.keystore.admin_key
            api_key = lambda: keys.api.secret  # noqa: E731
    return SecretTools(
        store=store,
        backend=backend(rt, secret),
        connections=TaskConnections(settings.airflow_api_conn_id),
        conn_ids=flow.conn_ids_of(settings, secret),
        restarter=restarter,
        api=api,
        admin_key=admin_key,
        api_key=api_key,
        cli_env=CliEnvironment(Path(settings.cli_env_file), secret_envs(settings))
        if settings.cli_env_file
        else None,
    )


def _why_not(rt: Runtime[Any], secret: str) -> str | None:
    """Why ``secret`` cannot rotate in this deployment: a connection it needs, or its set-up, missing."""
    try:
        return backend(rt, secret).problem()
    except ConfigError as exc:
        return str(exc).removeprefix(f"{secret} cannot rotate here: ")


def _requester(context: Any) -> str:
    return str(getattr(context["dag_run"], "triggering_user_name", None) or "scheduler")


@checked
def check_rotation_due(params: dict[str, Any]) -> dict[str, Any]:
    context = current_context()
    rt = task_runtime()
    outcome = flow.plan(
        rt,
        secret=str(params.get("secret") or flow.AUTO),
        reason=str(params.get("reason") or "scheduled"),
        transition_hours=params.get("transition_hours"),
        slot=run_slot(context),
        run_id=context["ti"].run_id,
        by=_requester(context),
        now=datetime.now(UTC),
        why_not=lambda secret: _why_not(rt, secret),
    )
    if isinstance(outcome, flow.Skip):
        from airflow.sdk.exceptions import AirflowSkipException

        raise AirflowSkipException(outcome.reason)
    flow.refuse_unswitchable(tools(rt, outcome.secret), outcome)
    return outcome.as_dict()


def _step(name: str, plan: dict[str, Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
    rt = task_runtime()
    parsed = SecretPlan.from_dict(plan)
    action = getattr(flow, name)
    return action(rt, tools(rt, parsed.secret), parsed, *args, **kwargs)  # type: ignore[no-any-return]


@checked
def generate_secret(plan: dict[str, Any]) -> dict[str, Any]:
    return _step("generate", plan, datetime.now(UTC))


@checked
def add_new_secret(plan: dict[str, Any]) -> dict[str, Any]:
    return _step("add", plan, datetime.now(UTC))


@checked
def switch_consumers(plan: dict[str, Any]) -> dict[str, Any]:
    return _step("switch", plan, datetime.now(UTC))


@checked
def test_new_secret(plan: dict[str, Any]) -> dict[str, Any]:
    return _step("test", plan)


@checked
def remove_old_secret(plan: dict[str, Any]) -> dict[str, Any]:
    drain = task_runtime().config.rotation.postgres.drain_seconds
    return _step("remove", plan, datetime.now(UTC), drain_seconds=drain)


@checked
def verify_rotation(plan: dict[str, Any]) -> dict[str, Any]:
    return _step("verify", plan)


@checked
def finish_rotation(plan: dict[str, Any]) -> dict[str, Any]:
    ti = current_context()["ti"]
    removal = answer_of(ti, "approve_removal") or {}
    return _step("finish", plan, datetime.now(UTC), str(removal.get("by") or flow.DAG_ID))


@checked
def discard_rejected_rotation() -> dict[str, Any]:
    """Runs whatever happened: only a rejected approval discards; a failure keeps the pending
    secret, so clearing the failed task resumes the rotation."""
    ti = current_context()["ti"]
    plan = ti.xcom_pull(task_ids=PLAN_TASK)
    rejected = rejected_approval(ti)
    if not plan or not rejected:
        return {"discarded": None}
    return _step("discard", plan, f"{rejected} was rejected", datetime.now(UTC))


@checked
def record_audit() -> dict[str, Any]:
    ti = current_context()["ti"]
    plan = ti.xcom_pull(task_ids=PLAN_TASK)
    if not plan:
        return {"outcome": "nothing rotated"}
    outcome, steps = audit_outcome(ti, STEPS, test_task="test_new_secret", rejected_means="stopped")
    return flow.record_audit(
        task_runtime(),
        SecretPlan.from_dict(plan),
        outcome=outcome,
        approvals={t: answer_of(ti, t) for t in APPROVALS},
        steps=steps,
        now=datetime.now(UTC),
    )


def transition_window(task_id: str) -> Any:
    """A deferred sensor until the window after the switch ends: no worker slot while it waits."""
    return key_rotation.transition_window(
        task_id, "{{ ti.xcom_pull(task_ids='switch_consumers')['remove_from'] }}"
    )
