"""The rotation's steps, defined once: ``api_key_rotation``'s tasks and ``stellar-ops keys rotate``.

A resumable state machine after AWS Secrets Manager's create/set/test/finish: every step reads
where the rotation stands from the key store and does only what is not done yet, so a step
re-run after a crash (or a whole CLI run started again) completes it without losing a key in
use. Keys travel only between the key store and the API; what a step returns (XCom) and says
(the task log) names them by fingerprint.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from stellar_ops.core.alerts import Finding, info_message
from stellar_ops.core.durations import humanize_duration
from stellar_ops.core.errors import ConfigError, StellarOpsError
from stellar_ops.core.metrics import run_finished
from stellar_ops.core.taxonomy import SEVERITIES
from stellar_ops.rotation import api, audit, keys, ledger, progress
from stellar_ops.rotation.backends import Tools
from stellar_ops.rotation.config import KEY_SETS, SECRETS, RotationConfig
from stellar_ops.rotation.keystore import KeyState
from stellar_ops.runtime import Runtime, RuntimeConfig

DAG_ID = "api_key_rotation"
AUDIT_DAG_ID = "secrets_rotation_audit"
REASONS = ("scheduled", "compromise")


class RotationSections(RuntimeConfig, Protocol):
    """The sections the rotation and the secrets audit read: ``rotation``, and the runtime's own."""

    @property
    def rotation(self) -> RotationConfig: ...


class RotationError(StellarOpsError):
    """The rotation cannot go on."""


class RolledBackError(RotationError):
    """A check after adding the new keys failed; the previous key set is served again."""


@dataclass(frozen=True)
class Plan:
    key_set: str
    count: int
    reason: str
    transition_seconds: float
    dry_run: bool
    rotation_id: str
    quarter: str
    slot: str
    run_id: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})

    @property
    def window(self) -> timedelta:
        return timedelta(seconds=self.transition_seconds)


@dataclass(frozen=True)
class Skip:
    reason: str


def _state(tools: Tools, plan: Plan) -> KeyState:
    return tools.keystore.state(plan.key_set)


def _mine(state: KeyState, plan: Plan) -> tuple[list[str], list[str]]:
    """The pending and outgoing keys of this rotation; an error when another one is under way."""
    if state.pending is None or state.rotation_id != plan.rotation_id:
        raise RotationError(
            f"{plan.key_set} has no pending keys of rotation {plan.rotation_id} "
            f"({'rotation ' + str(state.rotation_id) + ' is under way' if state.pending else 'none are pending'}): "
            "run generate_keys first"
        )
    return list(state.pending), list(state.outgoing or ())


def plan(
    rt: Runtime[RotationSections],
    *,
    key_set: str,
    count: int,
    transition_days: float | None,
    reason: str,
    dry_run: bool,
    slot: datetime,
    run_id: str,
) -> Plan | Skip:
    """What this run rotates, or why it does not (already rotated this quarter, a dry run)."""
    settings = rt.config.rotation
    if key_set not in KEY_SETS:
        raise ConfigError(f"key_set must be one of {', '.join(KEY_SETS)}, got {key_set!r}")
    if reason not in REASONS:
        raise ConfigError(f"reason must be one of {', '.join(REASONS)}, got {reason!r}")
    if not 1 <= count <= 50:
        raise ConfigError(f"count must be between 1 and 50, got {count}")
    days = settings.transition_days if transition_days is None else transition_days
    if days <= 0:
        raise ConfigError(f"transition_days must be positive, got {days}")
    seconds = days * 86400
    if reason == "compromise":
        seconds = min(seconds, settings.compromise_transition_hours * 3600)
    quarter = keys.quarter(slot)
    rotation_id = f"{key_set}-{quarter}"
    if reason == "compromise":
        rotation_id += f"-compromise-{slot.astimezone(UTC):%Y%m%dT%H%M%SZ}"
    result = Plan(key_set, count, reason, seconds, dry_run, rotation_id, quarter, slot.isoformat(), run_id)
    if reason == "scheduled":
        last = ledger.last_rotation(ledger.load(rt.store(), settings.ledger_key), key_set)
        if last and last.get("quarter") == quarter:
            return Skip(
                f"{key_set} was already rotated in {quarter} ({last['rotated_at']}, {last['how']}): "
                "a scheduled rotation runs once a quarter; trigger with reason 'compromise' to rotate again"
            )
    rt.say(
        f"rotation {rotation_id}: {count} new {key_set}, transition window {humanize_duration(seconds)}, "
        f"reason {reason}{' (dry run)' if dry_run else ''}"
    )
    if dry_run:
        return Skip(f"dry run: rotation {rotation_id} would replace {key_set} with {count} new keys")
    return result


