"""An alert is delivered or kept: routes, fallbacks, and the outbox the next task sends first.

:func:`send_or_keep` (what ``AirflowResources.send_message`` does) posts a message to its channel
with the retries of :func:`stellar_ops.core.delivery.deliver` (``alerts.delivery.max_seconds``).
When that channel does not take it:

1. the other channel, marked so (paging falls back to ops and ops to paging), within
   ``alerts.delivery.fallback_max_seconds``;
2. when that fails too, Alertmanager (if its connection exists), as an ``AlertUndelivered`` alert
   with the message's ``alert_id`` label, and always the outbox: ``<backup.prefix>alerts/outbox/
   <alert_id>.json`` in the backups bucket;
3. when even the bucket fails, the whole message at ERROR in the task log.

It never raises, so the notifier that sends a task's failure never hides that failure.

:func:`drain` runs at the start of every task (``on_execute_callback`` in ``task_defaults``): one
LIST of the outbox when it is empty; else each kept message is claimed (a conditional put,
``If-None-Match: *``, of ``alerts/claims/<alert_id>``, so two runs draining at once never post one
message twice), skipped if ``alerts/sent/<alert_id>`` says it went out already, sent to its own
channel within ``alerts.delivery.drain_max_seconds``, then marked sent and deleted.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from stellar_ops.core import alertmanager, undelivered
from stellar_ops.core.alertmanager import UNDELIVERED_ALERT, undelivered_alert
from stellar_ops.core.alerts import rerouted, unpaged, with_alert_id
from stellar_ops.core.config import Channel
from stellar_ops.core.delivery import (
    Delivered,
    DeliveryPolicy,
    alert_id,
    outbox_keys,
    policy_of,
)
from stellar_ops.core.errors import MissingConnectionError, StellarOpsError
from stellar_ops.registry import StellarOpsConfig
from stellar_ops.storage.s3 import S3Store

log = logging.getLogger(__name__)

OTHER: dict[str, Channel] = {"paging": "ops", "ops": "paging"}
# a claim older than this is a drain that died mid-way: another may take the message over
MIN_CLAIM_STALE = timedelta(minutes=10)


def policy(config: StellarOpsConfig) -> DeliveryPolicy:
    return policy_of(config.alerts.delivery)


def keys(config: StellarOpsConfig) -> dict[str, str]:
    return outbox_keys(config.backup.prefix)


@dataclass(frozen=True)
class Route:
    conn_id: str
    channel: Channel
    payload: dict[str, Any]


def _defined(conn_id: str | None, purpose: str) -> bool:
    from stellar_ops.adapters.common.connections import _connection

    if not conn_id:
        return False
    try:
        _connection(conn_id, purpose)  # masks the webhook token too
    except MissingConnectionError:
        return False
    return True


def own_route(config: StellarOpsConfig, payload: dict[str, Any], channel: Channel) -> Route | None:
    """Where ``channel``'s messages go: a page without a paging channel goes to ops, marked so."""
    ops, paging = config.connections.alerts, config.connections.paging
    if channel == "paging":
        if _defined(paging, "the paging channel"):
            return Route(str(paging), "paging", payload)
        log.warning("no paging channel (connections.paging %r): paging through the ops channel", paging)
        return Route(str(ops), "ops", unpaged(payload)) if ops else None
    return Route(str(ops), "ops", payload) if ops else None


def fallback_route(config: StellarOpsConfig, payload: dict[str, Any], route: Route) -> Route | None:
    """The other channel, for a message its own did not take; None when there is no other."""
    other = OTHER[route.channel]
    conn_id = config.connections.paging if other == "paging" else config.connections.alerts
    if not conn_id or conn_id == route.conn_id or not _defined(conn_id, f"the {other} channel"):
        return None
    note = (
        "the paging channel could not be reached: this should have paged"
        if route.channel == "paging"
        else "the ops channel could not be reached: sent to the paging channel instead"
    )
    return Route(conn_id, other, rerouted(route.payload, note))


Poster = Callable[[str, dict[str, Any], DeliveryPolicy], Delivered]


def _slack_poster() -> Poster:
    from stellar_ops.adapters.common.connections import _post_slack

    return _post_slack


def post_route(route: Route, ident: str, bound: DeliveryPolicy, poster: Poster | None = None) -> str | None:
    """Post on ``route``; None when delivered, else why not (never raises)."""
    try:
        done = (poster or _slack_poster())(route.conn_id, with_alert_id(route.payload, ident), bound)
    except Exception as exc:  # noqa: BLE001 - a missing or broken connection is one more failed route
        return f"{route.channel} channel: {exc}"
    log.info("alert %s delivered to the %s channel (%d attempts)", ident, route.channel, done.attempts)
    return None


