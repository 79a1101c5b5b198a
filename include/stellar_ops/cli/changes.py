"""``stellar-ops migrate``, ``stellar-ops config-change`` and ``stellar-ops changes list``: the
``db_migration`` and ``config_change`` steps without Airflow, the approval asked on the terminal
(``--yes`` gives it ahead), and the change log.

``migrate`` exits 1 when the rehearsal or the change fails (or the approval is refused), after
paging with the way back as the DAG does; ``config-change`` exits 1 when the change was reverted.
"""

from __future__ import annotations

import argparse
import getpass
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stellar_ops.changes import config_change, migration
from stellar_ops.changes.changelog import ChangeLog, change_id, list_rows
from stellar_ops.cli import env
from stellar_ops.cli.output import print_json
from stellar_ops.cli.steps import Steps
from stellar_ops.cli.terminal import approval
from stellar_ops.core.errors import StellarOpsError
from stellar_ops.dr.scratch import scratch_name


def register(sub: Any) -> None:
    p = sub.add_parser(
        "migrate", help="rehearse a migration on a fresh restore, ask for approval, apply it (db_migration)"
    )
    p.add_argument(
        "migration", metavar="FILE", help="the SQL: a file, a key in the bucket, or git:<rev>:<path>"
    )
    p.add_argument("--rollback", metavar="FILE", help="its rollback script, rehearsed after it")
    p.add_argument("--reason", help="why (a ticket, a release): kept in the change log")
    p.add_argument("--yes", action="store_true", help="do not ask for the approvals on the terminal")
    p.add_argument("--json", action="store_true", help="print the change's record as JSON")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser(
        "config-change", help="change config variables, restart the services, revert if unhealthy"
    )
    p.add_argument("--set", dest="set_", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--remove", action="append", default=[], metavar="NAME")
    p.add_argument("--reason", required=True, help="why: kept in the change log")
    p.add_argument("--yes", action="store_true", help="do not ask for the approval on the terminal")
    p.add_argument("--json", action="store_true", help="print the change's record as JSON")
    p.set_defaults(func=cmd_config_change)

    p = sub.add_parser("changes", help="the change log: migrations and config changes")
    actions = p.add_subparsers(dest="action", required=True)
    q = actions.add_parser("list", help="every change, newest first")
    q.add_argument("--json", action="store_true")
    q.add_argument("--limit", type=int, default=50)
    p.set_defaults(func=cmd_changes)


def _source(name: str | None) -> str | None:
    """A file named relative to the working directory is read from there."""
    if not name:
        return None
    if not name.startswith(("git:", "/")) and Path(name).is_file():
        return str(Path(name).resolve())
    return name


def _requested_by() -> str:
    return f"{getpass.getuser()} (terminal)"


def _new_change(kind: str) -> str:
    now = datetime.now(UTC)
    return change_id(kind, now, f"cli-{os.getpid()}-{now.isoformat()}")


def _print_record(log: ChangeLog, change: str, as_json: bool) -> None:
    record = log.read(change) or {}
    if as_json:
        print_json(record)
    else:
        print(f"{change}: {record.get('result') or record.get('status')}")


def cmd_migrate(args: argparse.Namespace) -> int:
    rt = env.runtime()
    steps = Steps(rt, migration.DAG_ID)
    change = _new_change("migration")
    log = migration.change_log(rt)
    approvals: dict[str, Any] = {}
    failed: list[str] = []
    rejected = False

    def finish() -> int:
        migration.finish(rt, change, failed_steps=failed, approvals=approvals, rejected=rejected)
        _print_record(log, change, args.json)
        return 1 if failed or rejected else 0

    try:
        checked = steps.run(
            "check_script",
            migration.check,
            rt,
            change,
            migration=_source(args.migration) or "",
            rollback=_source(args.rollback),
            requested_by=_requested_by(),
            reason=args.reason,
        )
        backup = steps.run(
            "take_pre_change_backup",
            migration.take_pre_change_backup,
            rt,
            change,
            slot=datetime.now(UTC),
            run_id=steps.run_id,
            token=str(os.getpid()),
        )
        rehearsed = steps.run(
            "rehearse_migration", migration.rehearse, rt, checked, backup["key"], scratch_name(steps.run_id)
        )
    except StellarOpsError as exc:
        failed = list(steps.failed)
        if "rehearse_migration" in failed:  # the migration's own failure: exit 1, as documented
            rt.warn(str(exc))
            return finish()
        finish()
        raise
    body = migration.approval_body(checked, backup, rehearsed)
    answer = approvals["approve_migration"] = approval(f"Apply {change} to production?\n\n{body}", args.yes)
    if answer["chosen"] != "Approve":
        rejected = True
        return finish()
    try:
        steps.run("apply_migration", migration.apply, rt, checked, rehearsed)
        steps.run("verify_migration", migration.verify, rt, checked, rehearsed)
    except StellarOpsError as exc:
        failed = list(steps.failed)
        rt.warn(str(exc))
        offered = migration.way_back(
            rt, checked, backup, rehearsed, failed_step=failed[-1], approval_url=None
        )
        if offered["production_changed"] and checked.get("rollback"):
            question = "Roll back in production?\n" + "\n".join(offered["lines"])
            answer = approvals["approve_rollback"] = approval(question, args.yes)
            if answer["chosen"] == "Approve":
                try:
                    steps.run("roll_back", migration.roll_back, rt, checked, rehearsed)
                except StellarOpsError as rollback_error:
                    rt.warn(str(rollback_error))
                    failed = list(steps.failed)
        elif offered["production_changed"] and backup:
            conf = migration.restore_conf(rt, backup["key"])
            rt.warn(
                "no rollback script: restore the pre-change backup with "
                f"stellar-ops restore --backup {conf['backup']} --target URL --database {conf['target_database']} --replace"
            )
        return finish()
    return finish()


def _pairs(values: list[str]) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise StellarOpsError(f"--set {item!r} is not NAME=VALUE")
        pairs[name] = value
    return pairs


def _secrets_client() -> Any:
    import boto3

    return boto3.client("secretsmanager")


def cmd_config_change(args: argparse.Namespace) -> int:
    rt = env.runtime()
    steps = Steps(rt, config_change.DAG_ID)
    change = _new_change("config")
    log = config_change.change_log(rt)
    asked = config_change.requested(_pairs(args.set_), list(args.remove), args.reason)
    store = config_change.settings_store(rt, _secrets_client)
    checked = steps.run(
        "check_change", config_change.check, rt, store, change, asked, requested_by=_requested_by()
    )
    answer = approval(
        "Change the config?\n" + "\n".join(checked["lines"]) + f"\nReason: {asked.reason}", args.yes
    )
    if answer["chosen"] != "Approve":
        config_change.finish(rt, change, failed_steps=[], reverted=False, approval=answer, rejected=True)
        _print_record(log, change, args.json)
        return 1
    api, docker = rt.resources.endpoint("api"), rt.resources.docker

    def admin_key() -> str | None:
        from stellar_ops.cli.keys import cli_tools

        return cli_tools(rt).keystore.admin_key()

    reverted = False
    try:
        steps.run("write_change", config_change.write, rt, store, checked)
        steps.run("restart_services", config_change.restart, rt, api, docker, admin_key, checked)
        steps.run("check_health", config_change.check_health, rt, checked)
    except StellarOpsError as exc:
        rt.warn(str(exc))
        if "write_change" not in steps.failed:
            try:
                steps.run("revert_change", config_change.revert, rt, store, api, docker, admin_key, checked)
                reverted = True
            except StellarOpsError as revert_error:  # still recorded and printed below
                rt.warn(str(revert_error))
    config_change.finish(rt, change, failed_steps=list(steps.failed), reverted=reverted, approval=answer)
    _print_record(log, change, args.json)
    return 1 if steps.failed else 0


def cmd_changes(args: argparse.Namespace) -> int:
    rt = env.runtime()
    log = ChangeLog(rt.store(), rt.config.changes.log_prefix)
    records = []
    for record in log.records():
        records.append(record)
        if len(records) >= args.limit:
            break
    rows = list_rows(records)
    if args.json:
        print_json(rows)
        return 0
    for row in rows:
        print(
            f"{row['change_id']}  {row['status']:<20}  by {row['requested_by'] or '?'}"
            f"  approved by {row['approved_by'] or '-'}  {row['what'] or ''}"
        )
    if not rows:
        print(f"no changes recorded under {rt.store().url(rt.config.changes.log_prefix)}")
    return 0