def waiting_message(plan: Plan, others: list[str], *, dag_id: str, run_id: str) -> str:
    """Why this run waits: other runs of the rotation DAG are rotating keys right now."""
    return (
        f"{dag_id} run {run_id} (rotation {plan.rotation_id}) waits: "
        f"{'runs' if len(others) > 1 else 'run'} {', '.join(others)} of {dag_id} "
        f"{'are' if len(others) > 1 else 'is'} still rotating keys (at an approval or in the transition "
        "window). It goes on by itself when they end: answer or reject their approvals, or mark them "
        "failed, to let it go sooner."
    )


def generate(rt: Runtime[RotationSections], tools: Tools, plan: Plan) -> dict[str, Any]:
    """New keys as pending (reused when this rotation already made them); the served set as outgoing."""
    state = _state(tools, plan)
    if state.pending is not None and state.rotation_id != plan.rotation_id:
        raise RotationError(
            f"{plan.key_set} has pending keys of another rotation, {state.rotation_id} "
            f"({', '.join(keys.fingerprints(state.pending))}): finish or discard it first "
            "(clear its run, or stellar-ops keys discard --key-set " + plan.key_set + ")"
        )
    if state.pending is None:
        settings = rt.config.rotation
        new = keys.generate(plan.count, prefix=settings.key_prefix[plan.key_set], nbytes=settings.key_bytes)
        tools.keystore.stage_pending(plan.key_set, new, plan.rotation_id)
        state = _state(tools, plan)
        rt.say(f"generated {plan.count} {plan.key_set} as pending in {tools.keystore.name}")
    else:
        rt.say(f"the pending keys of {plan.rotation_id} already exist: reusing them")
    pending, outgoing = _mine(state, plan)
    result = {"new": keys.fingerprints(pending), "old": keys.fingerprints(outgoing)}
    rt.say(f"new {plan.key_set}: {', '.join(result['new'])}; outgoing: {', '.join(result['old']) or 'none'}")
    return result


def notify(
    rt: Runtime[RotationSections], plan: Plan, generated: dict[str, Any], now: datetime
) -> dict[str, Any]:
    """Tell the API's consumers when the new keys start and the old ones stop; a compromise pages."""
    starts = now
    stops = now + plan.window
    headline = (
        f"API key rotation ({plan.key_set}, {plan.reason}): new keys from {starts:%Y-%m-%d %H:%M} UTC "
        f"(once approved), old keys stop no earlier than {stops:%Y-%m-%d %H:%M} UTC"
    )
    lines = [
        f"*{headline}*",
        f"Rotation `{plan.rotation_id}`, {len(generated['new'])} new keys: {', '.join(generated['new'])}.",
        f"Outgoing keys: {', '.join(generated['old']) or 'none'}.",
        f"Switch every consumer to its new key within the {humanize_duration(plan.window)} transition window;"
        " both keys are accepted until it ends and the removal is approved.",
    ]
    payload = {
        "text": "\n".join(lines),
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}}],
    }
    rt.notify(payload, "P1" if plan.reason == "compromise" else None)
    rt.say(headline)
    return {
        **generated,
        "new_keys_start": starts.isoformat(),
        "old_keys_stop": stops.isoformat(),
        "summary": "\n".join(lines),
    }


def add(rt: Runtime[RotationSections], tools: Tools, plan: Plan) -> dict[str, Any]:
    """Serve the new keys alongside the old ones (from the API's next start)."""
    pending, outgoing = _mine(_state(tools, plan), plan)
    both = outgoing + [k for k in pending if k not in outgoing]
    tools.keystore.serve(plan.key_set, both)
    rt.say(f"{plan.key_set} now served: {', '.join(keys.fingerprints(both))}")
    return {"served": keys.fingerprints(both)}


