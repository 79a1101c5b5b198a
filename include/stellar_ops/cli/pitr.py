"""``stellar-ops pitr base-backup|list|prune|window``: the ``db_base_backup`` steps and the archive's
catalogue, without Airflow."""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from typing import Any

from stellar_ops.cli import env
from stellar_ops.cli.output import print_json
from stellar_ops.cli.steps import Steps
from stellar_ops.core.alerts import human_bytes
from stellar_ops.core.errors import StellarOpsError
from stellar_ops.pitr import flow
from stellar_ops.pitr.catalog import list_base_backups


def register(sub: Any) -> None:
    p = sub.add_parser("pitr", help="base backups and the window of point-in-time recovery")
    actions = p.add_subparsers(dest="action", required=True)
    q = actions.add_parser(
        "base-backup", help="take, verify a base backup, then apply retention (db_base_backup)"
    )
    q.add_argument("--dry-run-retention", action="store_true", help="only log what retention would delete")
    q = actions.add_parser("list", help="the base backups, complete and unfinished")
    q.add_argument("--json", action="store_true")
    q = actions.add_parser("prune", help="apply the base backups' and the WAL's retention")
    q.add_argument("--dry-run", action="store_true", help="only log what would be deleted")
    actions.add_parser("window", help="the span point-in-time recovery reaches, as JSON")
    p.set_defaults(func=cmd_pitr)  # an action with a func of its own (set on its parser) runs that instead
    _add_canary(actions)


def cmd_pitr(args: argparse.Namespace) -> int:
    rt = env.runtime()
    if args.action == "base-backup":
        return _base_backup(rt, args.dry_run_retention)
    if args.action == "list":
        return _list(rt, args.json)
    if args.action == "prune":
        steps = Steps(rt, flow.DAG_ID)
        plan = steps.run("apply_retention", flow.apply_retention, rt, dry_run=args.dry_run)
        print_json(plan.as_dict(dry_run=args.dry_run))
        return 0
    print_json(flow.current_window(rt).as_dict())
    return 0


def _base_backup(rt: Any, dry_run: bool) -> int:
    steps = Steps(rt, flow.DAG_ID)
    started = time.monotonic()
    try:
        steps.run("check_prerequisites", flow.check_prerequisites, rt)
        record = steps.run("take_base_backup", flow.take, rt)
        steps.run("verify_base_backup", flow.verify, rt, record.backup_id)
    except StellarOpsError:
        flow.publish_metrics(rt, None)
        raise
    duration = time.monotonic() - started
    # As in the DAG: a failed retention is alerted, but the base backup stands and is reported.
    retention_failure: StellarOpsError | None = None
    try:
        steps.run("apply_retention", flow.apply_retention, rt, dry_run=dry_run)
    except StellarOpsError as exc:
        retention_failure = exc
    steps.run("publish_metrics", flow.publish_metrics, rt, record, duration)
    steps.run("notify_success", flow.notify_success, rt, record)
    if retention_failure is not None:
        raise retention_failure
    print_json(record.to_json())
    return 0


def _list(rt: Any, as_json: bool) -> int:
    pitr = rt.config.pitr
    found = list_base_backups(rt.store(), pitr.prefix, pitr.server_name, say=rt.warn)
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = [
        {
            **r.to_json(),
            "state": "complete",
            "age_hours": round((now - r.stop_time).total_seconds() / 3600, 1),
        }
        for r in found.complete
    ]
    rows += [
        {
            "backup_id": u.backup_id,
            "state": "unfinished",
            "keys": list(u.keys),
            "last_modified": u.last_modified,
        }
        for u in found.unfinished
    ]
    if as_json:
        print_json(rows)
        return 0
    print(f"{'backup_id':<18} {'state':<10} {'recovers from':<27} {'size':>10} {'WAL from':<24}")
    for row in rows:
        if row["state"] == "complete":
            print(
                f"{row['backup_id']:<18} {'complete':<10} {row['stop_time']:<27} "
                f"{human_bytes(row['stored_bytes']):>10} {row['start_wal']:<24}"
            )
        else:
            print(f"{row['backup_id']:<18} {'unfinished':<10}")
    return 0


# -- canary (H3) ---------------------------------------------------------------------------------


def _add_canary(actions: Any) -> None:
    from stellar_ops.pitr import canary

    q = actions.add_parser(
        "canary",
        help=f"commit a row into {canary.TABLE} every few seconds until stopped: what the DR drill's "
        "point-in-time rehearsal checks a recovery against (needs track_commit_timestamp = on)",
    )
    q.add_argument(
        "--interval",
        type=float,
        default=canary.DEFAULT_INTERVAL,
        help=f"seconds between two canaries (default {canary.DEFAULT_INTERVAL:g})",
    )
    q.set_defaults(func=cmd_canary)


def cmd_canary(args: argparse.Namespace) -> int:
    """The writer, in the foreground, on ``DATABASE_URL``; SIGTERM or SIGINT stops it cleanly."""
    import signal
    import threading

    from stellar_ops.cli.output import say, warn
    from stellar_ops.pitr import canary

    if args.interval <= 0:
        raise StellarOpsError(f"--interval must be positive, got {args.interval:g}")
    target = env.db_target().for_session("pitr-canary", None)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    say(f"canary writer: a row into {canary.TABLE} every {args.interval:g}s on {target.describe()}")
    written = canary.run_writer(target, interval=args.interval, stop=stop, say=say, warn=warn)
    say(f"canary writer stopped after {written} row(s)")
    return 0