def send_or_keep(
    config: StellarOpsConfig, payload: dict[str, Any], channel: Channel, *, poster: Poster | None = None
) -> str | None:
    """Deliver ``payload`` (see the module doc); the channel it reached, or None if it was kept."""
    try:
        return _send_or_keep(config, payload, channel, poster)
    except Exception as exc:  # noqa: BLE001 - the notifier must not hide the task's own failure
        log.error(
            "alert %s could not be sent or kept (%s: %s); the message:\n%s",
            payload.get("alert_id") or "?",
            type(exc).__name__,
            exc,
            json.dumps({"channel": channel, "payload": payload}, indent=2, default=str),
        )
        return None


def _send_or_keep(
    config: StellarOpsConfig, payload: dict[str, Any], channel: Channel, poster: Poster | None
) -> str | None:
    ident = alert_id(payload)
    payload = {key: value for key, value in payload.items() if key != "alert_id"}
    bounds = policy(config)
    failures: list[str] = []
    route = own_route(config, payload, channel)
    if route is None:
        failures.append("no channel connection is configured")
    else:
        failure = post_route(route, ident, bounds, poster)
        if failure is None:
            return route.channel
        failures.append(failure)
        log.warning("alert %s: %s", ident, failure)
        other = fallback_route(config, payload, route)
        if other is not None:
            failure = post_route(
                other, ident, bounds.bounded(config.alerts.delivery.fallback_max_seconds), poster
            )
            if failure is None:
                return other.channel
            failures.append(failure)
            log.warning("alert %s: %s", ident, failure)
    keep(config, ident, payload, channel, failures)
    return None


def _alertmanager(config: StellarOpsConfig) -> Any:
    from stellar_ops.adapters.common.connections import optional_endpoint

    return optional_endpoint(config.connections.alertmanager, "Alertmanager")


def keep(
    config: StellarOpsConfig, ident: str, payload: dict[str, Any], channel: Channel, failures: list[str]
) -> None:
    """Alertmanager (when connected) and the outbox; the ERROR log when the bucket fails too."""

    def put_json(key: str, document: dict[str, Any]) -> None:
        from stellar_ops.adapters.common.connections import s3_store

        s3_store(config).put_json(key, document)

    kept = undelivered.keep(
        ident,
        payload,
        channel,
        failures,
        prefix=config.backup.prefix,
        delivery=config.alerts.delivery,
        find_alertmanager=lambda: _alertmanager(config),
        put_json=put_json,
        runbook_base_url=config.alerts.runbook_base_url,
    )
    if kept.error is not None:  # nothing else is left: the task log keeps it
        log.error(
            "alert %s was NOT delivered (%s) and could not be kept in the outbox (%s); the message:\n%s",
            ident,
            "; ".join(failures),
            kept.error,
            json.dumps(kept.document, indent=2, default=str),
        )
        return
    log.warning(
        "alert %s was not delivered (%s): kept in s3://%s/%s%s; the next task sends it first",
        ident,
        "; ".join(failures),
        config.backup.bucket,
        kept.key,
        ", and posted to Alertmanager" if kept.alertmanager else "",
    )


# -- the drain -----------------------------------------------------------------------------------


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def claim(store: S3Store, key: str, stale_after: timedelta) -> bool:
    """Take ``key`` with a conditional put (If-None-Match: * succeeds for one writer only); a claim
    older than ``stale_after`` (a drain that died) is taken over."""
    for _ in range(2):
        try:
            store.client.put_object(
                Bucket=store.bucket,
                Key=key,
                Body=datetime.now(UTC).isoformat().encode(),
                IfNoneMatch="*",
                **store.write_args,
            )
            return True
        except Exception as exc:
            if _code(exc) not in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                raise StellarOpsError(f"S3 claim {store.url(key)} failed: {exc}") from None
        head = store.head(key)
        if head is None:
            continue  # released between our put and our HEAD: try once more
        modified = head.get("LastModified")
        if not isinstance(modified, datetime) or datetime.now(UTC) - modified < stale_after:
            return False
        log.warning("taking over the stale claim %s (since %s)", store.url(key), modified.isoformat())
        store.delete(key)
    return False


@dataclass
class DrainReport:
    delivered: list[str]
    skipped: list[str]  # claimed by another drain, or sent already
    left: list[str]  # still not delivered: kept for the next task


