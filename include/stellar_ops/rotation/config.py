"""The ``rotation`` section: where the API's keys live, how the API restarts, the ledger's periods."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from stellar_ops.core.config import Section

KEY_SETS = ("API_KEYS", "ADMIN_KEYS")
# the secrets secret_rotation rotates, each through its own backend
SECRETS = ("POSTGRES_PASSWORD", "REDIS_PASSWORD", "GRAFANA_ADMIN_PASSWORD", "S3_CREDENTIALS")
SecretName = Literal["POSTGRES_PASSWORD", "REDIS_PASSWORD", "GRAFANA_ADMIN_PASSWORD", "S3_CREDENTIALS"]
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
    "POSTGRES_PASSWORD": "trigger secret_rotation with secret POSTGRES_PASSWORD (twin login roles; "
    "once: stellar-ops secrets setup-twins)",
    "REDIS_PASSWORD": "trigger secret_rotation with secret REDIS_PASSWORD (the ACL user's second password)",
    "API_KEYS": "trigger api_key_rotation with key_set API_KEYS, or stellar-ops keys rotate --key-set API_KEYS",
    "ADMIN_KEYS": "trigger api_key_rotation with key_set ADMIN_KEYS, or stellar-ops keys rotate --key-set ADMIN_KEYS",
    "GRAFANA_ADMIN_PASSWORD": "trigger secret_rotation with secret GRAFANA_ADMIN_PASSWORD (Grafana's admin API)",
    "S3_CREDENTIALS": "trigger secret_rotation with secret S3_CREDENTIALS (a second IAM access key)",
}


class SecretEnv(Section):
    """Which variables of the API's environment (the key store) hold one secret."""

    identity: str | None = Field(None, description="Variable of the login (user, access key id); null: none.")
    secret: str = Field(description="Variable of the password or secret key.")
    url: str | None = Field(
        None, description="Variable of a URL whose user and password are switched too (DATABASE_URL)."
    )


class PostgresSecret(Section):
    admin_conn_id: str = Field(
        "stellar_pg_admin",
        description="Postgres connection of a superuser (never a twin): it sets the twins' passwords as "
        "SCRAM verifiers and reads them back from pg_authid, which only a superuser may read.",
    )
    app_role: str = Field(
        "stellar",
        description="The application's group role: owns the objects; its twins <role>_blue/_green log in.",
    )
    connections: list[str] = Field(
        default_factory=lambda: ["stellar_db"],
        description="This package's Airflow connections that log in as the application: switched to the new twin.",
    )
    env: SecretEnv = Field(
        default_factory=lambda: SecretEnv(
            identity="POSTGRES_USER", secret="POSTGRES_PASSWORD", url="DATABASE_URL"
        ),
        description="The API's variables of the database login.",
    )
    drain_seconds: float = Field(
        300,
        ge=0,
        description="How long the removal waits for the old twin's sessions to end before refusing.",
    )


class RedisSecret(Section):
    admin_conn_id: str = Field(
        "stellar_redis_admin", description="Redis connection of a user allowed ACL SETUSER/GETUSER/SAVE."
    )
    user: str = Field("stellar", description="The ACL user whose password rotates.")
    connections: list[str] = Field(
        default_factory=lambda: ["stellar_redis"],
        description="This package's Airflow connections that log in as that user.",
    )
    env: SecretEnv = Field(
        default_factory=lambda: SecretEnv(identity="REDIS_USER", secret="REDIS_PASSWORD", url="REDIS_URL"),
        description="The API's variables of the Redis login.",
    )


class GrafanaSecret(Section):
    conn_id: str = Field(
        "grafana", description="HTTP connection of Grafana: URL, and the admin's login and current password."
    )
    env: SecretEnv = Field(
        default_factory=lambda: SecretEnv(identity=None, secret="GRAFANA_ADMIN_PASSWORD"),
        description="The variable of Grafana's admin password in the key store.",
    )


class S3Secret(Section):
    iam_conn_id: str = Field(
        "stellar_iam",
        description="AWS connection allowed to manage the IAM user's access keys (endpoint_url in extra for "
        "a local IAM).",
    )
    user: str = Field("stellar-backups", description="The IAM user whose access keys rotate.")
    connections: list[str] = Field(
        default_factory=lambda: ["stellar_s3"],
        description="This package's Airflow connections that use the user's key (login: key id, password: secret).",
    )
    env: SecretEnv = Field(
        default_factory=lambda: SecretEnv(identity="AWS_ACCESS_KEY_ID", secret="AWS_SECRET_ACCESS_KEY"),
        description="The API's variables of the access key.",
    )


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
    postgres: PostgresSecret = Field(default_factory=PostgresSecret, description="POSTGRES_PASSWORD.")
    redis: RedisSecret = Field(default_factory=RedisSecret, description="REDIS_PASSWORD.")
    grafana: GrafanaSecret = Field(default_factory=GrafanaSecret, description="GRAFANA_ADMIN_PASSWORD.")
    s3: S3Secret = Field(default_factory=S3Secret, description="S3_CREDENTIALS.")
    secret_bytes: int = Field(
        32, ge=16, le=64, description="Random bytes of each new password (URL-safe base64)."
    )
    secret_transition_hours: float = Field(
        24,
        ge=0,
        description="Default window of secret_rotation between the consumers' switch and the removal of "
        "the old secret (hours).",
    )
    stuck_after_hours: float = Field(
        48,
        gt=0,
        description="A secret rotation still waiting for its removal this long after its window ended "
        "alerts (SecretRotationStuck, from secrets_rotation_audit).",
    )
    cli_env_file: str | None = Field(
        None,
        description="The environment file stellar-ops runs with (exports such as DATABASE_URL, REDIS_URL): "
        "secret_rotation switches it with the connections; null: the CLI's environment is not switched.",
    )
    airflow_api_conn_id: str = Field(
        "airflow_api",
        description="HTTP connection of Airflow's REST API (login and password of a user who may edit "
        "connections): how a rotation switches this package's own connections.",
    )
    secret_audit_prefix: str = Field(
        "audit/secret-rotation/",
        description="S3 prefix (backups bucket) of secret_rotation's records: <SECRET>/progress.json (where "
        "the rotation under way stands) and <rotation id>/<run>.json (audit).",
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
