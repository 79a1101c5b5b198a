"""``stellar-ops secrets``: the rotation ledger (``secrets_rotation_audit``'s check, and recording
a rotation done by hand), and where every secret of the rotation table stands (``status``)."""

from __future__ import annotations

import argparse
import functools
import getpass
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from stellar_ops.cli import env
from stellar_ops.cli.output import parse_slot, print_json
from stellar_ops.cli.steps import Steps
from stellar_ops.cli.twins import add_setup_twins
from stellar_ops.core.errors import ConfigError, StellarOpsError
from stellar_ops.rotation import flow, keys, ledger, progress
from stellar_ops.rotation.backends import env_file_path
from stellar_ops.rotation.config import KEY_SETS, SECRETS, RotationConfig
from stellar_ops.rotation.credentials import Credential
from stellar_ops.rotation.keystore import EnvFileStore, KeyState, KeyStore, SecretsManagerStore
from stellar_ops.rotation.secret_store import SecretStore, build_secret_store
from stellar_ops.runtime import Runtime


def register(sub: Any) -> None:
    p = sub.add_parser("secrets", help="the secrets rotation ledger")
    cmds = p.add_subparsers(dest="secrets_command", required=True)
    audit = cmds.add_parser(
        "audit", help="each secret's last rotation; alerts the overdue ones and the stuck rotations (exit 1)"
    )
    audit.add_argument("--json", action="store_true", help="print the ledger's status as JSON")
    audit.set_defaults(func=cmd_audit)
    record = cmds.add_parser("record", help="record a rotation done by hand")
    record.add_argument("name", help="the secret, e.g. POSTGRES_PASSWORD")
    record.add_argument("--at", help="when (ISO; default now)")
    record.add_argument("--by", default=None, help="who rotated it (default: this user)")
    record.add_argument("--note", default="manual rotation", help="how it was rotated")
    record.set_defaults(func=cmd_record)
    status = cmds.add_parser(
        "status",
        help="every secret of the rotation table: current, pending and previous (identity and fingerprint), "
        "its rotation under way, last rotation, due, stuck (exit 1 when a store cannot be read)",
    )
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.set_defaults(func=cmd_status)
    add_setup_twins(cmds)


def cmd_audit(args: argparse.Namespace) -> int:
    rt = env.runtime()
    now = datetime.now(UTC)
    overdue = Steps(rt, flow.AUDIT_DAG_ID).run("audit_rotation_ledger", flow.audit_secrets, rt, now)
    settings = rt.config.rotation
    rows = ledger.status(ledger.load(rt.store(), settings.ledger_key), settings.periods_days, now)
    stuck, _ = flow.stuck_rotations(rt, now)  # the audit raised already when a record is unreadable
    stuck_rows = [
        {
            "secret": record.secret,
            "rotation_id": record.rotation_id,
            "run_id": record.run_id,
            "switched_at": record.phase_at,
            "removal_due": _iso(record.removal_due()),
        }
        for record in stuck
    ]
    if args.json:
        print_json({"secrets": rows, "overdue": [item.as_dict() for item in overdue], "stuck": stuck_rows})
    else:
        for row in rows:
            mark = "OVERDUE" if row["overdue"] else "ok"
            print(
                f"{row['secret']:<24} {mark:<8} last {row['last_rotated'] or 'never'}  due {row['due'] or 'now'}"
            )
        for item in stuck_rows:
            print(
                f"{item['secret']:<24} STUCK    rotation {item['rotation_id']} waits for its removal approval "
                f"since {item['removal_due']} (run {item['run_id']})"
            )
    return 1 if overdue or stuck else 0


