"""Where the CLI finds its targets when Airflow is not there: the environment.

It accepts the old cron scripts' variables, so they keep working unchanged:

- ``DATABASE_URL``: ``postgresql://user:password@host:port/db``
- ``S3_BUCKET``; ``S3_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_S3``) for MinIO/SeaweedFS; AWS
  credentials the usual boto3 way (``AWS_ACCESS_KEY_ID``...)
- ``RETENTION_DAYS``: retention of local copies and of S3 backups
- ``BACKUP_DIR``: the local copy directory; ``BACKUP_ALERT_WEBHOOK``: where alerts go
- ``STELLAR_OPS_CONFIG``: the ``stellar_ops_config`` JSON, inline or as a file path
- ``PUSHGATEWAY_URL``; ``STELLAR_API_URL`` and ``STELLAR_API_KEY``
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stellar_ops.config import StellarOpsConfig, parse_config
from stellar_ops.errors import ConfigError, MissingConnectionError
from stellar_ops.pg import PgTarget
from stellar_ops.s3store import S3Store


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
        # The whole object is read back and its sha256 checked before it counts, so per-request
        # checksums only cost CPU on small workers.
        config=Config(
            request_checksum_calculation="when_required", retries={"max_attempts": 3, "mode": "standard"}
        ),
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
