"""``secret_rotation``'s steps: one secret of the rotation table replaced with no failed request.

The shape is ``api_key_rotation``'s: generate (kept as pending in the key store), approve, add
beside the old, switch the consumers (the key store, the API's restart, this package's own
connections), test, wait out the window, approve the removal, remove, verify, finish. Each step
reads where the rotation stands from the key store, the server and the progress record
(:mod:`stellar_ops.rotation.progress`) and does only what is left, so clearing a task after a
crash resumes with the same secret. Credentials travel between the key store, the server and the
consumers only; what a step returns and says names them by identity and fingerprint.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from stellar_ops.core.alerts import Finding, info_message
from stellar_ops.core.durations import humanize_duration
from stellar_ops.core.errors import ConfigError, StellarOpsError
from stellar_ops.core.http import HttpEndpoint
from stellar_ops.rotation import api, audit, ledger, progress
from stellar_ops.rotation.cli_env import CliEnvironment
from stellar_ops.rotation.config import SECRETS, RotationConfig
from stellar_ops.rotation.credentials import Credential
from stellar_ops.rotation.flow import RotationSections
from stellar_ops.rotation.restart import Restarter
from stellar_ops.rotation.secret_backends import SecretBackend
from stellar_ops.rotation.secret_store import SecretStore
from stellar_ops.runtime import Runtime

DAG_ID = "secret_rotation"
AUTO = "auto"
REASONS = ("scheduled", "compromise")
RUNBOOK = "SEC-3.4"
# the secrets the API itself reads: switching them restarts it
API_SECRETS = ("POSTGRES_PASSWORD", "REDIS_PASSWORD", "S3_CREDENTIALS")


class SecretRotationError(StellarOpsError):
    """The secret's rotation cannot go on; what is valid is named."""


class SecretRolledBackError(SecretRotationError):
    """The new secret failed its test: the old one is what every consumer uses again."""


class ConnectionSwitch(Protocol):
    """This package's own Airflow connections of a secret."""

    def defined_in_environment(self, conn_ids: list[str]) -> list[str]: ...

    def switch(self, conn_id: str, credential: Credential) -> bool: ...

    def holds(self, conn_id: str, credential: Credential) -> bool: ...


@dataclass
class SecretTools:
    store: SecretStore
    backend: SecretBackend
    connections: ConnectionSwitch
    conn_ids: list[str]
    restarter: Restarter | None = None
    api: HttpEndpoint | None = None
    admin_key: Callable[[], str | None] = lambda: None
    api_key: Callable[[], str | None] = lambda: None
    cli_env: CliEnvironment | None = None

    def holders(self, secret: str, credential: Credential) -> list[str]:
        """This package's consumers that log in with ``credential``: connections, the CLI's file."""
        found = [c for c in self.conn_ids if self.connections.holds(c, credential)]
        if self.cli_env is not None and self.cli_env.holds(secret, credential):
            found.append(str(self.cli_env.path))
        return found

    def switch_own(self, secret: str, credential: Credential) -> list[str]:
        """Switch this package's consumers to ``credential``; the ones switched now."""
        switched = [c for c in self.conn_ids if self.connections.switch(c, credential)]
        if self.cli_env is not None and self.cli_env.switch(secret, credential):
            switched.append(str(self.cli_env.path))
        return switched


@dataclass(frozen=True)
class SecretPlan:
    secret: str
    reason: str
    transition_seconds: float
    rotation_id: str
    slot: str
    run_id: str
    by: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SecretPlan:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})

    @property
    def window(self) -> timedelta:
        return timedelta(seconds=self.transition_seconds)


@dataclass(frozen=True)
class Skip:
    reason: str


def conn_ids_of(settings: RotationConfig, secret: str) -> list[str]:
    """This package's connections that log in with ``secret``."""
    return {
        "POSTGRES_PASSWORD": list(settings.postgres.connections),
        "REDIS_PASSWORD": list(settings.redis.connections),
        "GRAFANA_ADMIN_PASSWORD": [settings.grafana.conn_id],
        "S3_CREDENTIALS": list(settings.s3.connections),
    }[secret]


def _named(credential: Credential | None) -> dict[str, str] | None:
    return {"identity": credential.identity, "fingerprint": credential.fingerprint} if credential else None