def cmd_record(args: argparse.Namespace) -> int:
    rt = env.runtime()
    at = parse_slot(args.at, "--at")
    settings = rt.config.rotation
    if args.name not in settings.periods_days:
        rt.warn(
            f"{args.name} has no rotation period in rotation.periods_days: it is recorded but never audited"
        )
    document = ledger.record(
        rt.store(), settings.ledger_key, args.name, at=at, by=args.by or getpass.getuser(), how=args.note
    )
    print_json(document["secrets"][args.name])
    return 0


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _named(credential: Credential | None) -> dict[str, str] | None:
    return (
        None
        if credential is None
        else {"identity": credential.identity, "fingerprint": credential.fingerprint}
    )


def _secrets_manager() -> Any:
    import boto3
    from botocore.exceptions import BotoCoreError

    try:
        return boto3.client("secretsmanager")
    except BotoCoreError as exc:
        raise ConfigError(
            f"no Secrets Manager client (rotation.key_store aws_secrets_manager): {exc}"
        ) from None


def _key_store(
    settings: RotationConfig, secrets_client: Callable[[], Any], environ: Mapping[str, str] | None
) -> KeyStore:
    """The API keys' store, as ``stellar-ops keys`` builds it (without the API and its restart)."""
    if settings.key_store == "env_file":
        return EnvFileStore(env_file_path(settings, environ))
    return SecretsManagerStore(secrets_client(), settings.secret_prefix)


def _key_set_phase(state: KeyState) -> str:
    """Where an ``api_key_rotation`` stands, from the key store alone (it keeps no progress record)."""
    pending, served = set(state.pending or ()), set(state.served)
    if served == pending:
        return "removed"
    if pending <= served:
        return "added"
    return "generated"


def _key_set_row(row: dict[str, Any], store: KeyStore) -> None:
    state = store.state(row["secret"])
    row["current"] = {"fingerprints": keys.fingerprints(state.served)}
    if state.previous is not None:
        row["previous"] = {"fingerprints": keys.fingerprints(state.previous)}
    if state.pending is not None:
        phase = _key_set_phase(state)
        row.update(state="rotating", phase=phase)
        row["pending"] = {
            "fingerprints": keys.fingerprints(state.pending),
            "rotation_id": state.rotation_id,
            "phase": phase,
        }


def _secret_row(
    row: dict[str, Any], store: SecretStore | None, record: progress.Progress | None, errors: list[str]
) -> None:
    secret = row["secret"]
    staged: tuple[Credential, str] | None = None
    if store is not None:
        try:
            row["current"] = _named(store.current(secret))
            staged = store.pending(secret)
            row["previous"] = _named(store.previous(secret))
        except StellarOpsError as exc:
            errors.append(str(exc))
    under_way = record if record is not None and record.open else None
    pending: dict[str, Any]
    if staged is not None:
        pending = {
            "identity": staged[0].identity,
            "fingerprint": staged[0].fingerprint,
            "rotation_id": staged[1],
        }
    elif under_way is not None:  # the store could not say: the progress record names the new one
        pending = {**(under_way.new or {}), "rotation_id": under_way.rotation_id}
    else:
        return
    if under_way is not None:
        pending.update(
            since=under_way.started_at,
            by=under_way.by,
            phase=under_way.phase,
            run_id=under_way.run_id,
            removal_due=_iso(under_way.removal_due()),
        )
    row.update(state="rotating", phase=under_way.phase if under_way else None, pending=pending)


