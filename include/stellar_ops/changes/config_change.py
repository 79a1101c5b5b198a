"""The steps of ``config_change``, defined once: the DAG runs one per task, ``stellar-ops
config-change`` runs them in order with the approval asked on the terminal.

1. :func:`check`: what is asked (variables to set or remove, the reason) against what the store
   holds now, as lines an approver reads (:func:`~stellar_ops.changes.settings.describe`);
2. an approval by the on-call lead (not the one who asked);
3. :func:`write`: the change through the store (the API's ``.env`` or Secrets Manager), the
   version before kept;
4. :func:`restart`: the services restarted one after another, each healthy before the next;
5. :func:`check_health`: the health checks ``changes.health_checks`` must pass;
6. :func:`revert` (when 4 or 5 failed): the version before written back, the services restarted
   again and checked; the run stays red, saying the change was reverted.

A config change carries no secret: a trigger's params are kept and shown by Airflow, and the
command line's are in argv, so names that look like secrets are refused (secrets rotate through
their own procedures).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from stellar_ops.changes.changelog import ChangeLog
from stellar_ops.changes.config import ChangesConfig
from stellar_ops.changes.restarts import ServiceRestart, build_restarters, health_gate, rolling_restart
from stellar_ops.changes.settings import SettingsChange, SettingsError, SettingsStore, describe, open_store
from stellar_ops.core.errors import ChangeFailed
from stellar_ops.health import flow as health_flow
from stellar_ops.health.config import HealthConfig
from stellar_ops.postgres.pitr import PitrConfig
from stellar_ops.rotation.config import RotationConfig
from stellar_ops.runtime import Runtime

DAG_ID = "config_change"
STEPS = ("check_change", "write_change", "restart_services", "check_health")
APPROVALS = ("approve_change",)
SECRET_LOOKING = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|CREDENTIAL|PRIVATE|(^|_)KEYS?($|_)")


class ConfigChangeError(ChangeFailed):
    """A config change is refused, or failed and was reverted."""


class ConfigChangeSections(health_flow.HealthSections, Protocol):
    @property
    def health(self) -> HealthConfig: ...
    @property
    def pitr(self) -> PitrConfig: ...
    @property
    def rotation(self) -> RotationConfig: ...
    @property
    def changes(self) -> ChangesConfig: ...


def change_log(rt: Runtime[ConfigChangeSections]) -> ChangeLog:
    return ChangeLog(rt.store(), rt.config.changes.log_prefix)


def settings_store(rt: Runtime[ConfigChangeSections], secrets_client: Callable[[], Any]) -> SettingsStore:
    return open_store(rt.config.changes, rt.config.rotation, secrets_client=secrets_client)


def requested(set_: Mapping[str, Any] | None, remove: list[str] | None, reason: str | None) -> SettingsChange:
    """The change asked for, refused with the reason when it carries a secret or says nothing."""
    if set_ is not None and not isinstance(set_, Mapping):
        raise ConfigChangeError(f"set must be an object of NAME: value, got {type(set_).__name__}")
    values = {str(k): "" if v is None else str(v) for k, v in (set_ or {}).items()}
    removed = tuple(str(n) for n in (remove or ()))
    secret = sorted(n for n in (*values, *removed) if SECRET_LOOKING.search(n.upper()))
    if secret:
        raise ConfigChangeError(
            f"{', '.join(secret)} look{'s' if len(secret) == 1 else ''} like a secret: a config change's values are "
            "kept in the run's params and shown in the UI; rotate secrets through their own procedure"
        )
    if not (reason or "").strip():
        raise ConfigChangeError("no reason given: say why (a ticket, an incident); it goes to the change log")
    try:
        return SettingsChange(set=values, remove=removed, reason=str(reason).strip())
    except SettingsError as exc:
        raise ConfigChangeError(str(exc)) from None


def check(
    rt: Runtime[ConfigChangeSections],
    store: SettingsStore,
    change: str,
    asked: SettingsChange,
    *,
    requested_by: str,
) -> dict[str, Any]:
    before = store.read()
    lines = describe(asked, before)
    version = store.current_version()
    what = "; ".join(lines)
    change_log(rt).update(
        change,
        status="checked",
        requested_by=requested_by,
        reason=asked.reason,
        what=f"config {what}",
        store=store.name,
        version_before=version,
        way_back=f"{store.name} version {version}",
        services=list(rt.config.changes.services),
    )
    for line in lines:
        rt.say(line)
    return {
        "change_id": change,
        "lines": lines,
        "version_before": version,
        "set": dict(asked.set),
        "remove": list(asked.remove),
        "reason": asked.reason,
    }


def asked_of(checked: Mapping[str, Any]) -> SettingsChange:
    return SettingsChange(
        set=dict(checked["set"]), remove=tuple(checked["remove"]), reason=str(checked["reason"])
    )


def write(
    rt: Runtime[ConfigChangeSections], store: SettingsStore, checked: Mapping[str, Any]
) -> dict[str, Any]:
    """Write the change, unless this change already wrote it (a cleared task)."""
    change = checked["change_id"]
    record = change_log(rt).read(change) or {}
    if record.get("version_after") and store.current_version() == record["version_after"]:
        rt.say(f"{change} is already written ({store.name} version {record['version_after']})")
        return {"version_after": record["version_after"]}
    if store.current_version() != checked["version_before"]:
        raise ConfigChangeError(
            f"{store.name} changed since {change} was checked (version {store.current_version()}, checked "
            f"{checked['version_before']}): nothing was written; trigger the change again"
        )
    version = store.write(asked_of(checked))
    change_log(rt).update(change, status="written", version_after=version)
    rt.say(f"{change} written: {store.name} version {version} (before: {checked['version_before']})")
    return {"version_after": version}


def _roll(
    rt: Runtime[ConfigChangeSections],
    api: Any,
    docker_client: Callable[[], Any | None],
    admin_key: Callable[[], str | None],
) -> list[ServiceRestart]:
    """Every service of ``changes.services``, one after another, each healthy before the next."""
    settings = rt.config.changes
    return rolling_restart(
        list(settings.services),
        build_restarters(settings, rt.config.rotation, api, docker_client),
        health_gate(settings, rt.config.rotation, api, rt.config.health.probe_timeout_seconds),
        rt.say,
        admin_key=admin_key,
        wait_seconds=settings.healthy_timeout_seconds,
    )


def restart(
    rt: Runtime[ConfigChangeSections],
    api: Any,
    docker_client: Callable[[], Any | None],
    admin_key: Callable[[], str | None],
    checked: Mapping[str, Any],
) -> dict[str, Any]:
    done = _roll(rt, api, docker_client, admin_key)
    change_log(rt).update(checked["change_id"], restarts=[r.as_dict() for r in done])
    failed = [r for r in done if not r.ok]
    if failed:
        rest = [s for s in rt.config.changes.services if s not in {r.service for r in done}]
        raise ConfigChangeError(
            f"{checked['change_id']}: {failed[0].service} {failed[0].error}"
            + (f"; {', '.join(rest)} not restarted" if rest else "")
        )
    return {"restarted": [r.service for r in done]}


def check_health(rt: Runtime[ConfigChangeSections], checked: Mapping[str, Any]) -> dict[str, Any]:
    settings = rt.config.changes
    time.sleep(settings.health_settle_seconds)
    results = health_flow.check_all(rt, list(settings.health_checks), record=False)
    rows = [{"check": r.name, "status": r.status, "detail": r.detail} for r in results]
    bad = [r for r in results if r.status in ("critical", "unknown")]
    change_log(rt).update(checked["change_id"], health=rows, status="healthy" if not bad else "unhealthy")
    if bad:
        raise ConfigChangeError(
            f"{checked['change_id']}: health checks fail after the change: "
            + "; ".join(f"{r.name}: {r.detail}" for r in bad)
        )
    return {"checks": rows}


def revert(
    rt: Runtime[ConfigChangeSections],
    store: SettingsStore,
    api: Any,
    docker_client: Callable[[], Any | None],
    admin_key: Callable[[], str | None],
    checked: Mapping[str, Any],
) -> dict[str, Any]:
    """The version before written back, the services restarted again and checked."""
    change = checked["change_id"]
    before = checked["version_before"]
    if store.current_version() != before:
        store.revert(before)
    done = _roll(rt, api, docker_client, admin_key)
    ok = all(r.ok for r in done)
    change_log(rt).update(
        change,
        status="reverted" if ok else "revert unhealthy",
        reverted_at=datetime.now(UTC).isoformat(),
        revert_restarts=[{"service": r.service, "ok": r.ok, "error": r.error} for r in done],
    )
    if not ok:
        raise ConfigChangeError(
            f"{change} was reverted to {store.name} version {before}, but a service is still not healthy: "
            + "; ".join(f"{r.service}: {r.error}" for r in done if not r.ok)
        )
    rt.warn(f"{change} reverted: {store.name} is at version {before} again and the services are healthy")
    return {"reverted_to": before}


def finish(
    rt: Runtime[ConfigChangeSections],
    change: str,
    *,
    failed_steps: list[str],
    reverted: bool,
    approval: dict[str, Any] | None,
    rejected: bool = False,
) -> dict[str, Any]:
    if rejected:
        result = "rejected: nothing was changed"
    elif failed_steps:
        result = "failed at " + ", ".join(failed_steps) + ("; reverted" if reverted else "")
    else:
        result = "done"
    log = change_log(rt)
    record = log.close(change, result, approval=approval)
    rt.say(f"{change}: {result}; recorded at {rt.store().url(log.record_key(change))}")
    return {"change_id": change, "result": result, "status": record.get("status")}
