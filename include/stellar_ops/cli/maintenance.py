"""``stellar-ops maintenance``: the ``db_maintenance`` steps in order."""

from __future__ import annotations

import argparse
from typing import Any

from stellar_ops.cli import env
from stellar_ops.cli.steps import Steps
from stellar_ops.maintenance import flow


def register(sub: Any) -> None:
    p = sub.add_parser("maintenance", help="VACUUM ANALYZE with a bloat report")
    p.add_argument("--tables", nargs="*", default=[], help="schema.table names (default: config)")
    p.add_argument("--report-only", action="store_true", help="only print the bloat report")
    p.set_defaults(func=cmd_maintenance)


def cmd_maintenance(args: argparse.Namespace) -> int:
    """Run now, whatever the window: an operator at the terminal asked for it."""
    rt = env.runtime()
    steps = Steps(rt, flow.DAG_ID)
    status = steps.run("check_pg_stat_statements", flow.check_pg_stat_statements, rt)
    before = steps.run("measure_bloat", flow.measure_bloat, rt, args.tables)
    if args.report_only:
        return 0
    vacuumed = steps.run("vacuum_analyze", flow.vacuum_analyze, rt, args.tables)
    bloat = steps.run("report_bloat", flow.report_bloat, rt, [row.as_dict() for row in before], args.tables)
    statements = {"installed": status.installed, "preloaded": status.preloaded, "warning": status.warning}
    steps.run("send_summary", flow.send_summary, rt, statements, vacuumed, bloat)
    return 0