def drain(
    config: StellarOpsConfig,
    store: S3Store,
    *,
    poster: Poster | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> DrainReport:
    """Send what the outbox keeps (see the module doc); one LIST when it is empty."""
    where = keys(config)
    report = DrainReport([], [], [])
    items = [o for o in store.list_objects(where["outbox"]) if o.key.endswith(".json")]
    if not items:
        return report
    settings = config.alerts.delivery
    started = clock()
    stale_after = max(MIN_CLAIM_STALE, timedelta(seconds=4 * settings.drain_max_seconds))
    stop = False
    for item in sorted(items, key=lambda o: o.last_modified):
        ident = item.key.rsplit("/", 1)[-1].removesuffix(".json")
        remaining = settings.drain_max_seconds - (clock() - started).total_seconds()
        if remaining <= 0 or stop:
            report.left.append(ident)
            continue
        claim_key = f"{where['claims']}{ident}"
        if not claim(store, claim_key, stale_after):
            report.skipped.append(ident)
            continue
        try:
            if store.exists(f"{where['sent']}{ident}"):  # another drain delivered it: only tidy up
                store.delete(item.key)
                report.skipped.append(ident)
                continue
            if store.head(item.key) is None:  # delivered and deleted since our LIST
                report.skipped.append(ident)
                continue
            kept = store.get_json(item.key)
            channel: Channel = "paging" if kept.get("channel") == "paging" else "ops"
            route = own_route(config, kept["payload"], channel)
            failure = (
                "no channel connection is configured"
                if route is None
                else post_route(route, ident, policy(config).bounded(remaining), poster)
            )
            if failure is not None:
                log.warning("outbox alert %s still not delivered: %s", ident, failure)
                report.left.append(ident)
                stop = True  # the channel is still down: spare this task the others' bounds
                continue
            store.put_json(f"{where['sent']}{ident}", {"alert_id": ident, "sent_at": clock().isoformat()})
            store.delete(item.key)
            report.delivered.append(ident)
            if kept.get("alertmanager"):
                _resolve_undelivered(config, ident, kept["payload"], channel)
        finally:
            store.delete(claim_key)
    _prune_sent(store, where["sent"], timedelta(days=settings.sent_retention_days), clock())
    return report


def _resolve_undelivered(
    config: StellarOpsConfig, ident: str, payload: dict[str, Any], channel: Channel
) -> None:
    document = undelivered_alert(ident, payload, channel, config.alerts.runbook_base_url)
    document["endsAt"] = datetime.now(UTC).isoformat()
    try:
        endpoint = _alertmanager(config)
        if endpoint is not None:
            alertmanager.post(endpoint, [document])
    except StellarOpsError as exc:
        log.warning("could not resolve %s %s in Alertmanager: %s", UNDELIVERED_ALERT, ident, exc)


def _prune_sent(store: S3Store, prefix: str, retention: timedelta, now: datetime) -> None:
    for item in list(store.list_objects(prefix)):
        if now - item.last_modified > retention:
            store.delete(item.key)


def quick_store(config: StellarOpsConfig) -> S3Store:
    """The backups bucket with short timeouts and one retry: a task starting while S3 is down must
    not wait out botocore's default retries before its own work."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from botocore.config import Config

    from stellar_ops.adapters.common.connections import _connection, _mask
    from stellar_ops.storage.s3 import client_config

    conn_id = config.connections.s3
    _mask((_connection(conn_id, "the backups bucket").extra_dejson or {}).get("aws_secret_access_key"))
    hook = S3Hook(aws_conn_id=conn_id)
    quick = Config(connect_timeout=3, read_timeout=10, retries={"max_attempts": 2, "mode": "standard"})
    client = hook.get_client_type(
        region_name=hook.region_name, config=client_config(hook.config).merge(quick)
    )
    return S3Store(
        client,
        config.backup.bucket,
        encryption=config.backup.server_side_encryption,
        kms_key_id=config.backup.kms_key_id,
    )


def drain_before_task(context: Any) -> None:
    """``on_execute_callback`` of every task: send the outbox first. Never fails the task."""
    from stellar_ops.adapters.common.alerting import config_or_defaults

    try:
        config = config_or_defaults()
        if not config.connections.alerts:
            return
        report = drain(config, quick_store(config))
    except MissingConnectionError as exc:  # no bucket set up here (a development stack without S3)
        log.info("no alert outbox to drain: %s", exc)
        return
    except Exception as exc:  # noqa: BLE001 - the task's own work comes first; the next task retries
        log.warning("the alert outbox could not be drained: %s", exc)
        return
    if report.delivered or report.left:
        log.info(
            "alert outbox: %d delivered (%s), %d still kept (%s)",
            len(report.delivered),
            ", ".join(report.delivered),
            len(report.left),
            ", ".join(report.left),
        )
