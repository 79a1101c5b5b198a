"""``stellar-ops secrets``: the rotation ledger (``secrets_rotation_audit``'s check, and recording
a rotation done by hand)."""

from __future__ import annotations

import argparse
import getpass
from datetime import UTC, datetime
from typing import Any

from stellar_ops.cli import env
from stellar_ops.cli.output import parse_slot, print_json
from stellar_ops.cli.steps import Steps
from stellar_ops.rotation import flow, ledger


def register(sub: Any) -> None:
    p = sub.add_parser("secrets", help="the secrets rotation ledger")
    cmds = p.add_subparsers(dest="secrets_command", required=True)
    audit = cmds.add_parser("audit", help="each secret's last rotation; alerts the overdue ones (exit 1)")
    audit.add_argument("--json", action="store_true", help="print the ledger's status as JSON")
    audit.set_defaults(func=cmd_audit)
    record = cmds.add_parser("record", help="record a rotation done by hand")
    record.add_argument("name", help="the secret, e.g. POSTGRES_PASSWORD")
    record.add_argument("--at", help="when (ISO; default now)")
    record.add_argument("--by", default=None, help="who rotated it (default: this user)")
    record.add_argument("--note", default="manual rotation", help="how it was rotated")
    record.set_defaults(func=cmd_record)


def cmd_audit(args: argparse.Namespace) -> int:
    rt = env.runtime()
    now = datetime.now(UTC)
    overdue = Steps(rt, flow.AUDIT_DAG_ID).run("audit_rotation_ledger", flow.audit_secrets, rt, now)
    settings = rt.config.rotation
    rows = ledger.status(ledger.load(rt.store(), settings.ledger_key), settings.periods_days, now)
    if args.json:
        print_json({"secrets": rows, "overdue": [item.as_dict() for item in overdue]})
    else:
        for row in rows:
            mark = "OVERDUE" if row["overdue"] else "ok"
            print(
                f"{row['secret']:<24} {mark:<8} last {row['last_rotated'] or 'never'}  due {row['due'] or 'now'}"
            )
    return 1 if overdue else 0


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