def restart(
    rt: Runtime[RotationSections], tools: Tools, plan: Plan, phase: str, now: datetime | None = None
) -> dict[str, Any]:
    """Restart the API and wait until it answers healthy with a key valid before and after."""
    state = _state(tools, plan)
    served = list(state.served)
    carried = [k for k in served if k in (state.outgoing or ())] if phase == "add" else []
    candidates = carried or [k for k in served if k in (state.pending or ())] or served
    if not candidates:
        raise RotationError(f"no {plan.key_set} is served: refusing to restart the API with none")
    probe = candidates[0]
    took = tools.restarter.restart(tools.keystore.admin_key)
    healthy = api.wait_healthy(tools.api, probe, rt.config.rotation.healthy_timeout_seconds)
    rt.say(
        f"API restarted through {tools.restarter.name} in {humanize_duration(took)}, "
        f"healthy {humanize_duration(healthy)} later "
        f"(probe key {keys.fingerprint(probe)})"
    )
    result: dict[str, Any] = {"restart_seconds": round(took, 3), "healthy_seconds": round(healthy, 3)}
    if phase == "add":
        served_from = now or datetime.now(UTC)
        result["new_keys_served_from"] = served_from.isoformat()
        result["old_keys_stop"] = (served_from + plan.window).isoformat()
    return result


def _checks(tools: Tools, plan: Plan, rt: Runtime[RotationSections], wanted: list[str]) -> list[api.KeyCheck]:
    return api.check_keys(tools.api, rt.config.rotation.probe_paths[plan.key_set], wanted)


def rollback(rt: Runtime[RotationSections], tools: Tools, plan: Plan, why: str) -> None:
    """Serve the outgoing set again, restart, discard the pending keys, alert P2."""
    state = _state(tools, plan)
    outgoing = list(state.outgoing or ())
    if outgoing:
        tools.keystore.serve(plan.key_set, outgoing)
        tools.restarter.restart(tools.keystore.admin_key)
        api.wait_healthy(tools.api, outgoing[0], rt.config.rotation.healthy_timeout_seconds)
    tools.keystore.discard_pending(plan.key_set)
    rt.alert(
        Finding(
            dag_id=DAG_ID,
            severity="P2",
            alert_name="KeyRotationRolledBack",
            summary=f"rotation {plan.rotation_id} of {plan.key_set} rolled back: {why}; "
            f"{', '.join(keys.fingerprints(outgoing))} served again",
            runbook="SEC-3.2",
            labels={"key_set": plan.key_set},
        )
    )


def test(rt: Runtime[RotationSections], tools: Tools, plan: Plan) -> dict[str, Any]:
    """Every new key is accepted and every old one still is; else roll back."""
    pending, outgoing = _mine(_state(tools, plan), plan)
    checks = _checks(tools, plan, rt, pending + outgoing)
    refused = [c for c in checks if not c.accepted]
    if refused:
        why = "the API refused " + ", ".join(f"{c.fingerprint} ({c.status or 'no answer'})" for c in refused)
        rollback(rt, tools, plan, why)
        raise RolledBackError(f"rotation {plan.rotation_id} rolled back after add: {why}")
    rt.say(f"all {len(checks)} keys (new and old) are accepted")
    return {"accepted": [c.fingerprint for c in checks]}


def remove(rt: Runtime[RotationSections], tools: Tools, plan: Plan) -> dict[str, Any]:
    """Serve only the new keys (from the API's next start), unless this runner's own API key is
    one of the old ones: removing it would lock this project's DAGs and CLI out of the API."""
    pending, outgoing = _mine(_state(tools, plan), plan)
    own = tools.api.secret
    if own is not None and own in outgoing and own not in pending:
        raise ConfigError(
            f"the API key this project uses (the connection named by connections.api, or "
            f"STELLAR_API_KEY) is {plan.key_set} key {keys.fingerprint(own)}, which the removal would "
            f"invalidate: switch it to one of the new keys ({', '.join(keys.fingerprints(pending))}, "
            f"in the key store) and run the removal again (clear remove_old_keys, or run "
            f"stellar-ops keys rotate again); both key sets are still served"
        )
    tools.keystore.serve(plan.key_set, pending)
    rt.say(f"{plan.key_set} now served: {', '.join(keys.fingerprints(pending))}")
    return {"served": keys.fingerprints(pending)}