def most_overdue(
    rt: Runtime[RotationSections], now: datetime, why_not: Callable[[str], str | None]
) -> str | None:
    """The secret whose rotation is most overdue by the ledger (never rotated first) among those
    this deployment can rotate; each overdue one it cannot is named with why."""
    settings = rt.config.rotation
    document = ledger.load(rt.store(), settings.ledger_key)
    periods = {name: days for name, days in settings.periods_days.items() if name in SECRETS}
    found = ledger.overdue(document, periods, settings.procedures, now)
    found.sort(key=lambda item: item.due or datetime.min.replace(tzinfo=UTC))
    for item in found:
        problem = why_not(item.secret)
        if problem is None:
            return item.secret
        rt.warn(f"{item.secret} is overdue ({item.overdue_by(now)}) but cannot rotate here: {problem}")
    return None


def plan(
    rt: Runtime[RotationSections],
    *,
    secret: str,
    reason: str,
    transition_hours: float | None,
    slot: datetime,
    run_id: str,
    by: str,
    now: datetime,
    why_not: Callable[[str], str | None],
) -> SecretPlan | Skip:
    """Which secret this run rotates and with what window, or why it rotates none. ``why_not``
    says why a secret cannot rotate in this deployment (a connection or the twins missing)."""
    settings = rt.config.rotation
    if reason not in REASONS:
        raise ConfigError(f"reason must be one of {', '.join(REASONS)}, got {reason!r}")
    if secret == AUTO:
        if reason == "compromise":
            raise ConfigError("reason 'compromise' needs the secret named (param secret), not 'auto'")
        chosen = most_overdue(rt, now, why_not)
        if chosen is None:
            return Skip(
                f"no secret of {', '.join(SECRETS)} that can rotate here is due (ledger {settings.ledger_key})"
            )
        rt.say(f"{chosen} is the most overdue secret of the ledger: rotating it")
        secret = chosen
    if secret not in SECRETS:
        raise ConfigError(f"secret must be 'auto' or one of {', '.join(SECRETS)}, got {secret!r}")
    problem = why_not(secret)
    if problem is not None:
        raise ConfigError(f"{secret} cannot rotate: {problem}")
    hours = settings.secret_transition_hours if transition_hours is None else transition_hours
    if hours < 0:
        raise ConfigError(f"transition_hours must not be negative, got {hours}")
    if reason == "compromise":
        hours = min(hours, settings.compromise_transition_hours)
    rotation_id = f"{secret}-{slot.astimezone(UTC):%Y%m%dT%H%M%SZ}"
    under_way = progress.load(rt.store(), settings.secret_audit_prefix, secret)
    if under_way and under_way.open and under_way.rotation_id != rotation_id:
        raise SecretRotationError(
            f"rotation {under_way.rotation_id} of {secret} (run {under_way.run_id}, by {under_way.by}) is "
            f"under way, at {under_way.phase} since {under_way.phase_at}: finish it (answer its approvals, "
            "or clear its failed task) before starting another"
        )
    rt.say(
        f"rotation {rotation_id}: {secret}, window {humanize_duration(hours * 3600)} after the switch, "
        f"reason {reason}"
    )
    return SecretPlan(secret, reason, hours * 3600, rotation_id, slot.isoformat(), run_id, by)


def refuse_unswitchable(tools: SecretTools, plan: SecretPlan) -> None:
    """A connection defined in the environment cannot be switched by a task: refuse before anything."""
    fixed = tools.connections.defined_in_environment(tools.conn_ids)
    if fixed:
        names = ", ".join(f"{c} (AIRFLOW_CONN_{c.upper()})" for c in fixed)
        raise ConfigError(
            f"{plan.secret} cannot rotate: this package's connection {names} is defined in the environment, "
            "where a rotation cannot switch it; define it in Airflow's metadata DB or the secrets backend"
        )


def _progress(rt: Runtime[RotationSections], plan: SecretPlan) -> progress.Progress | None:
    found = progress.load(rt.store(), rt.config.rotation.secret_audit_prefix, plan.secret)
    return found if found and found.rotation_id == plan.rotation_id else None


def _advance(
    rt: Runtime[RotationSections], plan: SecretPlan, phase: str, now: datetime, **changes: Any
) -> progress.Progress:
    current = _progress(rt, plan)
    if current is None:
        raise SecretRotationError(
            f"rotation {plan.rotation_id} has no progress record: run generate_secret first"
        )
    updated = current.at(phase, now, **changes)
    progress.save(rt.store(), rt.config.rotation.secret_audit_prefix, updated)
    return updated


