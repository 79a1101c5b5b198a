"""The ``rotation`` section: where the API's keys live, how the API restarts, the ledger's periods."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from stellar_ops.core.config import Section

KEY_SETS = ("API_KEYS", "ADMIN_KEYS")
KeySet = Literal["API_KEYS", "ADMIN_KEYS"]

DEFAULT_PERIODS: dict[str, int] = {
    "POSTGRES_PASSWORD": 365,
    "REDIS_PASSWORD": 365,
    "API_KEYS": 92,
    "ADMIN_KEYS": 92,
    "GRAFANA_ADMIN_PASSWORD": 92,
    "S3_CREDENTIALS": 180,
}
# Section 3.3 of the procedures: how each secret is rotated.
DEFAULT_PROCEDURES: dict[str, str] = {
    "POSTGRES_PASSWORD": "ALTER ROLE with a new password, update the stellar_db connection and the "
    "API's DATABASE_URL, restart the API (section 3.3)",
    "REDIS_PASSWORD": "set requirepass, update the stellar_redis connection and the API's REDIS_URL, "
    "restart the API (section 3.3)",
    "API_KEYS": "trigger api_key_rotation with key_set API_KEYS, or stellar-ops keys rotate --key-set API_KEYS",
    "ADMIN_KEYS": "trigger api_key_rotation with key_set ADMIN_KEYS, or stellar-ops keys rotate --key-set ADMIN_KEYS",
    "GRAFANA_ADMIN_PASSWORD": "grafana-cli admin reset-admin-password, then update the password store (section 3.3)",
    "S3_CREDENTIALS": "create a new access key, update the stellar_s3 connection and S3 credentials of the "
    "scripts, then delete the old key (section 3.3)",
}


class RotationConfig(Section):
    key_store: Literal["env_file", "aws_secrets_manager"] = Field(
        "env_file",
        description="Where the API's keys live: the API's .env file, or AWS Secrets Manager "
        "(one secret per key set, with AWSPENDING/AWSCURRENT/AWSPREVIOUS).",
    )
    env_file: str | None = Field(
        None,
        description="Path of the API's .env file (key_store env_file); null reads STELLAR_API_ENV_FILE "
        "from the worker's environment.",
    )
    secret_prefix: str = Field(
        "stellar-escrow/",
        description="Secrets Manager name prefix; the secret of a key set is <prefix><KEY_SET>.",
    )
    aws_conn_id: str = Field(
        "stellar_secrets", description="AWS connection of Secrets Manager (endpoint_url in extra)."
    )
    restart: Literal["docker", "command", "http_reload"] = Field(
        "docker",
        description="How the API is restarted: the Docker connection (docker compose restart of "
        "docker_container), a configured command, or POST /_reload (the local API stand-in).",
    )
    docker_container: str = Field(
        "stellar-escrow-api-1", description="Container restarted by the docker backend."
    )
    restart_command: list[str] = Field(
        default_factory=list,
        description="argv of the command backend (no shell); it must return once the API restarted.",
    )
    reload_path: str = Field("/_reload", description="Path the http_reload backend POSTs to (admin key).")
    healthy_timeout_seconds: float = Field(
        120, gt=0, description="How long the API may take to answer /health after a restart."
    )
    probe_paths: dict[str, str] = Field(
        default_factory=lambda: {"API_KEYS": "/health", "ADMIN_KEYS": "/api/metrics"},
        description="Path that tests a key of each key set (it answers 2xx only to a key of the set).",
    )
    key_bytes: int = Field(32, ge=16, le=128, description="Random bytes of each key (hex-encoded).")
    key_prefix: dict[str, str] = Field(
        default_factory=lambda: {"API_KEYS": "sk_live_", "ADMIN_KEYS": "sk_admin_"},
        description="Prefix of the keys of each key set.",
    )
    transition_days: float = Field(7, gt=0, description="Default transition window (days).")
    compromise_transition_hours: float = Field(
        1, gt=0, description="The transition window of a run for a suspected compromise (hours)."
    )
    wait_poll_seconds: float = Field(
        300,
        gt=0,
        description="How often a rotation that waits for another run of api_key_rotation to finish "
        "looks again.",
    )
    notice_days: float = Field(
        0, ge=0, description="Days between the notice to consumers and the new keys being served."
    )
    audit_prefix: str = Field(
        "audit/key-rotation/", description="S3 prefix (backups bucket) of the rotation audit records."
    )
    ledger_key: str = Field(
        "audit/secrets-ledger.json",
        description="S3 key (backups bucket) of the secrets rotation ledger: each secret's last rotation.",
    )
    periods_days: dict[str, int] = Field(
        default_factory=lambda: dict(DEFAULT_PERIODS),
        description="Rotation period of each secret in the ledger (days); S3_CREDENTIALS is configurable.",
    )
    procedures: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_PROCEDURES),
        description="How each secret is rotated (section 3.3), named in its overdue alert.",
    )

    @field_validator("probe_paths", "key_prefix")
    @classmethod
    def _both_key_sets(cls, value: dict[str, str]) -> dict[str, str]:
        missing = sorted(set(KEY_SETS) - set(value))
        if missing:
            raise ValueError(f"needs an entry for {', '.join(missing)}")
        return value

    @field_validator("periods_days")
    @classmethod
    def _positive(cls, value: dict[str, int]) -> dict[str, int]:
        for name, days in value.items():
            if days <= 0:
                raise ValueError(f"{name} must be a positive number of days")
        return value