def secrets_status(
    rt: Runtime[flow.RotationSections],
    now: datetime,
    *,
    secrets_client: Callable[[], Any] = _secrets_manager,
    environ: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """One row per secret of ``rotation.periods_days``; what could not be read is its ``error``."""
    settings = rt.config.rotation
    client = functools.cache(secrets_client)  # one client for both stores
    secret_store: SecretStore | None = None
    key_store: KeyStore | None = None
    store_errors: dict[str, str] = {}
    try:
        secret_store = build_secret_store(settings, secrets_client=client, env=environ)
    except StellarOpsError as exc:
        store_errors["secrets"] = f"the secret store cannot be read: {exc}"
    try:
        key_store = _key_store(settings, client, environ)
    except StellarOpsError as exc:
        store_errors["keys"] = f"the key store cannot be read: {exc}"
    ledger_rows: dict[str, dict[str, Any]] = {}
    ledger_error = None
    try:
        document = ledger.load(rt.store(), settings.ledger_key)
        ledger_rows = {r["secret"]: r for r in ledger.status(document, settings.periods_days, now)}
    except StellarOpsError as exc:
        ledger_error = f"the ledger cannot be read: {exc}"

    rows = []
    for secret in settings.periods_days:
        errors: list[str] = []
        row: dict[str, Any] = {
            "secret": secret,
            "store": None,
            "state": "current",
            "phase": None,
            "current": None,
            "pending": None,
            "previous": None,
            "stuck": False,
        }
        if secret in SECRETS:
            record = None
            try:
                record = progress.load(rt.store(), settings.secret_audit_prefix, secret)
            except StellarOpsError as exc:
                errors.append(f"its rotation progress cannot be read: {exc}")
            if secret_store is None:
                errors.append(store_errors["secrets"])
            else:
                row["store"] = secret_store.name
            _secret_row(row, secret_store, record, errors)
            row["stuck"] = bool(record and record.stuck(now, settings.stuck_after_hours))
        elif secret in KEY_SETS:
            if key_store is None:
                errors.append(store_errors["keys"])
            else:
                row["store"] = key_store.name
                try:
                    _key_set_row(row, key_store)
                except StellarOpsError as exc:
                    errors.append(str(exc))
        entry = ledger_rows.get(secret)
        if ledger_error:
            errors.append(ledger_error)
        row["last_rotation"] = (
            {"at": entry["last_rotated"], "by": entry["by"], "how": entry["how"]}
            if entry and entry["last_rotated"]
            else None
        )
        row["due"] = entry["due"] if entry else None
        row["overdue"] = entry["overdue"] if entry else None
        if errors:
            row["error"] = "; ".join(errors)
        rows.append(row)
    return rows


def _shown(value: dict[str, Any] | None) -> str:
    if not value:
        return "none"
    if "fingerprints" in value:
        return ", ".join(value["fingerprints"]) or "none"
    return f"{value.get('identity', '?')} ({value.get('fingerprint', '?')})"


def describe_status(row: dict[str, Any]) -> str:
    """One block of lines per secret, as ``secrets status`` prints it."""
    state = row["state"] + (f" ({row['phase']})" if row["phase"] else "")
    lines = [f"{row['secret']}: {state}" + (f"  [{row['store']}]" if row["store"] else "")]
    lines.append(f"  current:  {_shown(row['current'])}")
    pending = row["pending"]
    if pending:
        parts = [f"rotation {pending.get('rotation_id')}"]
        if pending.get("since"):
            parts.append(f"since {pending['since']} by {pending.get('by')}")
        if pending.get("run_id"):
            parts.append(f"run {pending['run_id']}")
        if pending.get("removal_due"):
            parts.append(f"removal from {pending['removal_due']}")
        lines.append(f"  pending:  {_shown(pending)}, {', '.join(parts)}")
    lines.append(f"  previous: {_shown(row['previous'])}")
    last = row.get("last_rotation")
    rotated = f"{last['at']} by {last['by']} ({last['how']})" if last else "never"
    overdue = "  OVERDUE" if row.get("overdue") else ""
    lines.append(f"  last rotated: {rotated}; due {row.get('due') or 'now'}{overdue}")
    if row["stuck"]:
        lines.append(
            f"  STUCK: waits for its removal approval since {(pending or {}).get('removal_due')} "
            f"(secret_rotation run {(pending or {}).get('run_id')})"
        )
    if row.get("error"):
        lines.append(f"  error: {row['error']}")
    return "\n".join(lines)


def cmd_status(args: argparse.Namespace) -> int:
    rt = env.runtime()
    rows = secrets_status(rt, datetime.now(UTC))
    if args.json:
        print_json({"secrets": rows})
    else:
        print("\n\n".join(describe_status(row) for row in rows))
    return 1 if any(row.get("error") for row in rows) else 0