def _pending(tools: SecretTools, plan: SecretPlan) -> Credential:
    found = tools.store.pending(plan.secret)
    if found is None or found[1] != plan.rotation_id:
        other = f"rotation {found[1]} is pending" if found else "nothing is pending"
        raise SecretRotationError(
            f"{plan.secret} has no pending secret of rotation {plan.rotation_id} ({other}) in "
            f"{tools.store.name}: run generate_secret first"
        )
    return found[0]


def _old(tools: SecretTools, plan: SecretPlan, new: Credential) -> Credential | None:
    """What the consumers used before this rotation: the key store's current one until the switch,
    then the outgoing one it kept."""
    current = tools.store.current(plan.secret)
    if current is not None and current.secret != new.secret:
        return current
    return tools.store.outgoing(plan.secret)


def generate(
    rt: Runtime[RotationSections], tools: SecretTools, plan: SecretPlan, now: datetime
) -> dict[str, Any]:
    """The new credential, kept as pending in the key store (reused when this rotation made it)."""
    refuse_unswitchable(tools, plan)
    found = tools.store.pending(plan.secret)
    current = tools.store.current(plan.secret)
    if found is not None and found[1] != plan.rotation_id:
        raise SecretRotationError(
            f"{plan.secret} has a pending secret of another rotation, {found[1]}, in {tools.store.name}: "
            "finish or clear that rotation first"
        )
    if found is None:
        made = tools.backend.new_credential(current, rt.config.rotation.secret_bytes)
        new = tools.store.stage_pending(plan.secret, made, plan.rotation_id)
        rt.say(f"new {plan.secret}: {new}, pending in {tools.store.name}")
    else:
        new = found[0]
        rt.say(f"the pending {plan.secret} of {plan.rotation_id} already exists: reusing {new}")
    if _progress(rt, plan) is None:
        record = progress.Progress(
            secret=plan.secret,
            rotation_id=plan.rotation_id,
            run_id=plan.run_id,
            reason=plan.reason,
            by=plan.by,
            started_at=now.isoformat(),
            window_seconds=plan.transition_seconds,
            phase="generated",
            phase_at=now.isoformat(),
            new=_named(new),
            old=_named(current),
        )
        progress.save(rt.store(), rt.config.rotation.secret_audit_prefix, record)
    summary = (
        f"Rotate {plan.secret} ({plan.reason}) through {tools.backend.describe()}: new {new}, "
        f"replacing {current or 'nothing recorded'}. After the switch both stay valid for "
        f"{humanize_duration(plan.window)}"
        + ("" if tools.backend.overlap else " (this backend holds one secret: the old stops at once)")
        + f"; then the old one is removed after a second approval. Consumers switched: {tools.store.name}"
        + (", the API (restart)" if plan.secret in API_SECRETS and tools.restarter else "")
        + f", Airflow connections {', '.join(tools.conn_ids)}."
    )
    if plan.reason == "compromise":
        rt.notify(
            info_message(f":rotating_light: *{plan.secret} rotation for a suspected compromise*: {summary}"),
            "P1",
        )
    return {"new": _named(new), "old": _named(current), "summary": summary}


def add(rt: Runtime[RotationSections], tools: SecretTools, plan: SecretPlan, now: datetime) -> dict[str, Any]:
    """Make the new credential valid beside the old one and prove it logs in; else undo it."""
    new = _pending(tools, plan)
    old = _old(tools, plan, new)
    done = tools.backend.add(new, old)
    check = tools.backend.accepts(new)
    if not check:
        tools.backend.undo(new, old)
        raise SecretRotationError(
            f"rotation {plan.rotation_id}: the new {plan.secret} was refused after it was added ({check.reason}); "
            f"undone: {old or 'the old one'} is what works. Clear add_new_secret to try again"
        )
    _advance(rt, plan, "added", now)
    rt.say(f"{'added' if done else 'already added'}: {check.reason}")
    return {"new": _named(new), "accepted": check.reason}


def _restart_api(rt: Runtime[RotationSections], tools: SecretTools, plan: SecretPlan) -> dict[str, Any]:
    if plan.secret not in API_SECRETS or tools.restarter is None or tools.api is None:
        return {}
    took = tools.restarter.restart(tools.admin_key)
    key = tools.api_key()
    healthy = api.wait_healthy(tools.api, key, rt.config.rotation.healthy_timeout_seconds) if key else 0.0
    rt.say(
        f"the API restarted through {tools.restarter.name} in {humanize_duration(took)}"
        + (f", healthy {humanize_duration(healthy)} later" if key else "")
    )
    return {"restart_seconds": round(took, 3), "healthy_seconds": round(healthy, 3)}


