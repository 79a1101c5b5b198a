"""``stellar-ops restore``: the ``db_restore`` steps in order, for when Airflow itself is down.

The target is a URL without its password: the password comes only from ``PGPASSWORD`` or a
passfile (``PGPASSFILE``, or libpq's ``~/.pgpass``), never from argv. The approval is asked on
the terminal unless ``--yes``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from stellar_ops.cli import env
from stellar_ops.cli.output import print_json
from stellar_ops.cli.steps import Steps
from stellar_ops.core.errors import ConfigError, StellarOpsError, VerificationError
from stellar_ops.dr import flow, recovery
from stellar_ops.dr.request import RestoreRequest
from stellar_ops.postgres.target import PgTarget


def register(sub: Any) -> None:
    p = sub.add_parser(
        "restore", help="restore a backup into a server you name, verified (the real recovery)"
    )
    p.add_argument("--backup", required=True, help="'latest', an S3 key, or an absolute local path")
    p.add_argument(
        "--target",
        required=True,
        help="postgresql://user@host:port/postgres (no password: use PGPASSWORD or a passfile)",
    )
    p.add_argument("--database", help="database to restore into (default: a new one named after the backup)")
    p.add_argument(
        "--replace", action="store_true", help="restore over an existing database: it is renamed aside"
    )
    p.add_argument("--yes", action="store_true", help="do not ask for the approval on the terminal")
    p.add_argument("--json", action="store_true", help="print the JSON report")
    p.set_defaults(func=cmd_restore)


def request_from(args: argparse.Namespace) -> RestoreRequest:
    """The request of ``--backup``, ``--target``, ``--database`` and ``--replace``."""
    return RestoreRequest(
        backup=args.backup, target=args.target, database=args.database, replace=args.replace
    )


def target_from(url: str, environ: dict[str, str] | None = None) -> PgTarget:
    """The target of ``--target``; a password in the URL is refused (argv is visible to everyone)."""
    environ = dict(os.environ) if environ is None else environ
    if urlsplit(url).password is not None:
        raise ConfigError(
            "--target must not carry a password (argv is readable by every user of the machine): "
            "export PGPASSWORD or use a passfile (PGPASSFILE or ~/.pgpass)"
        )
    target = PgTarget.from_url(url, source="--target")
    password = environ.get("PGPASSWORD") or None
    passfile = environ.get("PGPASSFILE") or target.passfile
    # every libpq setting of the URL's query string (sslrootcert, sslcert...) is kept
    return dataclasses.replace(target, password=password, passfile=passfile)


def approved(plan: recovery.RestorePlan) -> bool:
    print(plan.summary(), file=sys.stderr)
    if not sys.stdin.isatty():
        raise StellarOpsError(
            "no terminal to ask for the approval on: run with --yes once the plan above is right"
        )
    answer = input("Type 'restore' to go ahead, anything else to stop: ")
    return answer.strip() == "restore"


def cmd_restore(args: argparse.Namespace) -> int:
    rt = env.runtime()
    steps = Steps(rt, recovery.DAG_ID)
    request = request_from(args)
    target = target_from(request.target)
    resolved = steps.run(
        "resolve_backup", flow.resolve_backup, rt, request.backup, slot=datetime.now(UTC), month_scoped=False
    )
    steps.run("check_backup", flow.check_backup, rt, resolved)
    plan = steps.run("check_target", recovery.check_target, rt, resolved, target, request)
    if not args.yes and not approved(plan):
        rt.say("not approved: nothing was changed")
        return 1
    restored = steps.run("restore_backup", recovery.restore_backup, rt, resolved, target, plan)
    verdicts = [
        flow.verify_row_counts(rt, resolved, restored),
        flow.verify_schema(rt, resolved, restored),
        flow.verify_sanity_queries(rt, restored),
    ]
    for step, verdict in zip(recovery.CHECK_STEPS, verdicts, strict=True):
        rt.say(f"{'PASS' if verdict.passed else 'FAIL'} {verdict.check}: {verdict.detail}")
        if not verdict.passed:
            steps.alert(step, VerificationError(f"{verdict.check} failed: {verdict.detail}"))
    document = recovery.publish_report(
        rt,
        resolved=resolved,
        plan=plan,
        restored=restored,
        checks=[v.as_dict() for v in verdicts],
        failed_steps=[],
        run_id=None,
    )
    if args.json:
        print_json(document)
    return 0 if document["success"] else 1