def verify(rt: Runtime[RotationSections], tools: Tools, plan: Plan) -> dict[str, Any]:
    """The old keys are refused and the new ones accepted."""
    pending, outgoing = _mine(_state(tools, plan), plan)
    old = [k for k in outgoing if k not in pending]
    new_checks = _checks(tools, plan, rt, pending)
    old_checks = _checks(tools, plan, rt, old)
    problems = [
        f"new key {c.fingerprint} refused ({c.status or 'no answer'})" for c in new_checks if not c.accepted
    ]
    problems += [f"old key {c.fingerprint} still accepted" for c in old_checks if c.accepted]
    if problems:
        raise RotationError(f"rotation {plan.rotation_id}: {'; '.join(problems)}")
    rt.say(f"{len(new_checks)} new keys accepted, {len(old_checks)} old keys refused")
    return {"accepted": [c.fingerprint for c in new_checks], "refused": [c.fingerprint for c in old_checks]}


def finish(rt: Runtime[RotationSections], tools: Tools, plan: Plan, now: datetime, by: str) -> dict[str, Any]:
    """Pending becomes current, outgoing is kept as previous; the ledger records the rotation."""
    state = _state(tools, plan)
    if state.pending is not None and state.rotation_id == plan.rotation_id:
        tools.keystore.finish(plan.key_set)
    elif state.pending is not None:
        _mine(state, plan)  # another rotation's keys: says so
    settings = rt.config.rotation
    ledger.record(
        rt.store(),
        settings.ledger_key,
        plan.key_set,
        at=now,
        by=by,
        how=f"{DAG_ID} {plan.rotation_id} ({plan.reason})",
        quarter=plan.quarter,
        audit=rt.store().url(audit_key(rt, plan)),
    )
    done = _state(tools, plan)
    served = ", ".join(keys.fingerprints(done.served))
    rt.say(f"rotation {plan.rotation_id} finished: {plan.key_set} {served}")
    rt.notify(
        info_message(
            f":key: *API key rotation done ({plan.key_set}, {plan.reason})*: rotation `{plan.rotation_id}` "
            f"finished; only the new keys are served ({served}), the old ones are refused. "
            f"Approved by {by}; audit: {rt.store().url(audit_key(rt, plan))}"
        )
    )
    return {"current": keys.fingerprints(done.served), "previous": keys.fingerprints(done.previous or ())}


def discard(rt: Runtime[RotationSections], tools: Tools, plan: Plan, why: str) -> dict[str, Any]:
    """A rejected approval: forget this rotation's pending keys; what is served stays as it is."""
    state = _state(tools, plan)
    if state.pending is None or state.rotation_id != plan.rotation_id:
        return {"discarded": []}
    discarded = keys.fingerprints(state.pending)
    tools.keystore.discard_pending(plan.key_set)
    served = keys.fingerprints(state.served)
    rt.warn(
        f"rotation {plan.rotation_id} cancelled ({why}): pending {', '.join(discarded)} discarded; "
        f"served unchanged: {', '.join(served)}"
    )
    return {"discarded": discarded, "served": served}


def audit_key(rt: Runtime[RotationSections], plan: Plan) -> str:
    return audit.audit_key(rt.config.rotation.audit_prefix, plan.rotation_id, plan.run_id)


def record_audit(
    rt: Runtime[RotationSections],
    plan: Plan,
    *,
    outcome: str,
    approvals: dict[str, dict[str, Any] | None],
    steps: dict[str, Any],
    now: datetime,
) -> dict[str, Any]:
    """Who approved what and when, fingerprints only: saved to S3 and shown in the log."""
    return audit.record(
        rt,
        audit_key(rt, plan),
        subject={"key_set": plan.key_set},
        rotation_id=plan.rotation_id,
        run_id=plan.run_id,
        reason=plan.reason,
        transition_seconds=plan.transition_seconds,
        outcome=outcome,
        approvals=approvals,
        steps=steps,
        now=now,
    )


