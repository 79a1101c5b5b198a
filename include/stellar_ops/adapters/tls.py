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


@checked
def list_domains(domains: list[str] | None) -> list[dict[str, Any]]:
    return [d.model_dump() for d in flow.list_domains(task_runtime(), domains)]


@checked
def probe_certificate(domain: dict[str, Any]) -> dict[str, Any]:
    chosen = TlsDomain.model_validate(domain)
    _label(chosen.label)
    result = flow.probe_domain(task_runtime(), chosen)
    days = f", {result.days_left:.1f} days" if result.days_left is not None else ""
    _label(f"{chosen.label}: {result.state}{days}")
    return {"domain_config": domain, **result.as_dict()}


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
    return renewed


@checked
def record_results(probes: list[dict[str, Any]], renewals: list[dict[str, Any] | None]) -> dict[str, Any]:
    return flow.record_results(task_runtime(), probes, [r for r in renewals if r and r.get("renewed")])
