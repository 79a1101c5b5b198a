"""The TLS procedure's steps, defined once: ``tls_cert_check``'s tasks and ``stellar-ops certs``.

1. :func:`list_domains`: the configured domains, or the subset asked for;
2. :func:`probe_domain` (one per domain): probe, log, push metrics, alert;
3. :func:`renew_domain` (one per domain): when due (:mod:`stellar_ops.tls.policy`: under the
   threshold, not within ``tls.min_renewal_interval`` of the last renewal) or forced, certbot,
   nginx reload, re-probe; it fails unless the served certificate changed (new serial) and its
   expiry moved later; a new certificate still under the threshold alerts once;
4. :func:`record_results`: every domain's final state in ``<backup.prefix>tls/latest.json``; the
   Pushgateway groups of domains no longer configured are deleted (:func:`forget_removed_domains`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Protocol

from stellar_ops.catalogue.location import BackupLocation
from stellar_ops.core import metrics
from stellar_ops.core.alerts import Finding, info_message
from stellar_ops.core.errors import ConfigError, StellarOpsError
from stellar_ops.core.metrics import Metric
from stellar_ops.probes.tls import STATES, Target, TlsProbe, probe_many, probe_target
from stellar_ops.runtime import Runtime, RuntimeConfig
from stellar_ops.tls import policy, renewal
from stellar_ops.tls.config import TlsConfig, TlsDomain

DAG_ID = "tls_cert_check"
PROCEDURE = "tls"
ALERT_EXPIRING = "TLSCertExpiringSoon"
ALERT_UNREACHABLE = "TLSEndpointUnreachable"
ALERT_SHORT_LIFETIME = "TLSCertShortLifetime"
RUNBOOK = "RB-004"
ALERTING_STATES = ("critical", "expired", "invalid")
# The fields of each domain in latest.json (the morning health check reads exactly these).
LATEST_FIELDS = ("host", "port", "server_name", "state", "days_left", "not_after", "error")


class TlsSections(RuntimeConfig, Protocol):
    """The sections tls_cert_check's steps read: ``backup`` (where), ``tls``, and the runtime's own."""

    @property
    def backup(self) -> BackupLocation: ...
    @property
    def tls(self) -> TlsConfig: ...


def latest_key(rt: Runtime[TlsSections]) -> str:
    return f"{rt.config.backup.prefix}tls/latest.json"


def list_domains(rt: Runtime[TlsSections], chosen: Iterable[str] | None = None) -> list[TlsDomain]:
    """``tls.domains``, or those named in ``chosen`` (by label, SNI name or host), in config order."""
    settings = rt.config.tls
    if not settings.domains:
        raise ConfigError("tls.domains is empty: configure the TLS endpoints to check")
    names = [name for name in (chosen or []) if name]
    if not names:
        return list(settings.domains)
    picked: list[TlsDomain] = []
    for name in names:
        try:
            domain = settings.domain(name)
        except KeyError as exc:
            raise ConfigError(str(exc.args[0])) from None
        if domain not in picked:
            picked.append(domain)
    return picked


def _probe_options(settings: TlsConfig) -> dict[str, Any]:
    return {
        "connect_timeout": settings.connect_timeout_seconds,
        "handshake_timeout": settings.handshake_timeout_seconds,
        "warning_days": settings.warning_days,
        "critical_days": settings.critical_days,
    }


def describe(result: TlsProbe) -> str:
    """One line: what was found, as the log, the grid and the alert say it."""
    where = result.label
    if result.state == "unreachable":
        return f"{where}: unreachable ({result.error})"
    days = f"{result.days_left:.1f} days left" if result.days_left is not None else "expiry unknown"
    until = f" (until {result.chain_not_after:%Y-%m-%d %H:%M} UTC)" if result.chain_not_after else ""
    line = f"{where}: {result.state}, {days}{until}"
    if result.expiring_subject and result.subject and result.expiring_subject != result.subject:
        line += f"; the chain's first expiry is {result.expiring_subject}, before the leaf"
    if result.error:
        line += f"; {result.error}"
    return line


def metrics_for(result: TlsProbe) -> list[Metric]:
    label = result.label
    points = [
        Metric(
            "stellar_tls_cert_state",
            1.0 if state == result.state else 0.0,
            "1 for the TLS endpoint's current state (ok, warning, critical, expired, invalid, unreachable)",
            {"domain": label, "state": state},
        )
        for state in STATES
    ]
    if result.days_left is not None:
        points.append(
            Metric(
                "stellar_tls_cert_expiry_days",
                float(result.days_left),
                "Days until the earliest notAfter of the served certificate chain",
                {"domain": label},
            )
        )
    return points


def finding_for(result: TlsProbe) -> Finding | None:
    """The alert a probe result calls for: none for ok and warning (renewal handles those)."""
    labels = {"domain": result.label, "state": result.state}
    details = tuple(
        d
        for d in (
            f"endpoint {result.host}:{result.port}, SNI {result.server_name}",
            f"issuer {result.issuer}" if result.issuer else "",
            f"leaf notAfter {result.not_after:%Y-%m-%d %H:%M} UTC" if result.not_after else "",
            f"error: {result.error}" if result.error else "",
        )
        if d
    )
    if result.state == "unreachable":
        return Finding(
            alert_name=ALERT_UNREACHABLE,
            severity="P2",
            summary=f"{result.label} is unreachable: {result.error}",
            runbook=RUNBOOK,
            dag_id=DAG_ID,
            details=details,
            labels=labels,
        )
    if result.state in ALERTING_STATES:
        return Finding(
            alert_name=ALERT_EXPIRING,
            severity="P2",
            summary=describe(result),
            runbook=RUNBOOK,
            dag_id=DAG_ID,
            details=details,
            labels=labels,
        )
    return None


def _report(rt: Runtime[TlsSections], result: TlsProbe) -> None:
    line = describe(result)
    (rt.say if result.state == "ok" else rt.warn)(line)
    rt.publish_metrics(DAG_ID, metrics_for(result), grouping={"domain": result.label})


def probe_domain(rt: Runtime[TlsSections], domain: TlsDomain, *, alert: bool = True) -> TlsProbe:
    """Probe one domain, log its state, push its metrics and send its alert (if one is due)."""
    result = probe_target(domain.target(), **_probe_options(rt.config.tls))
    _report(rt, result)
    finding = finding_for(result)
    if alert and finding is not None:
        rt.alert(finding)
    return result


def probe_domains(
    rt: Runtime[TlsSections], domains: list[TlsDomain], *, alert: bool = True
) -> list[TlsProbe]:
    """:func:`probe_domain` for many domains, probing at most ``tls.max_concurrency`` at once."""
    settings = rt.config.tls
    results = probe_many(
        [d.target() for d in domains], max_workers=settings.max_concurrency, **_probe_options(settings)
    )
    for result in results:
        _report(rt, result)
        finding = finding_for(result)
        if alert and finding is not None:
            rt.alert(finding)
    return results


def _runner(rt: Runtime[TlsSections]) -> renewal.Runner:
    if rt.config.tls.executor == "local":
        return renewal.LocalRunner()
    client = rt.resources.docker()
    if client is None:
        raise ConfigError(
            "tls.executor is docker but no Docker connection is configured (connections.docker)"
        )
    return renewal.DockerRunner(client)


def renewal_key(rt: Runtime[TlsSections], domain: TlsDomain) -> str:
    """Where the last renewal of ``domain``'s certificate (its certbot lineage) is recorded."""
    return f"{rt.config.backup.prefix}tls/renewals/{domain.lineage}.json"


