"""``stellar-ops restore``: the ``db_restore`` steps in order, for when Airflow itself is down.

From a logical backup (``--backup``), or to a moment of the WAL archive (``--target-time ISO|latest``,
no ``--backup``), with two ways out: ``--target URL [--database NAME]`` copies the recovered
database into a server you name; ``--data-dir DIR`` leaves the whole recovered server in ``DIR``,
stopped cleanly with its own configuration, for the database host itself.

The target is a URL without its password: the password comes only from ``PGPASSWORD`` or a
passfile (``PGPASSFILE``, or libpq's ``~/.pgpass``), never from argv. The approval is asked on
the terminal unless ``--yes``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from stellar_ops.cli import env
from stellar_ops.cli.output import print_json
from stellar_ops.cli.steps import Steps
from stellar_ops.core.errors import ConfigError, StellarOpsError, VerificationError
from stellar_ops.core.processes import unprivileged_user
from stellar_ops.dr import flow, point_in_time, recovery
from stellar_ops.dr.request import RestoreRequest
from stellar_ops.pitr import catalog
from stellar_ops.pitr import recovery as pitr
from stellar_ops.pitr.layout import BaseBackupRecord
from stellar_ops.pitr.recovery import parse_target_time
from stellar_ops.postgres.target import PgTarget


def register(sub: Any) -> None:
    p = sub.add_parser(
        "restore", help="restore a backup into a server you name, verified (the real recovery)"
    )
    p.add_argument("--backup", help="'latest', an S3 key, or an absolute local path (a logical backup)")
    p.add_argument(
        "--target-time",
        help="recover to this moment of the WAL archive instead: an ISO-8601 time (UTC unless it says) "
        "or 'latest'; the base backup before it is chosen by itself",
    )
    p.add_argument(
        "--target",
        help="postgresql://user@host:port/postgres (no password: use PGPASSWORD or a passfile)",
    )
    p.add_argument(
        "--data-dir",
        help="with --target-time: leave the whole recovered server in this new directory (stopped "
        "cleanly, for the database host) instead of copying a database into --target",
    )
    p.add_argument(
        "--database",
        help="database to restore into (default: a new one named after the backup, or the moment)",
    )
    p.add_argument(
        "--replace", action="store_true", help="restore over an existing database: it is renamed aside"
    )
    p.add_argument("--yes", action="store_true", help="do not ask for the approval on the terminal")
    p.add_argument("--json", action="store_true", help="print the JSON report")
    p.set_defaults(func=cmd_restore)


def request_from(args: argparse.Namespace) -> RestoreRequest:
    """The request of ``--backup``, ``--target``, ``--database``, ``--replace`` and ``--target-time``."""
    return RestoreRequest(
        backup=args.backup or "",
        target=args.target or "",
        database=args.database,
        replace=args.replace,
        target_time=getattr(args, "target_time", None),
    )


def check_options(args: argparse.Namespace) -> None:
    """Which restore the options ask for: a logical backup into --target, or a moment of the archive
    into --target or --data-dir; a mix is refused naming the options."""
    if args.backup and args.target_time:
        raise ConfigError(
            "--backup and --target-time ask for two different restores: --backup a logical backup, "
            "--target-time a moment of the WAL archive (its base backup is chosen by itself)"
        )
    if not args.backup and not args.target_time:
        raise ConfigError(
            "name what to restore: --backup (a logical backup) or --target-time (ISO or latest)"
        )
    if args.data_dir:
        if not args.target_time:
            raise ConfigError("--data-dir recovers a whole server to a moment: it needs --target-time")
        given = [o for o, v in (("--target", args.target), ("--database", args.database)) if v]
        if given or args.replace:
            raise ConfigError(
                f"--data-dir and {', '.join(given + (['--replace'] if args.replace else []))} are two ways "
                "out: a whole server in a directory, or a database copied into a server: choose one"
            )
    elif not args.target:
        raise ConfigError(
            "--target is missing: the server to restore into (or --data-dir with --target-time)"
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


class _Plan(Protocol):
    def summary(self) -> str: ...


def approved(plan: _Plan) -> bool:
    print(plan.summary(), file=sys.stderr)
    if not sys.stdin.isatty():
        raise StellarOpsError(
            "no terminal to ask for the approval on: run with --yes once the plan above is right"
        )
    answer = input("Type 'restore' to go ahead, anything else to stop: ")
    return answer.strip() == "restore"


def cmd_restore(args: argparse.Namespace) -> int:
    check_options(args)
    if args.data_dir:
        return recover_data_dir(args)
    if args.target_time:
        return restore_to_moment(args)
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


def restore_to_moment(args: argparse.Namespace) -> int:
    """A database of the cluster recovered to ``--target-time``, copied into ``--target``."""
    rt = env.runtime()
    steps = Steps(rt, recovery.DAG_ID)
    request = request_from(args)
    target = target_from(request.target)
    plan = steps.run("check_target", point_in_time.check, rt, request, target)
    if not args.yes and not approved(plan):
        rt.say("not approved: nothing was changed")
        return 1
    restored = steps.run("restore_backup", point_in_time.restore_to_moment, rt, plan, target)
    for check in restored["checks"]:
        rt.say(f"{'PASS' if check['passed'] else 'FAIL'} {check['check']}: {check['detail']}")
        if not check["passed"]:
            steps.alert("verify_" + check["check"].replace(" ", "_"), VerificationError(check["detail"]))
    document = point_in_time.publish_report(rt, plan=plan, restored=restored, failed_steps=[], run_id=None)
    if args.json:
        print_json(document)
    return 0 if document["success"] else 1


@dataclass(frozen=True)
class _DataDirPlan:
    archive: pitr.WalArchive
    record: BaseBackupRecord
    target: datetime | None
    window: str
    data_dir: Path

    def summary(self) -> str:
        return (
            f"Recover {self.archive.where()} to {pitr.describe_target(self.target)} from base backup "
            f"{self.record.backup_id} (ends {pitr.iso(self.record.stop_time)}; {self.window})\n"
            f"into the new data directory {self.data_dir}, left stopped with the source's configuration."
        )


def _plan_data_dir(rt: Any, moment: datetime | None, data_dir: Path) -> _DataDirPlan:
    archive = point_in_time.archive_of(rt)
    records = catalog.complete_base_backups(archive.store, archive.prefix, archive.server)
    newest = pitr.newest_archived(catalog.list_wal(archive.store, archive.prefix, archive.server))
    record = pitr.choose_base_backup(records, moment, newest, where=archive.where())
    if data_dir.exists() and any(data_dir.iterdir()):
        raise ConfigError(f"--data-dir {data_dir} is not empty: name a new directory")
    return _DataDirPlan(archive, record, moment, pitr.window_text(records, newest), data_dir)


def recover_data_dir(args: argparse.Namespace) -> int:
    """The whole cluster recovered to ``--target-time`` into ``--data-dir``, stopped cleanly."""
    rt = env.runtime()
    steps = Steps(rt, recovery.DAG_ID)
    moment = parse_target_time(args.target_time, what="--target-time")
    data_dir = Path(args.data_dir).absolute()
    plan = steps.run("check_target", _plan_data_dir, rt, moment, data_dir)
    if not args.yes and not approved(plan):
        rt.say("not approved: nothing was changed")
        return 1
    created = not data_dir.exists()
    try:
        server = steps.run(
            "restore_backup",
            pitr.recover,
            plan.archive,
            moment,
            data_dir,
            binaries=rt.binaries,
            run_as=unprivileged_user(rt.config.dr.run_as_user),
            timeout=rt.config.pitr.recovery_timeout_seconds,
            say=rt.say,
        )
    except StellarOpsError:
        # a half-recovered directory is of no use: it goes (the recovery's log beside it stays)
        if created:
            shutil.rmtree(data_dir, ignore_errors=True)
        else:
            for child in data_dir.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)
        raise
    server.keep()
    document = {
        "format_version": 1,
        "kind": "point_in_time_data_dir",
        "success": True,
        **server.report.as_dict(),
        "log": str(server.log_path),
    }
    rt.say(
        f"{data_dir} holds the cluster recovered to {server.report.target} (reached "
        f"{server.report.reached or 'the base backup'}), stopped cleanly, with the source's own "
        f"postgresql.auto.conf and pg_hba.conf; its recovery's log is {server.log_path}. Start it with "
        f"pg_ctl -D {data_dir} start (as PostgreSQL's user): it is a new timeline "
        f"({server.report.timeline}); with archive_mode on it archives into the same archive."
    )
    if args.json:
        print_json(document)
    return 0