def switch(
    rt: Runtime[RotationSections], tools: SecretTools, plan: SecretPlan, now: datetime
) -> dict[str, Any]:
    """The consumers move to the new credential: the key store, the API's restart, then this
    package's own connections. The old one stays valid until the removal."""
    new = _pending(tools, plan)
    tools.store.switch(plan.secret)
    restarted = _restart_api(rt, tools, plan)
    switched = tools.switch_own(plan.secret, new)
    record = _progress(rt, plan)
    if record is not None and record.phase != "switched":
        record = _advance(rt, plan, "switched", now)
    removal_from = (datetime.fromisoformat(record.phase_at) + plan.window) if record else (now + plan.window)
    rt.say(
        f"{plan.secret} switched to {new} in {tools.store.name}; connections switched now: "
        f"{', '.join(switched) or 'none (already)'}; the old one may be removed from {removal_from:%Y-%m-%d %H:%M} UTC"
    )
    return {**restarted, "switched": switched, "remove_from": removal_from.isoformat()}


def _rollback(rt: Runtime[RotationSections], tools: SecretTools, plan: SecretPlan, why: str) -> None:
    new = _pending(tools, plan)
    old = tools.store.outgoing(plan.secret) or _old(tools, plan, new)
    tools.store.unswitch(plan.secret)
    _restart_api(rt, tools, plan)
    if old is not None:
        tools.switch_own(plan.secret, old)
    tools.backend.undo(new, old)
    rt.alert(
        Finding(
            dag_id=DAG_ID,
            severity="P2",
            alert_name="SecretRotationRolledBack",
            summary=f"rotation {plan.rotation_id} of {plan.secret} rolled back: {why}; {old} is used again",
            runbook=RUNBOOK,
            labels={"secret": plan.secret},
        )
    )


def test(rt: Runtime[RotationSections], tools: SecretTools, plan: SecretPlan) -> dict[str, Any]:
    """The new credential logs in, every connection holds it, and the old one still logs in while
    the backend overlaps; else every consumer goes back to the old one."""
    new = _pending(tools, plan)
    problems = []
    check = tools.backend.accepts(new)
    if not check:
        problems.append(check.reason)
    holding = tools.holders(plan.secret, new)
    stale = [c for c in tools.conn_ids if c not in holding]
    if (
        tools.cli_env is not None
        and tools.cli_env.defines(plan.secret)
        and str(tools.cli_env.path) not in holding
    ):
        stale.append(str(tools.cli_env.path))
    if stale:
        problems.append(f"{', '.join(stale)} does not hold {new}")
    old = tools.store.outgoing(plan.secret)
    if tools.backend.overlap and old is not None:
        old_check = tools.backend.accepts(old)
        if not old_check:
            problems.append(f"the old one no longer logs in ({old_check.reason})")
    if problems:
        why = "; ".join(problems)
        _rollback(rt, tools, plan, why)
        raise SecretRolledBackError(f"rotation {plan.rotation_id} of {plan.secret} rolled back: {why}")
    rt.say(f"{check.reason}; connections {', '.join(tools.conn_ids)} hold it")
    return {"accepted": _named(new), "old_still_valid": bool(tools.backend.overlap and old)}


