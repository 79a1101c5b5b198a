"""The TLS procedure's steps, defined once: ``tls_cert_check``'s tasks and ``stellar-ops certs``.

1. :func:`list_domains`: the configured domains, or the subset asked for;
2. :func:`probe_domain` (one per domain): probe, log, push metrics, alert;
3. :func:`renew_domain` (one per domain): when due or forced, certbot, nginx reload, re-probe; it
   fails unless the served certificate changed (new serial) and its expiry moved later;
4. :func:`record_results`: every domain's final state in ``<backup.prefix>tls/latest.json``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from stellar_ops.core.alerts import Finding, info_message
from stellar_ops.core.errors import ConfigError, StellarOpsError
from stellar_ops.core.metrics import Metric
from stellar_ops.probes.tls import STATES, Target, TlsProbe, probe_many, probe_target
from stellar_ops.runtime import Runtime
from stellar_ops.tls import renewal
from stellar_ops.tls.config import TlsConfig, TlsDomain

DAG_ID = "tls_cert_check"
PROCEDURE = "tls"
ALERT_EXPIRING = "TLSCertExpiringSoon"
ALERT_UNREACHABLE = "TLSEndpointUnreachable"
RUNBOOK = "RB-004"
ALERTING_STATES = ("critical", "expired", "invalid")
# The states a renewal can fix, when under the threshold; invalid and unreachable only when forced
# (invalid) or never (unreachable: a renewal could not be verified).
RENEWABLE_STATES = ("ok", "warning", "critical", "expired")
# The fields of each domain in latest.json (the morning health check reads exactly these).
LATEST_FIELDS = ("host", "port", "server_name", "state", "days_left", "not_after", "error")


def latest_key(rt: Runtime) -> str:
    return f"{rt.config.backup.prefix}tls/latest.json"


def list_domains(rt: Runtime, chosen: Iterable[str] | None = None) -> list[TlsDomain]:
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


def _report(rt: Runtime, result: TlsProbe) -> None:
    line = describe(result)
    (rt.say if result.state == "ok" else rt.warn)(line)
    rt.publish_metrics(DAG_ID, metrics_for(result), grouping={"domain": result.label})


def probe_domain(rt: Runtime, domain: TlsDomain, *, alert: bool = True) -> TlsProbe:
    """Probe one domain, log its state, push its metrics and send its alert (if one is due)."""
    result = probe_target(domain.target(), **_probe_options(rt.config.tls))
    _report(rt, result)
    finding = finding_for(result)
    if alert and finding is not None:
        rt.alert(finding)
    return result


def probe_domains(rt: Runtime, domains: list[TlsDomain], *, alert: bool = True) -> list[TlsProbe]:
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


def renewal_reason(rt: Runtime, before: Mapping[str, Any], *, force: bool) -> str | None:
    """Why ``before`` (a probe as a dict) is renewed now, or None when it is not."""
    settings = rt.config.tls
    state, days = before["state"], before.get("days_left")
    if state == "unreachable":
        if force:
            rt.warn(
                f"{before['domain']} is unreachable: not renewing, since the result could not be verified"
            )
        return None
    if force:
        return "forced renewal"
    if not settings.renew:
        return None
    if state in RENEWABLE_STATES and days is not None and days < settings.renew_below_days:
        return f"{days:.1f} days left, under tls.renew_below_days ({settings.renew_below_days:g})"
    return None


def _runner(rt: Runtime) -> renewal.Runner:
    if rt.config.tls.executor == "local":
        return renewal.LocalRunner()
    client = rt.resources.docker()
    if client is None:
        raise ConfigError(
            "tls.executor is docker but no Docker connection is configured (connections.docker)"
        )
    return renewal.DockerRunner(client)


def renew_domain(
    rt: Runtime, domain: TlsDomain, before: Mapping[str, Any], *, force: bool
) -> dict[str, Any] | None:
    """Renew when due (or forced), reload nginx, re-probe; None when no renewal is due.

    Fails unless the re-probe sees a new serial with a later notAfter. certbot failing leaves the
    served certificate alone (certbot swaps ``live/`` only after issuance) and nginx unreloaded.
    """
    reason = renewal_reason(rt, before, force=force)
    if reason is None:
        rt.say(f"{domain.label}: no renewal due ({before['state']})")
        return None
    settings = rt.config.tls
    rt.say(f"{domain.label}: renewing certificate {domain.lineage} ({reason})")
    runner = _runner(rt)
    certbot = renewal.run_certbot(runner, settings, domain)
    rt.say(f"certbot {settings.certbot_action} of {domain.lineage} succeeded:\n{certbot.tail()}")
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
    return {"domain": domain.label, "reason": reason, "before": dict(before), "after": after.as_dict()}


def _reprobe(rt: Runtime, domain: TlsDomain, before: Mapping[str, Any]) -> TlsProbe:
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
    rt: Runtime,
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
        if renewed:
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
    return {"key": key, "states": states}


def describe_renewal(renewed: Mapping[str, Any]) -> str:
    before, after = renewed["before"], renewed["after"]
    return (
        f"{renewed['domain']}: renewed ({renewed['reason']}); serial {before.get('serial')} -> "
        f"{after.get('serial')}, expiry {before.get('not_after')} -> {after.get('not_after')}"
    )
