"""``stellar-ops monitoring rules``: the Prometheus alert rules, rendered for this deployment.

The rules file is static, but its runbook links are this deployment's (where docs/runbooks.md is
published) and its silence thresholds follow the procedures' schedules: render it here, from
the same taxonomy the DAGs use, rather than editing a copy
(:mod:`stellar_ops.core.alert_rules`).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from stellar_ops.cli.env import config_from_env
from stellar_ops.core.alert_rules import render
from stellar_ops.core.errors import ConfigError
from stellar_ops.registry import CATALOGUE


def register(sub: Any) -> None:
    p = sub.add_parser("monitoring", help="what Prometheus needs: the alert rules of the pushed metrics")
    cmds = p.add_subparsers(dest="monitoring_command", required=True)
    rules = cmds.add_parser(
        "rules", help="print the Prometheus rules file (stellar_ops_rules.yml), with absolute runbook links"
    )
    rules.add_argument(
        "--runbook-base-url",
        help="where docs/runbooks.md is published, e.g. https://runbooks.example.org/ops "
        "(default: alerts.runbook_base_url of the config)",
    )
    rules.add_argument("--job", help="the Pushgateway job the procedures push to (default: metrics.job)")
    rules.set_defaults(func=cmd_rules)


def cmd_rules(args: argparse.Namespace) -> int:
    base_url, job = args.runbook_base_url, args.job
    if base_url is None or job is None:  # both given: the config is not read (make docs)
        config = config_from_env()
        base_url = base_url or config.alerts.runbook_base_url
        job = job or config.metrics.job
    if not base_url:
        raise ConfigError(
            "no runbook base URL: pass --runbook-base-url or set alerts.runbook_base_url, so that the "
            "alerts' runbook_url annotations are links a receiver can open"
        )
    sys.stdout.write(render(CATALOGUE.values(), runbook_base_url=base_url, job=job))
    return 0
