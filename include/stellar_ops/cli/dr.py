"""``stellar-ops dr-test``: the ``dr_restore_test`` steps in order, on a local scratch server."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from stellar_ops.cli import env
from stellar_ops.cli.output import print_json
from stellar_ops.cli.steps import Steps
from stellar_ops.core.errors import VerificationError
from stellar_ops.dr import flow, rehearsal
from stellar_ops.dr.scratch import scratch_name


def register(sub: Any) -> None:
    p = sub.add_parser("dr-test", help="restore a backup into a scratch server and verify it")
    p.add_argument("--backup", default="latest", help="'latest', an S3 key, or a local path")
    p.add_argument("--json", action="store_true", help="print the JSON report")
    p.add_argument("--keep-scratch", action="store_true", help="keep the scratch server if the restore fails")
    p.set_defaults(func=cmd_dr_test)


def cmd_dr_test(args: argparse.Namespace) -> int:
    """The DR test without Airflow: always the local scratch backend, on this machine."""
    rt = env.runtime()
    steps = Steps(rt, flow.DAG_ID)
    resolved = steps.run(
        "resolve_backup", flow.resolve_backup, rt, args.backup, slot=datetime.now(UTC), month_scoped=False
    )
    checked = steps.run("check_backup", flow.check_backup, rt, resolved)
    name = scratch_name("cli")
    scratch = flow.local_scratch(rt, name)
    with scratch.running(keep_on_failure=args.keep_scratch) as server:
        restored = steps.run("restore_backup", flow.restore_backup, rt, resolved, server.target())
    verdicts = [
        flow.verify_row_counts(rt, resolved, restored),
        flow.verify_schema(rt, resolved, restored),
        flow.verify_sanity_queries(rt, restored),
    ]
    # the point-in-time rehearsal (dr.pitr_rehearsal), in its own directory beside the scratch server
    base = rehearsal.scratch_dir(flow.work_dir(rt), name)
    try:
        pitr = steps.run(rehearsal.RESTORE_STEP, rehearsal.restore_to_moment, rt, base)
    finally:
        rehearsal.remove_leftovers(base)
    canaries = rehearsal.verify_canaries(pitr)
    checked_steps = [*flow.CHECK_STEPS, *([rehearsal.CHECK_STEP] if canaries else [])]
    verdicts += [canaries] if canaries else []
    for step, verdict in zip(checked_steps, verdicts, strict=True):
        rt.say(f"{'PASS' if verdict.passed else 'FAIL'} {verdict.check}: {verdict.detail}")
        if not verdict.passed:
            steps.alert(step, VerificationError(f"{verdict.check} failed: {verdict.detail}"))
    document = flow.publish_report(
        rt,
        resolved=resolved,
        checked=checked,
        restored=restored,
        checks=[v.as_dict() for v in verdicts],
        failed_steps=[],
        backend="local",
        run_id=None,
        pitr=pitr,
    )
    if args.json:
        print_json(document)
    return 0 if document["success"] else 1