def audit_secrets(rt: Runtime[RotationSections], now: datetime) -> list[ledger.Overdue]:
    """The ledger's overdue secrets, in one alert (a digest) that names each with how overdue it
    is and the procedure that rotates it, at the highest severity among them; none, no alert.
    Then each ``secret_rotation`` left waiting for its removal approval ``rotation.stuck_after_hours``
    past its window: one P2 alert per secret (SecretRotationStuck).

    Every audit, whatever its outcome, then pushes its end to the Pushgateway: the audit has no
    metric of its own, and SecretsAuditSilent watches that push."""
    try:
        return _audit_secrets(rt, now)
    finally:
        try:
            rt.publish_metrics(AUDIT_DAG_ID, [run_finished()])
        except StellarOpsError as exc:  # never hides the audit's own outcome
            rt.warn(f"the audit's end was not pushed: {exc}")


def _audit_secrets(rt: Runtime[RotationSections], now: datetime) -> list[ledger.Overdue]:
    settings = rt.config.rotation
    document = ledger.load(rt.store(), settings.ledger_key)
    found = ledger.overdue(document, settings.periods_days, settings.procedures, now)
    if found:
        rt.alert(overdue_digest(found, now))
    else:
        rt.say(f"no secret is overdue ({len(settings.periods_days)} in the ledger's schedule)")
    stuck, unreadable = stuck_rotations(rt, now)
    for record in stuck:
        rt.alert(stuck_finding(record, now))
    if not stuck:
        rt.say(
            f"no secret rotation waits for its removal over {settings.stuck_after_hours:g} h past its window"
        )
    if unreadable:
        # after the alerts: a broken record of one secret hides no other secret's alert
        raise ConfigError("; ".join(unreadable))
    return found


def stuck_rotations(
    rt: Runtime[RotationSections], now: datetime
) -> tuple[list[progress.Progress], list[str]]:
    """The rotations of ``secret_rotation`` (its progress records) stuck before their removal, and
    why the record of a secret could not be read."""
    settings = rt.config.rotation
    stuck: list[progress.Progress] = []
    unreadable: list[str] = []
    for secret in SECRETS:
        try:
            record = progress.load(rt.store(), settings.secret_audit_prefix, secret)
        except StellarOpsError as exc:
            unreadable.append(f"the rotation progress of {secret} cannot be read: {exc}")
            continue
        if record is not None and record.stuck(now, settings.stuck_after_hours):
            stuck.append(record)
    return stuck, unreadable


def stuck_finding(record: progress.Progress, now: datetime) -> Finding:
    """A rotation switched to its new secret whose removal approval nobody has answered: both
    the old and the new secret stay valid until someone does."""
    due = (record.removal_due() or now).astimezone(UTC)

    def named(credential: dict[str, str] | None) -> str:
        return f"{credential['identity']} ({credential['fingerprint']})" if credential else "(not recorded)"

    return Finding(
        dag_id=AUDIT_DAG_ID,
        severity="P2",
        alert_name="SecretRotationStuck",
        summary=f"{record.secret} rotation {record.rotation_id} has waited for its removal approval since "
        f"{due:%Y-%m-%d %H:%M} UTC ({humanize_duration(now - due)}): answer approve_removal of "
        f"secret_rotation run {record.run_id}",
        runbook="SEC-3.3",
        details=(
            f"switched at {record.phase_at} to {named(record.new)}; the old {named(record.old)} is still valid",
            f"started {record.started_at} by {record.by} ({record.reason}), "
            f"window {humanize_duration(record.window_seconds)}",
            "Approve the removal to finish the rotation: until it is answered, the old and the new "
            "secret are both valid",
        ),
        labels={"secret": record.secret},
    )


def overdue_digest(found: list[ledger.Overdue], now: datetime) -> Finding:
    """One finding for every overdue secret of an audit run (``found`` is not empty)."""
    names = [item.secret for item in found]
    count = f"{len(found)} secret{'s' if len(found) != 1 else ''}"
    return Finding(
        dag_id=AUDIT_DAG_ID,
        severity=min((item.severity for item in found), key=SEVERITIES.index),
        alert_name="SecretRotationOverdue",
        summary=f"{count} overdue for rotation: {', '.join(names)}",
        runbook="SEC-3.3",
        details=tuple(item.describe(now) for item in found),
        labels={"secret": ",".join(names)},
    )
