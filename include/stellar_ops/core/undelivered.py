"""What is kept of a message no channel took, whoever sent it (a task's notifier or the CLI).

:func:`keep` posts it to Alertmanager as ``AlertUndelivered`` (when one is configured) and writes
its outbox copy (:func:`stellar_ops.core.delivery.outbox_document`) to
``<backup.prefix>alerts/outbox/<alert_id>.json``, which the next task of any DAG sends first. It
never raises: the caller says what became of the message, in its own log.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from stellar_ops.core import alertmanager
from stellar_ops.core.config import DeliveryConfig
from stellar_ops.core.delivery import outbox_document, outbox_keys, policy_of
from stellar_ops.core.http import HttpEndpoint


@dataclass(frozen=True)
class Kept:
    key: str  # the outbox copy's key in the bucket
    document: dict[str, Any]  # the outbox copy, written or not
    alertmanager: bool  # whether Alertmanager took it
    error: str | None = None  # why the bucket did not take it; None when it did


def keep(
    ident: str,
    payload: dict[str, Any],
    channel: str,
    failures: list[str],
    *,
    prefix: str,
    delivery: DeliveryConfig,
    find_alertmanager: Callable[[], HttpEndpoint | None],
    put_json: Callable[[str, dict[str, Any]], None],
    runbook_base_url: str | None = None,
) -> Kept:
    """Alertmanager (when ``find_alertmanager`` gives one) and the outbox; see the module doc.
    ``failures`` (why each route failed) gains Alertmanager's failure, if any."""
    told_alertmanager = False
    try:
        endpoint = find_alertmanager()
        if endpoint is not None:
            bound = policy_of(delivery).bounded(delivery.fallback_max_seconds)
            alertmanager.post(
                endpoint,
                [alertmanager.undelivered_alert(ident, payload, channel, runbook_base_url)],
                policy=bound,
            )
            told_alertmanager = True
    except Exception as exc:  # noqa: BLE001 - the outbox below still keeps it
        failures.append(f"Alertmanager: {exc}")
    document = outbox_document(
        ident,
        payload,
        channel,
        failures,
        alertmanager=told_alertmanager,
        kept_at=datetime.now(UTC).isoformat(),
    )
    key = f"{outbox_keys(prefix)['outbox']}{ident}.json"
    try:
        put_json(key, document)
    except Exception as exc:  # noqa: BLE001 - the caller logs the whole message instead
        return Kept(key, document, told_alertmanager, error=str(exc))
    return Kept(key, document, told_alertmanager)
