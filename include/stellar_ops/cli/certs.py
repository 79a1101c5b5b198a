"""``stellar-ops certs check|renew``: the ``tls_cert_check`` steps without Airflow.

``check`` probes the chosen domains concurrently and exits 1 when any is critical, expired,
invalid or unreachable; ``renew`` renews the chosen domains when due (under the threshold, and not
within ``tls.min_renewal_interval`` of the last renewal) or with ``--force``, and proves the new
certificate is served. Both write ``<backup.prefix>tls/latest.json`` like the DAG, and a renewal
records its time where the DAG's do (``<backup.prefix>tls/renewals/``).
"""

from __future__ import annotations

import argparse
from typing import Any

from stellar_ops.cli import env
from stellar_ops.cli.output import print_json
from stellar_ops.cli.steps import Steps
from stellar_ops.core.errors import StellarOpsError
from stellar_ops.tls import flow

BAD_STATES = ("critical", "expired", "invalid", "unreachable")
JSON_FIELDS = (
    "domain",
    "host",
    "port",
    "server_name",
    "state",
    "days_left",
    "not_after",
    "chain_not_after",
    "issuer",
    "subject",
    "serial",
    "sans",
    "tls_version",
    "error",
)


def register(sub: Any) -> None:
    p = sub.add_parser("certs", help="probe TLS certificates, or renew one through certbot")
    certs = p.add_subparsers(dest="action", required=True)
    q = certs.add_parser("check", help="probe the configured domains (exit 1 if any needs action)")
    q.add_argument("--domain", action="append", default=[], help="a domain of tls.domains (repeatable)")
    q.add_argument("--json", action="store_true", help="print a JSON list of the results")
    q.add_argument("--no-alerts", action="store_true", help="do not send alerts for what is found")
    q = certs.add_parser("renew", help="renew when due, reload nginx, re-probe")
    q.add_argument("--domain", action="append", default=[], help="a domain of tls.domains (default: all)")
    q.add_argument(
        "--force", action="store_true", help="renew even when no renewal is due or the last one is recent"
    )
    p.set_defaults(func=cmd_certs)


def cmd_certs(args: argparse.Namespace) -> int:
    rt = env.runtime()
    steps = Steps(rt, flow.DAG_ID)
    domains = steps.run("list_domains", flow.list_domains, rt, args.domain)
    if args.action == "check":
        results = steps.run("probe_certificate", flow.probe_domains, rt, domains, alert=not args.no_alerts)
        dicts = [r.as_dict() for r in results]
        steps.run("record_results", flow.record_results, rt, dicts)
        if args.json:
            print_json([{k: d[k] for k in JSON_FIELDS} for d in dicts])
        else:
            for result in results:
                print(flow.describe(result))
        return 1 if any(r.state in BAD_STATES for r in results) else 0
    probes = [r.as_dict() for r in flow.probe_domains(rt, domains)]
    renewals: list[dict[str, Any]] = []
    failed: list[str] = []
    for domain, probed in zip(domains, probes, strict=True):
        try:
            renewed = steps.run("renew_certificate", flow.renew_domain, rt, domain, probed, force=args.force)
        except StellarOpsError as exc:
            failed.append(f"{domain.label}: {exc}")
            continue
        if renewed["renewed"]:
            renewals.append(renewed)
            print(flow.describe_renewal(renewed))
        else:
            print(f"{domain.label}: not renewed: {renewed['reason']}")
    steps.run("record_results", flow.record_results, rt, probes, renewals)
    if failed:
        raise StellarOpsError("renewal failed: " + " | ".join(failed))
    return 0
