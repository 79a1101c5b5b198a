"""Airflow connections turned into the pure layer's targets, with every secret masked.

:class:`AirflowResources` is what a step's :class:`~stellar_ops.runtime.Runtime` reaches them
through inside a task.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from stellar_ops.core.config import Channel
from stellar_ops.core.delivery import Delivered, DeliveryPolicy, deliver
from stellar_ops.core.errors import ConfigError, MissingConnectionError
from stellar_ops.core.http import HttpEndpoint, RedisTarget
from stellar_ops.postgres.target import SECRET_SETTINGS, PgTarget, libpq_settings
from stellar_ops.registry import StellarOpsConfig
from stellar_ops.storage.s3 import S3Store, client_config

log = logging.getLogger(__name__)


def _connection(conn_id: str, purpose: str) -> Any:
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        raise MissingConnectionError(
            f"connection {conn_id!r} ({purpose}) is not defined: add it under Admin > Connections "
            f"or as AIRFLOW_CONN_{conn_id.upper()}, or point stellar_ops_config.connections elsewhere"
        ) from None
    _mask(conn.password)
    return conn


def connection(conn_id: str, purpose: str) -> Any:
    """The Airflow connection ``conn_id`` (``purpose`` names it in errors), its password masked."""
    return _connection(conn_id, purpose)


def redis_target(conn_id: str, purpose: str) -> RedisTarget:
    """The Redis server of a redis connection, logging in as its login (an ACL user) when it has one."""
    conn = _connection(conn_id, purpose)
    extra = conn.extra_dejson or {}
    return RedisTarget(
        host=conn.host or "127.0.0.1",
        port=int(conn.port or 6379),
        db=int(extra.get("db", 0)),
        password=conn.password,
        username=conn.login,
        tls=bool(extra.get("ssl", False)),
    )


def _mask(secret: str | None) -> None:
    if secret:
        from airflow.sdk.log import mask_secret

        mask_secret(secret)


def pg_target(conn_id: str) -> PgTarget:
    conn = _connection(conn_id, "the StellarEscrow database")
    missing = [
        name
        for name, value in (("host", conn.host), ("login", conn.login), ("schema", conn.schema))
        if not value
    ]
    if missing:
        raise ConfigError(
            f"connection {conn_id!r} lacks {', '.join(missing)} (schema holds the database name)"
        )
    # Every libpq setting among the extras reaches psycopg and the client programs, as PostgresHook
    # hands its extras to the driver (its own ``cursor``, ``iam``... dropped, as it drops them).
    settings = libpq_settings(conn.extra_dejson or {}, source=f"connection {conn_id!r}'s extra")
    for name in SECRET_SETTINGS:
        _mask(settings.get(name))
    return PgTarget.build(
        host=conn.host,
        port=int(conn.port or 5432),
        user=conn.login,
        dbname=conn.schema,
        password=conn.password,
        settings=settings,
    )


def s3_store(config: StellarOpsConfig) -> S3Store:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    conn_id = config.connections.s3
    conn = _connection(conn_id, "the backups bucket")
    _mask((conn.extra_dejson or {}).get("aws_secret_access_key"))
    hook = S3Hook(aws_conn_id=conn_id)
    client = hook.get_client_type(region_name=hook.region_name, config=client_config(hook.config))
    return S3Store(
        client,
        config.backup.bucket,
        encryption=config.backup.server_side_encryption,
        kms_key_id=config.backup.kms_key_id,
    )


def http_endpoint(conn_id: str, purpose: str) -> HttpEndpoint:
    conn = _connection(conn_id, purpose)
    if not conn.host:
        raise ConfigError(f"connection {conn_id!r} ({purpose}) has no host")
    host = conn.host if "://" in conn.host else f"{conn.schema or 'http'}://{conn.host}"
    port = f":{conn.port}" if conn.port else ""
    return HttpEndpoint(base_url=f"{host.rstrip('/')}{port}", secret=conn.password)


def optional_endpoint(conn_id: str | None, purpose: str) -> HttpEndpoint | None:
    """The endpoint, or None when the connection is switched off (null) or not defined at all."""
    if not conn_id:
        return None
    try:
        return http_endpoint(conn_id, purpose)
    except MissingConnectionError:
        return None


def _post_slack(conn_id: str, payload: dict[str, Any], policy: DeliveryPolicy | None = None) -> Delivered:
    """Post through the Slack provider's webhook client (the connection format stays the same), with
    the retries of :func:`stellar_ops.core.delivery.deliver`; raises its DeliveryError when not
    delivered. The SDK's own retry handlers are switched off: the loop is the only one."""
    from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook

    policy = policy or DeliveryPolicy()
    client = SlackWebhookHook(
        slack_webhook_conn_id=conn_id, timeout=math.ceil(policy.attempt_timeout), retry_handlers=[]
    ).client

    def post_once(timeout: float) -> tuple[int, dict[str, str]]:
        client.timeout = max(1, math.ceil(timeout))
        response = client.send(text=payload["text"], blocks=payload.get("blocks"))
        return int(response.status_code), dict(response.headers or {})

    return deliver(post_once, policy, what=f"Slack webhook connection {conn_id!r}")


