"""Task bodies of ``tls_cert_check``: each runs one step of :mod:`stellar_ops.tls.flow`."""

from __future__ import annotations

from typing import Any

from stellar_ops.adapters.common.runtime import checked, current_context, task_runtime
from stellar_ops.tls import flow
from stellar_ops.tls.config import TlsDomain

# The mapped tasks' labels in the grid: each domain's state and days left.
MAP_LABEL = "{{ tls_label | default(task.map_index) }}"


def _label(text: str) -> None:
    try:
        current_context()["tls_label"] = text[:250]
    except Exception:  # noqa: BLE001 - outside a task (a direct call) there is no grid to label
        return


STATES_SHOWN = 10  # domains named in record_results' XCom (those not ok first); the log has all
SANS_SHOWN = 10  # names of a certificate in a probe's XCom: a multi-domain certificate has hundreds


def _compact(probe: dict[str, Any]) -> dict[str, Any]:
    """A probe as XCom carries it: each certificate's subject alternative names cut to the first
    ``SANS_SHOWN``, with their count (the handshake has already checked the name)."""

    def cut(document: dict[str, Any]) -> dict[str, Any]:
        sans = list(document.get("sans") or [])
        if len(sans) <= SANS_SHOWN:
            return document
        return {**document, "sans": sans[:SANS_SHOWN], "sans_count": len(sans)}

    compact = dict(cut(probe))
    if probe.get("chain"):
        compact["chain"] = [cut(cert) for cert in probe["chain"]]
    return compact


@checked
def list_domains(domains: list[str] | None) -> list[str]:
    """The chosen domains' labels, one mapped probe each: the mapped tasks read their settings from
    the config, so the list XCom holds only names."""
    return [d.label for d in flow.list_domains(task_runtime(), domains)]


def _configured(domain: str | dict[str, Any]) -> TlsDomain:
    if isinstance(domain, dict):  # a run of an earlier version mapped over the settings themselves
        return TlsDomain.model_validate(domain)
    for candidate in task_runtime().config.tls.domains:
        if candidate.label == domain:
            return candidate
    from stellar_ops.core.errors import ConfigError

    raise ConfigError(f"{domain!r} is no longer one of tls.domains: it was removed after list_domains ran")


@checked
def probe_certificate(domain: str | dict[str, Any]) -> dict[str, Any]:
    chosen = _configured(domain)
    _label(chosen.label)
    result = flow.probe_domain(task_runtime(), chosen)
    days = f", {result.days_left:.1f} days" if result.days_left is not None else ""
    _label(f"{chosen.label}: {result.state}{days}")
    return {"domain_config": chosen.model_dump(), **_compact(result.as_dict())}


@checked
def renew_certificate(probed: dict[str, Any], force_renewal: bool) -> dict[str, Any]:
    chosen = TlsDomain.model_validate(probed["domain_config"])
    _label(chosen.label)
    renewed = flow.renew_domain(task_runtime(), chosen, probed, force=force_renewal)
    if not renewed["renewed"]:
        from airflow.sdk.exceptions import AirflowSkipException

        _label(f"{chosen.label}: {renewed['summary']}")
        raise AirflowSkipException(f"{chosen.label}: not renewed: {renewed['reason']}")
    after = renewed["after"]
    _label(f"{chosen.label}: renewed, {after['state']}, {after['days_left']:.1f} days")
    return {**renewed, "before": _compact(renewed["before"]), "after": _compact(after)}


@checked
def record_results(probes: list[dict[str, Any]], renewals: list[dict[str, Any] | None]) -> dict[str, Any]:
    recorded = flow.record_results(task_runtime(), probes, [r for r in renewals if r and r.get("renewed")])
    # the record in S3 (recorded["key"]) has every domain; XCom the counts and the worst few
    states: dict[str, str] = recorded["states"]
    worst = sorted(states, key=lambda label: (states[label] == "ok", label))[:STATES_SHOWN]
    counts: dict[str, int] = {}
    for state in states.values():
        counts[state] = counts.get(state, 0) + 1
    return {
        **{k: v for k, v in recorded.items() if k != "states"},
        "domains": len(states),
        "counts": counts,
        "states": {label: states[label] for label in worst},
    }
