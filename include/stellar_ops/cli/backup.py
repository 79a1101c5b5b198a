"""``stellar-ops backup`` (the ``db_backup`` steps in order) and ``stellar-ops backups list|verify``."""

from __future__ import annotations

import argparse
import os
from datetime import UTC, datetime
from typing import Any

from stellar_ops.backup import flow
from stellar_ops.backup.report import Published
from stellar_ops.catalogue.inventory import list_backups
from stellar_ops.catalogue.source import verify_published
from stellar_ops.cli import env
from stellar_ops.cli.output import parse_slot, print_json
from stellar_ops.cli.steps import Steps
from stellar_ops.core.alerts import human_bytes
from stellar_ops.core.errors import StellarOpsError


def register(sub: Any) -> None:
    p = sub.add_parser("backup", help="take, verify and publish a backup, then apply retention")
    p.add_argument(
        "--slot",
        help="the run's slot (default: now), e.g. 2026-11-28T02:00:00Z: a verified backup covering it skips "
        "the run; a backup is always named by its snapshot time",
    )
    p.add_argument(
        "--force", action="store_true", help="take another backup even if a verified backup covers the slot"
    )
    p.add_argument("--dry-run-retention", action="store_true", help="only log what retention would delete")
    p.set_defaults(func=cmd_backup)

    p = sub.add_parser("backups", help="list backups, or verify one end to end")
    backups = p.add_subparsers(dest="action", required=True)
    q = backups.add_parser("list", help="every backup with its age, size, format and state")
    q.add_argument("--json", action="store_true")
    q = backups.add_parser("verify", help="re-check one backup against its manifest")
    q.add_argument("key")
    p.set_defaults(func=cmd_backups)


def cmd_backup(args: argparse.Namespace) -> int:
    rt = env.runtime()
    steps = Steps(rt, flow.DAG_ID)
    slot = parse_slot(args.slot)
    try:
        prerequisites = steps.run("check_prerequisites", flow.check_prerequisites, rt, slot)
        cover = prerequisites.cover
        if cover is not None and not args.force:
            rt.say(f"{flow.skip_reason(slot, cover)}; use --force to take another")
            return 0
        if cover is not None:
            flow.forced_over(rt, cover)
        draft = steps.run("dump_to_s3", flow.dump_to_s3, rt, slot, run_id=None, token=f"cli-{os.getpid()}")
        verification = steps.run("verify_backup", flow.verify_backup, rt, draft)
        published = Published.from_manifest(
            steps.run("publish_backup", flow.publish_backup, rt, draft, verification)
        )
    except StellarOpsError:
        flow.publish_metrics(rt, None)
        raise
    # As in the DAG: a failed retention is alerted, but the backup stands and is reported.
    retention_failure: StellarOpsError | None = None
    try:
        steps.run("apply_retention", flow.apply_retention, rt, published, dry_run=args.dry_run_retention)
    except StellarOpsError as exc:
        retention_failure = exc
    steps.run("publish_metrics", flow.publish_metrics, rt, published)
    steps.run("notify_success", flow.notify_success, rt, published)
    if retention_failure is not None:
        raise retention_failure
    print_json({"key": published.key, "size_bytes": published.size_bytes, "sha256": published.sha256})
    return 0


def cmd_backups(args: argparse.Namespace) -> int:
    rt = env.runtime()
    store, settings = rt.store(), rt.config.backup
    if args.action == "list":
        listing = list_backups(store, settings.prefix, settings.legacy_prefix)
        now = datetime.now(UTC)
        rows = [entry.as_dict(now) for entry in listing.backups]
        if args.json:
            print_json(rows)
        else:
            print(f"{'key':<64} {'age':>9} {'size':>12} {'format':<7} state")
            for row in rows:
                print(
                    f"{row['key']:<64} {row['age_hours']:>8.1f}h {human_bytes(row['size_bytes']):>12} "
                    f"{row['format']:<7} {row['state']}"
                )
        return 0
    print_json(verify_published(store, settings.prefix, settings.legacy_prefix, args.key, rt.binaries))
    return 0