def docker_client(conn_id: str) -> Any:
    """A ``docker.APIClient`` for the daemon named by the connection.

    The daemon URL is the connection's ``extra.base_url``, or its host when that is a
    ``unix://``/``tcp://`` URL; a login makes DockerHook log in to the host as a registry.
    """
    from airflow.providers.docker.hooks.docker import DockerHook

    conn = _connection(conn_id, "the Docker daemon")
    extra = conn.extra_dejson or {}
    base_url = extra.get("base_url")
    if not base_url and conn.host and conn.host.split("://")[0] in ("unix", "tcp", "http", "https"):
        base_url = conn.host
    if not base_url:
        raise ConfigError(
            f"connection {conn_id!r} names no Docker daemon: set extra.base_url (unix:// or tcp://)"
        )
    hook = DockerHook(
        docker_conn_id=conn_id if conn.login else None,
        base_url=base_url,
        version=extra.get("version", "auto"),
        timeout=int(extra.get("timeout", 120)),
    )
    return hook.api_client


class AirflowResources:
    """The targets of ``config.connections``, looked up when a step first needs each one."""

    def __init__(self, config: StellarOpsConfig) -> None:
        self.config = config

    def database(self) -> PgTarget:
        return pg_target(self.config.connections.db)

    def store(self) -> S3Store:
        return s3_store(self.config)

    def endpoint(self, name: str) -> HttpEndpoint | None:
        conn_id, purpose = {
            "api": (self.config.connections.api, "the StellarEscrow API"),
            "pushgateway": (self.config.connections.pushgateway, "the Prometheus Pushgateway"),
            "alertmanager": (self.config.connections.alertmanager, "Alertmanager"),
        }[name]
        return optional_endpoint(conn_id, purpose)

    def redis(self) -> RedisTarget | None:
        try:
            return redis_target(self.config.connections.redis, "Redis")
        except MissingConnectionError:
            return None

    def docker(self) -> Any | None:
        try:
            return docker_client(self.config.connections.docker)
        except MissingConnectionError:
            return None

    def send_message(self, payload: dict[str, Any], channel: Channel = "ops") -> None:
        """Post to the channel's webhook connection; a null ``connections.alerts`` switches alerts
        off. What would page goes to the ops channel, marked so, when no paging channel is set up.

        Never raises: a message its channel does not take within ``alerts.delivery`` goes to the
        other channel (marked so), to Alertmanager, and to the outbox that the next task sends
        first (:mod:`stellar_ops.adapters.common.outbox`)."""
        from stellar_ops.adapters.common.outbox import send_or_keep

        if not self.config.connections.alerts:
            log.info(
                "alerts are switched off (connections.alerts is null): %s", payload["text"].splitlines()[0]
            )
            return
        send_or_keep(self.config, payload, channel)
