"""``stellar-ops perf``: the ``perf_analysis`` steps in order; the report as Markdown or JSON."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from stellar_ops.cli import env
from stellar_ops.cli.steps import Steps
from stellar_ops.perf import flow
from stellar_ops.perf.config import CHECKS


def register(sub: Any) -> None:
    p = sub.add_parser("perf", help="the performance review: checks, thresholds, week over week")
    p.add_argument(
        "--check",
        action="append",
        choices=CHECKS,
        metavar="NAME",
        help=f"a check to make (repeatable): {', '.join(CHECKS)}",
    )
    p.add_argument("--json", action="store_true", help="print the JSON report on stdout")
    p.add_argument(
        "--markdown", action="store_true", help="print the Markdown summary on stdout (the default)"
    )
    p.add_argument(
        "--compare-to", metavar="KEY", help="S3 key of the report to compare with (default: last week's)"
    )
    p.add_argument(
        "--no-store", action="store_true", help="neither compare with nor store a report in S3, nor publish"
    )
    p.set_defaults(func=cmd_perf)


def cmd_perf(args: argparse.Namespace) -> int:
    """Exit 0 when the analysis ran, whatever it found; 2 when it could not run."""
    rt = env.runtime()
    steps = Steps(rt, flow.DAG_ID)
    names = steps.run("list_checks", flow.select_checks, rt, args.check)
    results = [steps.run("check_performance", flow.run_check, rt, name).as_dict() for name in names]
    assembled = steps.run(
        "assemble_report",
        flow.assemble_report,
        rt,
        results,
        day=flow.today(),
        run_id=steps.run_id,
        compare_to=args.compare_to,
        store=not args.no_store,
    )
    if not args.no_store:
        where = rt.store().url(assembled["key"])
        steps.run("publish_report", flow.publish_report, rt, assembled["document"], where=where)
    if args.json:
        json.dump(assembled["document"], sys.stdout, indent=2, default=str)  # checks in their order
        sys.stdout.write("\n")
    if args.markdown or not args.json:
        sys.stdout.write(assembled["markdown"])
    return 0
