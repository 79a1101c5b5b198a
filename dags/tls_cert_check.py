"""
# tls_cert_check: certificate expiry on the verified chain, certbot renewal, nginx reload

**Schedule:** 00:00 and 12:00 UTC. **Severity:** P2 (TLSCertExpiringSoon, respond within 1 hour).
**Runbook:** RB-004 *TLS certificate expiring, expired or invalid*. **Owner:** platform.

## What it does
1. `list_domains`: `tls.domains` from the config, or the subset named in the `domains` param.
2. `probe_certificate` (one mapped task per domain; its label in the grid is the state and the
   days left): a real TLS handshake verified against the system CAs or the domain's `ca_bundle`,
   with hostname checking. Days left count to the earliest notAfter of the whole verified chain,
   so an intermediate that expires before the leaf counts. States: `ok`, `warning` (under
   `tls.warning_days`), `critical` (under `tls.critical_days`), `expired`, `invalid` (untrusted
   chain, wrong hostname, self-signed) and `unreachable` (DNS, refused, timeout). Pushes
   `stellar_tls_cert_expiry_days{domain}` and `stellar_tls_cert_state{domain,state}`;
   `critical`, `expired` and `invalid` alert TLSCertExpiringSoon (P2), `unreachable` alerts
   TLSEndpointUnreachable (P2).
3. `renew_certificate` (mapped): under `tls.renew_below_days`, or with `force_renewal`, runs
   certbot (`tls.certbot_*`), reloads nginx (`tls.nginx_reload_command`), probes again and
   fails unless the served certificate has a new serial and a later expiry; a success posts the
   old and new expiry. Each renewal is recorded in `<backup.prefix>tls/renewals/<cert_name>.json`
   as soon as certbot succeeded, and no certificate is renewed again within
   `tls.min_renewal_interval` (24 h) of its last renewal unless `force_renewal` is set: a real
   CA bans accounts that renew too often. A new certificate still under `tls.renew_below_days`
   (the CA issues shorter certificates) alerts TLSCertShortLifetime (P3) once: "the CA issues
   N-day certificates, lower `tls.renew_below_days` below N"; until then its state (`warning`)
   stays in the metrics and `latest.json`, later runs neither renew it nor alert again, and it is
   renewed only under a third of its lifetime. Skipped when nothing is renewed; the grid label
   says why (`not due`, `within tls.min_renewal_interval`, `the CA issues N-day certificates`).
   Unreachable domains are never renewed.
4. `record_results`: writes every domain's final state to `<backup.prefix>tls/latest.json`
   (read by the morning health check). It runs even when a renewal failed.
5. `confirm_success`: the run's verdict: green when every renewal succeeded or was skipped (not
   due, within the interval, short certificates), red when any renewal failed.

## Is it safe to re-run?
Yes. Probing changes nothing. A renewal happens only under the threshold and at most once per
`tls.min_renewal_interval`, or when forced (`force_renewal` ignores the interval: mind the CA's
rate limits). A certbot failure leaves the served certificate in place (certbot swaps `live/`
only after a successful issuance) and nginx unreloaded. A backfilled run probes the certificates
as they are now (a past check cannot be made again) and renews only what is due now.

## When it fails
- *certbot renew of X failed*: read certbot's output in the log (ACME server reachable? webroot
  served by nginx on port 80? rate limits?). The old certificate is still served: fix and clear.
- *still serves the certificate with serial ...*: nginx does not serve `live/<cert_name>/`, or
  the reload did not reach it; check the nginx config and `tls.nginx_reload_command`. The
  renewal is recorded: fix and reload nginx rather than renewing again.
- *nginx reload failed*: `nginx -t` to find the config error.
- *tls.domains is empty*: configure the endpoints in `stellar_ops_config`.
- *... is not a renewal record*: the file under `tls/renewals/` is damaged; delete it (the next
  due run may then renew at once).
- TLSCertShortLifetime: lower `tls.renew_below_days` (and `tls.warning_days`,
  `tls.critical_days`) below the CA's certificate lifetime in `stellar_ops_config`.

## Triage
`expired` or `invalid` on a customer-facing domain is customer impact: page the owner now.
`critical` means the automatic renewal has failed for two weeks: renew by hand
(`stellar-ops certs renew --domain D --force`). `unreachable` is an outage of the endpoint, not
a certificate problem: follow RB-001.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param, task

from stellar_ops.adapters import tls as steps
from stellar_ops.adapters.common.dag import procedure_dag
from stellar_ops.adapters.common.queues import docker_queue


@procedure_dag(
    "tls_cert_check",
    schedule="0 0,12 * * *",
    doc=__doc__,
    execution_timeout=timedelta(minutes=20),
    params={
        "force_renewal": Param(
            False, type="boolean", description="Renew every chosen domain through certbot, due or not"
        ),
        "domains": Param(
            [],
            type="array",
            items={"type": "string"},
            description="Domains to check (their SNI names or name@host:port); empty checks all of tls.domains",
        ),
    },
)
def tls_cert_check() -> None:
    @task
    def list_domains(params: dict | None = None) -> list:
        return steps.list_domains((params or {}).get("domains"))

    @task(map_index_template=steps.MAP_LABEL)
    def probe_certificate(domain: str) -> dict:
        return steps.probe_certificate(domain)

    @task(map_index_template=steps.MAP_LABEL, **docker_queue())  # docker exec in certbot and nginx
    def renew_certificate(probed: dict, params: dict | None = None) -> dict:
        return steps.renew_certificate(probed, bool((params or {}).get("force_renewal")))

    @task
    def record_results(probes: list, renewals: list) -> dict:
        return steps.record_results(list(probes), list(renewals))

    probes = probe_certificate.expand(domain=list_domains())
    renewals = renew_certificate.expand(probed=probes)
    record_results(probes, renewals).as_teardown()


tls_cert_check()
