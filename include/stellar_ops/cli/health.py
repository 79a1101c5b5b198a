"""``stellar-ops health``: the morning health check's checks, at once, from a terminal.

Exit status 0 when no check is critical, 1 otherwise (2 for an error of the command itself).
``--publish`` does what the DAG's summary does as well: the message, the metrics, and the
records the next check compares with.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from stellar_ops.cli import env
from stellar_ops.cli.output import print_json
from stellar_ops.health import flow
from stellar_ops.health.config import CHECK_NAMES
from stellar_ops.health.results import CheckResult


def register(sub: Any) -> None:
    p = sub.add_parser(
        "health",
        help="the morning health check: services, alerts, backups, disk, lag, certificates, WAL archive",
    )
    p.add_argument(
        "--check",
        action="append",
        choices=CHECK_NAMES,
        metavar="NAME",
        help=f"run only this check (repeatable): {', '.join(CHECK_NAMES)}",
    )
    p.add_argument(
        "--json", action="store_true", help='print {"checks": [{"name", "status", "detail", ...}]}'
    )
    p.add_argument(
        "--publish",
        action="store_true",
        help="also send the summary message, push the metrics and record what was seen, as the DAG does",
    )
    p.set_defaults(func=cmd_health)


def table(results: list[CheckResult]) -> str:
    width = max([len(r.name) for r in results] + [5])
    lines = [f"{'check'.ljust(width)}  {'state'.ljust(8)}  detail"]
    lines += [f"{r.name.ljust(width)}  {r.status.ljust(8)}  {r.detail}" for r in results]
    return "\n".join(lines)


def cmd_health(args: argparse.Namespace) -> int:
    rt = env.runtime()
    rt.procedure, rt.run_id = flow.DAG_ID, f"cli-{os.getpid()}"  # named in application_name
    results = flow.check_all(rt, args.check, record=args.publish)
    if args.publish:
        flow.summarize(rt, results, run=f"stellar-ops health (cli-{os.getpid()})")
    if args.json:
        print_json({"checks": [r.as_dict() for r in results]})
    else:
        print(table(results))
    return 1 if any(r.status == "critical" for r in results) else 0
