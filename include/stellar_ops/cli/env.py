"""Where the CLI finds its targets when Airflow is not there: the environment.

It accepts the old cron scripts' variables, so they keep working unchanged:

- ``DATABASE_URL``: ``postgresql://user:password@host:port/db``, with any libpq setting in its
  query string (``?sslmode=verify-full&sslrootcert=...&sslcert=...&sslkey=...``; see
  docs/database-connections.md)
- ``S3_BUCKET``; ``S3_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_S3``) for MinIO/SeaweedFS; AWS
  credentials the usual boto3 way (``AWS_ACCESS_KEY_ID``...)
- ``RETENTION_DAYS``: retention of local copies and of S3 backups
- ``BACKUP_DIR``: the local copy directory; ``BACKUP_ALERT_WEBHOOK``: where alerts go (the ops
  channel); ``PAGING_WEBHOOK``: where what pages goes (P1 by default; without it, to ops)
- ``STELLAR_OPS_CONFIG``: the ``stellar_ops_config`` JSON, inline or as a file path
- ``PUSHGATEWAY_URL``; ``ALERTMANAGER_URL``; ``STELLAR_API_URL`` and ``STELLAR_API_KEY``
- ``REDIS_URL`` (``redis://[:password@]host:port/db``); ``DOCKER_HOST`` for the Docker daemon
- ``AIRFLOW__API__BASE_URL``: the Airflow UI that alerts link runbooks to
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from stellar_ops.cli.output import say, warn
from stellar_ops.core import undelivered
from stellar_ops.core.alerts import post_webhook, rerouted, unpaged, with_alert_id
from stellar_ops.core.config import Channel
from stellar_ops.core.delivery import alert_id, policy_of
from stellar_ops.core.errors import ConfigError, MissingConnectionError, StellarOpsError
from stellar_ops.core.http import HttpEndpoint, RedisTarget
from stellar_ops.postgres.target import PgTarget
from stellar_ops.registry import StellarOpsConfig, parse_config
from stellar_ops.runtime import Runtime
from stellar_ops.storage.s3 import S3Store, client_config


def config_from_env(env: Mapping[str, str] | None = None) -> StellarOpsConfig:
    env = os.environ if env is None else env
    raw = env.get("STELLAR_OPS_CONFIG", "").strip()
    if raw and not raw.startswith("{"):
        try:
            raw = Path(raw).read_text()
        except OSError as exc:
            raise ConfigError(
                f"STELLAR_OPS_CONFIG names {raw!r}, which cannot be read: {exc.strerror}"
            ) from None
    config = parse_config(raw or None)
    overrides: dict[str, Any] = {}
    backup: dict[str, Any] = {}
    if env.get("S3_BUCKET"):
        backup["bucket"] = env["S3_BUCKET"]
    if env.get("RETENTION_DAYS"):
        days = env["RETENTION_DAYS"]
        if not days.isdigit():
            raise ConfigError(f"RETENTION_DAYS must be a whole number of days, got {days!r}")
        backup["retention_days"] = int(days)
        backup["local_retention_days"] = int(days)
    if env.get("BACKUP_DIR"):
        backup["local_dir"] = env["BACKUP_DIR"]
    if backup:
        overrides["backup"] = backup
    return config.with_overrides(overrides) if overrides else config


def db_target(env: Mapping[str, str] | None = None) -> PgTarget:
    env = os.environ if env is None else env
    url = env.get("DATABASE_URL")
    if not url:
        raise MissingConnectionError(
            "DATABASE_URL is not set: export DATABASE_URL=postgresql://user:password@host:5432/dbname"
        )
    return PgTarget.from_url(url)


def s3_store(config: StellarOpsConfig, env: Mapping[str, str] | None = None) -> S3Store:
    import boto3
    from botocore.config import Config

    env = os.environ if env is None else env
    endpoint = env.get("S3_ENDPOINT_URL") or env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    client = boto3.client(
        "s3",
        endpoint_url=endpoint or None,
        config=client_config(Config(retries={"max_attempts": 3, "mode": "standard"})),
    )
    return S3Store(
        client,
        config.backup.bucket,
        encryption=config.backup.server_side_encryption,
        kms_key_id=config.backup.kms_key_id,
    )


def optional(name: str, env: Mapping[str, str] | None = None) -> str | None:
    env = os.environ if env is None else env
    return env.get(name) or None


class EnvResources:
    """The targets the environment names (see the module docstring)."""

    def __init__(
        self,
        config: StellarOpsConfig,
        env: Mapping[str, str] | None = None,
        warn: Callable[[str], None] = warn,
    ) -> None:
        self.config = config
        self.env = os.environ if env is None else env
        self.warn = warn

    def database(self) -> PgTarget:
        return db_target(self.env)

    def store(self) -> S3Store:
        return s3_store(self.config, self.env)

    def endpoint(self, name: str) -> HttpEndpoint | None:
        if name == "api":
            url, key = optional("STELLAR_API_URL", self.env), optional("STELLAR_API_KEY", self.env)
            return HttpEndpoint(url, key) if url and key else None
        url = optional({"pushgateway": "PUSHGATEWAY_URL", "alertmanager": "ALERTMANAGER_URL"}[name], self.env)
        return HttpEndpoint(url) if url else None

    def redis(self) -> RedisTarget | None:
        url = optional("REDIS_URL", self.env)
        return redis_target(url) if url else None

    def docker(self) -> Any | None:
        host = optional("DOCKER_HOST", self.env)
        if not host:
            return None
        import docker

        return docker.APIClient(base_url=host, version="auto", timeout=30)

    def send_message(self, payload: dict[str, Any], channel: Channel = "ops") -> None:
        """Post to ``BACKUP_ALERT_WEBHOOK`` (ops) or ``PAGING_WEBHOOK`` (paging; without one, to ops,
        marked so); a failure to post is a warning, not the run's failure."""
        ident = alert_id(payload)
        payload = {key: value for key, value in payload.items() if key != "alert_id"}
        ops = optional("BACKUP_ALERT_WEBHOOK", self.env)
        paging = optional("PAGING_WEBHOOK", self.env)
        routes: list[tuple[str, dict[str, Any]]] = []
        if channel == "paging" and paging:
            routes.append((paging, payload))
            if ops:
                routes.append(
                    (
                        ops,
                        rerouted(payload, "the paging webhook could not be reached: this should have paged"),
                    )
                )
        elif channel == "paging":
            routes += [(ops, unpaged(payload))] if ops else []
        elif ops:
            routes.append((ops, payload))
            if paging:
                routes.append(
                    (
                        paging,
                        rerouted(payload, "the ops webhook could not be reached: sent to paging instead"),
                    )
                )
        settings = self.config.alerts.delivery
        bound = policy_of(settings)
        failures: list[str] = []
        for number, (webhook, message) in enumerate(routes):
            try:
                post_webhook(webhook, with_alert_id(message, ident), policy=bound)
                return
            except StellarOpsError as exc:
                failures.append(str(exc))
                self.warn(f"alert {ident}: {exc}")
            bound = bound.bounded(settings.fallback_max_seconds) if number == 0 else bound
        if routes:
            self.keep(ident, payload, channel, failures)

    def keep(self, ident: str, payload: dict[str, Any], channel: Channel, failures: list[str]) -> None:
        """A message no webhook took: to Alertmanager (``ALERTMANAGER_URL``) and to the outbox in the
        bucket, which the next task of any DAG sends first; the whole message in a warning when
        the bucket fails too."""
        kept = undelivered.keep(
            ident,
            payload,
            channel,
            failures,
            prefix=self.config.backup.prefix,
            delivery=self.config.alerts.delivery,
            find_alertmanager=lambda: self.endpoint("alertmanager"),
            put_json=lambda key, document: self.store().put_json(key, document),
            runbook_base_url=self.config.alerts.runbook_base_url,
        )
        if kept.error is not None:  # nothing else is left: the warning keeps the message
            self.warn(
                f"alert {ident} was not delivered and could not be kept in the outbox ({kept.error}); "
                f"the message:\n{payload['text']}"
            )
            return
        self.warn(
            f"alert {ident} was not delivered ({'; '.join(failures)}): kept in s3://"
            f"{self.config.backup.bucket}/{kept.key}; the next task of any DAG sends it first"
        )


def redis_target(url: str) -> RedisTarget:
    """``redis://[user:password@]host:port/db`` (``rediss://`` for TLS)."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise ConfigError("REDIS_URL must be a redis:// URL with a host, e.g. redis://127.0.0.1:6379/0")
    try:
        db = int(parts.path.lstrip("/") or 0)
        port = parts.port or 6379
    except ValueError:
        raise ConfigError("REDIS_URL has an invalid port or database number") from None
    return RedisTarget(
        host=parts.hostname,
        port=port,
        db=db,
        password=unquote(parts.password) if parts.password else None,
        username=unquote(parts.username) if parts.username else None,
        tls=parts.scheme == "rediss",
    )


def runtime(env: Mapping[str, str] | None = None) -> Runtime[StellarOpsConfig]:
    """What a step runs with in the CLI: the config and targets of the environment, said on stderr."""
    config = config_from_env(env)
    return Runtime(config, EnvResources(config, env), say=say, warn=warn)


def airflow_url(env: Mapping[str, str] | None = None) -> str | None:
    return optional("AIRFLOW__API__BASE_URL", env)
