"""Alerts sent to Alertmanager (its v2 API), so its silences, grouping and inhibition apply.

An alert is identified by its labels (``alertname``, ``severity``, ``dag_id`` and what tells it
apart, such as ``domain``); posting it again with ``endsAt`` in the past resolves it.

An alert posted without ``endsAt`` is resolved by Alertmanager itself after its
``resolve_timeout`` (5 minutes by default), which would tell the on-call engineer a failure is over
while nothing was fixed. A procedure's failure therefore fires with ``endsAt`` set ``firing_for``
ahead (:data:`FAILURE_FIRES_FOR`), and is resolved by the run that succeeds.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from stellar_ops.core.delivery import DeliveryError, DeliveryPolicy, deliver
from stellar_ops.core.errors import StellarOpsError
from stellar_ops.core.http import HttpEndpoint
from stellar_ops.core.runbooks import runbook_link

# long enough for any procedure's next run to resolve it; bounded, so an abandoned DAG's alert ends
FAILURE_FIRES_FOR = timedelta(days=14)


def alert(
    *,
    name: str,
    severity: str,
    labels: dict[str, str],
    summary: str,
    runbook: str,
    runbook_url: str,
    generator_url: str | None = None,
    resolved: bool = False,
    firing_for: timedelta | None = None,
) -> dict[str, Any]:
    moment = datetime.now(UTC)
    now = moment.isoformat()
    document: dict[str, Any] = {
        "labels": {"alertname": name, "severity": severity, "source": "stellar_ops", **labels},
        "annotations": {"summary": summary, "runbook": runbook, "runbook_url": runbook_url},
        "startsAt": now,
    }
    if resolved:
        document["endsAt"] = now
    elif firing_for is not None:
        document["endsAt"] = (moment + firing_for).isoformat()
    if generator_url:
        document["generatorURL"] = generator_url
    return document


def post(
    endpoint: HttpEndpoint,
    alerts: list[dict[str, Any]],
    *,
    timeout: float = 10.0,
    policy: DeliveryPolicy | None = None,
) -> None:
    """Post ``alerts``, retrying 429, 5xx and connection errors within ``policy`` (by default 20 s,
    ``timeout`` per attempt: Alertmanager runs beside us, an outage longer than that is no blip)."""
    import requests

    url = endpoint.url("/api/v2/alerts")
    policy = policy or DeliveryPolicy(max_seconds=20.0, attempt_timeout=timeout)
    answered: list[str] = []

    def post_once(attempt_timeout: float) -> tuple[int, dict[str, str]]:
        response = requests.post(url, json=alerts, timeout=attempt_timeout)
        answered[:] = [response.text[:200]]
        return response.status_code, dict(response.headers)

    try:
        deliver(post_once, policy, what=f"Alertmanager at {endpoint.base_url}")
    except DeliveryError as exc:
        body = f": {answered[0]}" if answered and exc.status else ""
        raise StellarOpsError(f"{exc}{body}") from None


UNDELIVERED_ALERT = "AlertUndelivered"
UNDELIVERED_RUNBOOK = "UNDELIVERED"


def undelivered_alert(
    ident: str, payload: Mapping[str, Any], channel: str, runbook_base_url: str | None = None
) -> dict[str, Any]:
    """The Alertmanager alert of a message no channel took: its severity from its ``[P1]`` tag,
    its runbook the section on undelivered alerts."""
    text = str(payload.get("text", ""))
    headline = text.splitlines()[0] if text else ""
    tag = re.search(r"\[(P[123])\]", headline)
    severity = tag.group(1) if tag else ("P1" if channel == "paging" else "P3")
    document = alert(
        name=UNDELIVERED_ALERT,
        severity=severity,
        labels={"alert_id": ident, "channel": channel},
        summary=f"not delivered to the {channel} channel: {headline[:300]}",
        runbook=UNDELIVERED_RUNBOOK,
        runbook_url=runbook_link(UNDELIVERED_RUNBOOK, runbook_base_url),
        firing_for=FAILURE_FIRES_FOR,
    )
    document["annotations"]["description"] = text[:4000]
    return document