def last_renewal(rt: Runtime[TlsSections], domain: TlsDomain) -> policy.RenewalRecord | None:
    """The recorded last renewal of ``domain``'s certificate, by any run or worker; None if never."""
    key = renewal_key(rt, domain)
    store = rt.store()
    if not store.exists(key):
        return None
    document = store.get_json(key)
    try:
        if not isinstance(document, dict):
            raise ValueError(f"a JSON object was expected, got {type(document).__name__}")
        return policy.RenewalRecord.from_dict(document)
    except ValueError as exc:
        raise StellarOpsError(
            f"{store.url(key)} is not a renewal record ({exc}): fix or delete it (it only holds the "
            f"last renewal time and alert of {domain.lineage})"
        ) from None


def _save_renewal(rt: Runtime[TlsSections], domain: TlsDomain, record: policy.RenewalRecord) -> None:
    rt.store().put_json(renewal_key(rt, domain), record.as_dict())


def renew_domain(
    rt: Runtime[TlsSections],
    domain: TlsDomain,
    before: Mapping[str, Any],
    *,
    force: bool,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Renew when :func:`stellar_ops.tls.policy.decide` says so (or forced), reload nginx, re-probe.

    Returns ``{"domain", "renewed": False, "reason", "summary"}`` when nothing is renewed. Fails
    unless the re-probe sees a new serial with a later notAfter. certbot failing leaves the served
    certificate alone (certbot swaps ``live/`` only after issuance) and nginx unreloaded. The
    renewal time is recorded as soon as certbot succeeded: the CA counts the issuance even when
    the new certificate does not get served.
    """
    settings = rt.config.tls
    last = last_renewal(rt, domain)
    now = now or datetime.now(UTC)  # the wall clock, not the run's slot: the CA's limits count real time
    decision = policy.decide(settings, before, last, now=now, force=force)
    if not decision.renew:
        if force:  # only an unreachable endpoint refuses a forced renewal
            rt.warn(f"{domain.label} is unreachable: not renewing, since the result could not be verified")
        rt.say(f"{domain.label}: not renewing {domain.lineage}: {decision.reason}")
        return {
            "domain": domain.label,
            "renewed": False,
            "reason": decision.reason,
            "summary": decision.summary,
        }
    reason = decision.reason
    if force and last is not None and now - last.renewed_at < settings.min_renewal_interval:
        rt.warn(
            f"{domain.lineage} was renewed {policy.span(now - last.renewed_at)} ago: forced past "
            f"tls.min_renewal_interval ({policy.span(settings.min_renewal_interval)}); mind the CA's rate limits"
        )
    rt.say(f"{domain.label}: renewing certificate {domain.lineage} ({reason})")
    runner = _runner(rt)
    certbot = renewal.run_certbot(runner, settings, domain)
    rt.say(f"certbot {settings.certbot_action} of {domain.lineage} succeeded:\n{certbot.tail()}")
    previous_alert = last.short_lifetime_alert if last else None
    record = policy.RenewalRecord(
        domain.lineage, domain.label, datetime.now(UTC), short_lifetime_alert=previous_alert
    )
    try:
        _save_renewal(rt, domain, record)
    except StellarOpsError as exc:  # serve the new certificate first; the final save raises
        rt.warn(f"the renewal of {domain.lineage} could not be recorded yet: {exc}")
    renewal.reload_nginx(runner, settings)
    rt.say(f"nginx reloaded ({' '.join(settings.nginx_reload_command)})")
    after = _reprobe(rt, domain, before)
    _report(rt, after)
    old_serial, old_end = before.get("serial"), before.get("not_after")
    if after.serial is None or after.serial == old_serial:
        raise renewal.RenewalError(
            f"{domain.label} still serves the certificate with serial {old_serial} after certbot renewed "
            f"{domain.lineage} and nginx was reloaded: check that nginx serves live/{domain.lineage}/ "
            f"(state now: {describe(after)})"
        )
    if old_end and after.not_after is not None and after.not_after <= datetime.fromisoformat(old_end):
        raise renewal.RenewalError(
            f"{domain.label} serves a new certificate (serial {after.serial}) whose notAfter "
            f"{after.not_after.isoformat()} is not later than the old one's ({old_end})"
        )
    served = after.as_dict()
    lifetime = policy.lifetime_days(served)
    old = f"{old_end} ({before.get('days_left')} days)" if old_end else "unknown"
    new = f"{after.not_after.isoformat() if after.not_after else 'unknown'} ({after.days_left} days)"
    rt.notify(
        info_message(
            f":lock: TLS certificate renewed: {domain.label} ({domain.lineage}), {reason}\n"
            f"*Old expiry:* {old}   *serial* {old_serial}\n"
            f"*New expiry:* {new}   *serial* {after.serial}\n"
            f"*State now:* {after.state}"
        )
    )
    short_alert = _short_lifetime(rt, domain, after, lifetime, previous_alert)
    _save_renewal(
        rt,
        domain,
        replace(record.served(after.serial, after.not_after, lifetime), short_lifetime_alert=short_alert),
    )
    return {
        "domain": domain.label,
        "renewed": True,
        "reason": reason,
        "before": dict(before),
        "after": served,
    }


def _short_lifetime(
    rt: Runtime[TlsSections],
    domain: TlsDomain,
    after: TlsProbe,
    lifetime: int | None,
    previous: policy.ShortLifetimeAlert | None,
) -> policy.ShortLifetimeAlert | None:
    """Alert once that the new certificate is still under the threshold; the alert to remember.

    None once a renewal gives a certificate above the threshold again, so that a later return of
    short certificates is alerted anew.
    """
    settings = rt.config.tls
    if after.days_left is None or after.days_left >= settings.renew_below_days:
        return None
    days = lifetime if lifetime is not None else max(1, round(after.days_left))
    if not policy.short_lifetime_alert_due(previous, days, settings.renew_below_days):
        assert previous is not None
        rt.warn(
            f"{domain.label}: the new certificate ({after.days_left:.1f} days) is still under "
            f"tls.renew_below_days ({settings.renew_below_days:g}); already alerted at "
            f"{previous.sent_at.isoformat()}"
        )
        return previous
    rt.alert(short_lifetime_finding(rt.config.tls, domain, after, days))
    return policy.ShortLifetimeAlert(days, settings.renew_below_days, datetime.now(UTC))


def short_lifetime_finding(settings: TlsConfig, domain: TlsDomain, after: TlsProbe, lifetime: int) -> Finding:
    floor = lifetime * policy.SHORT_LIFETIME_SHARE
    return Finding(
        alert_name=ALERT_SHORT_LIFETIME,
        severity="P3",
        summary=(
            f"{domain.label}: the CA issues {lifetime}-day certificates, under tls.renew_below_days "
            f"({settings.renew_below_days:g}): lower tls.renew_below_days below {lifetime} "
            f"(and tls.warning_days and tls.critical_days with it)"
        ),
        runbook=RUNBOOK,
        dag_id=DAG_ID,
        details=(
            f"the certificate {domain.lineage} was renewed and is still due: {describe(after)}",
            f"until the threshold is lowered, it is renewed under {floor:.1f} days left (a third of "
            f"its lifetime), not at every run; this alert is not repeated",
        ),
        labels={"domain": domain.label, "state": after.state},
    )


def _reprobe(rt: Runtime[TlsSections], domain: TlsDomain, before: Mapping[str, Any]) -> TlsProbe:
    """Probe until a new certificate is served three times in a row, or attempts run out.

    After a reload nginx's old workers drain for a moment and may still answer with the old
    certificate: one new answer is not yet proof, three in a row ``tls.reload_settle_seconds``
    apart are.
    """
    settings = rt.config.tls
    options = _probe_options(settings)
    new_in_a_row = 0
    result = probe_target(domain.target(), **options)
    for _ in range(settings.reprobe_attempts + 2):
        renewed = result.serial is not None and result.serial != before.get("serial")
        new_in_a_row = new_in_a_row + 1 if renewed else 0
        if new_in_a_row >= 3:
            break
        time.sleep(settings.reload_settle_seconds)
        result = probe_target(domain.target(), **options)
    return result


def latest_entry(result: Mapping[str, Any]) -> dict[str, Any]:
    """One domain as ``latest.json`` holds it (``not_after`` is the leaf's)."""
    return {name: result.get(name) for name in LATEST_FIELDS}


def record_results(
    rt: Runtime[TlsSections],
    probes: Iterable[Mapping[str, Any]],
    renewals: Iterable[Mapping[str, Any] | None] = (),
    *,
    checked_at: datetime | None = None,
) -> dict[str, Any]:
    """Write every domain's final state (after any renewal) to ``<backup.prefix>tls/latest.json``.

    Domains not probed in this run (a run for a subset) keep their entries from the previous file.
    """
    final: dict[str, Mapping[str, Any]] = {p["domain"]: p for p in probes}
    for renewed in renewals:
        if renewed and renewed.get("renewed", True):
            final[renewed["domain"]] = renewed["after"]
    key = latest_key(rt)
    store = rt.store()
    entries = {label: latest_entry(result) for label, result in final.items()}
    previous: list[dict[str, Any]] = []
    try:
        if store.exists(key):
            document = store.get_json(key)
            previous = list(document.get("domains", [])) if isinstance(document, dict) else []
    except StellarOpsError as exc:
        rt.warn(f"the previous {key} cannot be read ({exc}): writing this run's domains only")
    configured = {d.label for d in rt.config.tls.domains}
    kept = []
    for entry in previous:
        label = Target(str(entry.get("host")), int(entry.get("port") or 443), entry.get("server_name")).label
        if label not in entries and label in configured:
            kept.append(entry)
    document = {
        "checked_at": (checked_at or datetime.now(UTC)).astimezone(UTC).isoformat(),
        "domains": kept + list(entries.values()),
    }
    store.put_json(key, document)
    states = {label: entry["state"] for label, entry in entries.items()}
    rt.say(f"wrote {store.url(key)}: {', '.join(f'{k} {v}' for k, v in states.items())}")
    return {"key": key, "states": states, "forgotten": forget_removed_domains(rt)}


def forget_removed_domains(rt: Runtime[TlsSections]) -> list[str]:
    """Delete the Pushgateway groups of the domains no longer in ``tls.domains``: the last state a
    removed domain pushed would stay there, and alert, forever. The labels deleted."""
    gateway = rt.resources.endpoint("pushgateway")
    if gateway is None:
        return []
    configured = {d.label for d in rt.config.tls.domains}
    if not configured:  # a config mistake must not wipe every domain's alerts
        rt.warn("tls.domains is empty: no domain's metrics are deleted from the Pushgateway")
        return []
    settings = rt.config.metrics
    removed = metrics.prune_groups(
        gateway.base_url,
        job=settings.job,
        procedure=DAG_ID,
        label="domain",
        keep=configured,
        timeout=settings.timeout_seconds,
    )
    if removed:
        rt.say(f"deleted the Pushgateway groups of domains no longer configured: {', '.join(removed)}")
    return removed


def describe_renewal(renewed: Mapping[str, Any]) -> str:
    before, after = renewed["before"], renewed["after"]
    return (
        f"{renewed['domain']}: renewed ({renewed['reason']}); serial {before.get('serial')} -> "
        f"{after.get('serial')}, expiry {before.get('not_after')} -> {after.get('not_after')}"
    )
