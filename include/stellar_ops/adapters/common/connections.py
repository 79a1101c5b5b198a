"""Airflow connections turned into the pure layer's targets, with every secret masked.

:class:`AirflowResources` is what a step's :class:`~stellar_ops.runtime.Runtime` reaches them
through inside a task.
"""

from __future__ import annotations

import logging
from typing import Any

from stellar_ops.core.alerts import unpaged
from stellar_ops.core.config import Channel
from stellar_ops.core.errors import ConfigError, MissingConnectionError
from stellar_ops.core.http import HttpEndpoint, RedisTarget
from stellar_ops.postgres.target import PgTarget
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
    extra = conn.extra_dejson or {}
    return PgTarget(
        host=conn.host,
        port=int(conn.port or 5432),
        user=conn.login,
        dbname=conn.schema,
        password=conn.password,
        sslmode=extra.get("sslmode"),
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


def _post_slack(conn_id: str, payload: dict[str, Any]) -> None:
    from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook

    SlackWebhookHook(slack_webhook_conn_id=conn_id).send(text=payload["text"], blocks=payload["blocks"])


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
            conn = _connection(self.config.connections.redis, "Redis")
        except MissingConnectionError:
            return None
        extra = conn.extra_dejson or {}
        return RedisTarget(
            host=conn.host or "127.0.0.1",
            port=int(conn.port or 6379),
            db=int(extra.get("db", 0)),
            password=conn.password,
            username=conn.login,
            tls=bool(extra.get("ssl", False)),
        )

    def docker(self) -> Any | None:
        try:
            return docker_client(self.config.connections.docker)
        except MissingConnectionError:
            return None

    def send_message(self, payload: dict[str, Any], channel: Channel = "ops") -> None:
        """Post to the channel's webhook connection; a null ``connections.alerts`` switches alerts
        off. What would page goes to the ops channel, marked so, when no paging channel is set up."""
        ops = self.config.connections.alerts
        if not ops:
            log.info(
                "alerts are switched off (connections.alerts is null): %s", payload["text"].splitlines()[0]
            )
            return
        if channel == "paging":
            paging = self.config.connections.paging
            try:
                if paging:
                    _connection(paging, "the paging channel")
                    _post_slack(paging, payload)
                    return
            except MissingConnectionError:
                pass
            log.warning("no paging channel (connections.paging %r): paging through the ops channel", paging)
            payload = unpaged(payload)
        _post_slack(ops, payload)