def remove(
    rt: Runtime[RotationSections],
    tools: SecretTools,
    plan: SecretPlan,
    now: datetime,
    *,
    drain_seconds: float = 0.0,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Make the old credential invalid, refused while a known consumer still uses it."""
    new = _pending(tools, plan)
    old = tools.store.outgoing(plan.secret)
    if old is None:
        raise SecretRotationError(
            f"rotation {plan.rotation_id}: {tools.store.name} has no outgoing {plan.secret}: switch_consumers has not run"
        )
    current = tools.store.current(plan.secret)
    if current is None or current.secret != new.secret:
        raise SecretRotationError(
            f"rotation {plan.rotation_id}: {tools.store.name} does not serve the new {plan.secret} {new}: "
            "clear switch_consumers first; both are still valid"
        )
    stale = tools.holders(plan.secret, old)
    if stale:
        raise SecretRotationError(
            f"rotation {plan.rotation_id}: {', '.join(stale)} still holds the old {plan.secret} {old}: "
            "switch it (clear switch_consumers) before the removal; both are still valid"
        )
    deadline = time.monotonic() + drain_seconds
    users = tools.backend.users_of(old)
    while users and time.monotonic() < deadline:
        sleep(min(5.0, max(0.1, deadline - time.monotonic())))
        users = tools.backend.users_of(old)
    if users:
        raise SecretRotationError(
            f"rotation {plan.rotation_id}: {old} is still in use ({'; '.join(users)}) after "
            f"{humanize_duration(drain_seconds)}: restart the consumer that holds it, then clear "
            "remove_old_secret; both are still valid"
        )
    removed = tools.backend.remove(old, new)
    _advance(rt, plan, "removed", now)
    rt.say(
        f"{'removed' if removed else 'already removed'}: {old} no longer logs in through {tools.backend.describe()}"
    )
    return {"removed": _named(old)}


def verify(rt: Runtime[RotationSections], tools: SecretTools, plan: SecretPlan) -> dict[str, Any]:
    """The old credential is refused and the new one accepted."""
    new = _pending(tools, plan)
    old = tools.store.outgoing(plan.secret)
    problems = []
    check = tools.backend.accepts(new)
    if not check:
        problems.append(f"the new one is refused ({check.reason})")
    if old is not None and tools.backend.accepts(old):
        problems.append(f"the old one {old} still logs in")
    if problems:
        raise SecretRotationError(f"rotation {plan.rotation_id} of {plan.secret}: {'; '.join(problems)}")
    rt.say(f"{new} accepted; {old or 'the old one'} refused")
    return {"accepted": _named(new), "refused": _named(old)}


def audit_key(rt: Runtime[RotationSections], plan: SecretPlan) -> str:
    return audit.audit_key(rt.config.rotation.secret_audit_prefix, plan.rotation_id, plan.run_id)


def finish(
    rt: Runtime[RotationSections], tools: SecretTools, plan: SecretPlan, now: datetime, by: str
) -> dict[str, Any]:
    """The rotation ends: the key store keeps the old one as previous, the ledger records it."""
    record = _progress(rt, plan)
    new = tools.store.pending(plan.secret)
    if new is not None and new[1] == plan.rotation_id:
        tools.store.finish(plan.secret)
    if record is not None and record.phase != "finished":
        _advance(rt, plan, "finished", now)
    settings = rt.config.rotation
    audit = rt.store().url(audit_key(rt, plan))
    ledger.record(
        rt.store(),
        settings.ledger_key,
        plan.secret,
        at=now,
        by=by,
        how=f"{DAG_ID} {plan.rotation_id} ({plan.reason})",
        audit=audit,
    )
    current = tools.store.current(plan.secret)
    rt.notify(
        info_message(
            f":key: *{plan.secret} rotated ({plan.reason})*: rotation `{plan.rotation_id}` finished; "
            f"{current} is the only valid one. Removal approved by {by}; audit: {audit}"
        )
    )
    rt.say(f"rotation {plan.rotation_id} finished: {current}")
    return {"current": _named(current)}


def discard(
    rt: Runtime[RotationSections], tools: SecretTools, plan: SecretPlan, why: str, now: datetime
) -> dict[str, Any]:
    """The roll-out was rejected: the new credential is forgotten; nothing the consumers use changed."""
    found = tools.store.pending(plan.secret)
    if found is None or found[1] != plan.rotation_id:
        return {"discarded": None}
    record = _progress(rt, plan)
    if record is not None and record.phase not in ("generated", "discarded"):
        rt.warn(
            f"rotation {plan.rotation_id} stopped ({why}) at {record.phase}: the old and the new {plan.secret} "
            "both stay valid, the ledger is unchanged; clear the rejected approval to go on"
        )
        return {"discarded": None, "phase": record.phase}
    tools.backend.discard(found[0])
    tools.store.discard(plan.secret)
    if record is not None:
        _advance(rt, plan, "discarded", now)
    rt.warn(f"rotation {plan.rotation_id} cancelled ({why}): the pending {found[0]} is discarded")
    return {"discarded": _named(found[0])}


def record_audit(
    rt: Runtime[RotationSections],
    plan: SecretPlan,
    *,
    outcome: str,
    approvals: dict[str, dict[str, Any] | None],
    steps: dict[str, Any],
    now: datetime,
) -> dict[str, Any]:
    """Who approved what and when, identities and fingerprints only, to S3 and the log."""
    return audit.record(
        rt,
        audit_key(rt, plan),
        subject={"secret": plan.secret},
        rotation_id=plan.rotation_id,
        run_id=plan.run_id,
        reason=plan.reason,
        transition_seconds=plan.transition_seconds,
        outcome=outcome,
        approvals=approvals,
        steps=steps,
        now=now,
    )
