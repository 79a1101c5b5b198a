"""The ``changes`` section: how migrations are applied and config changes rolled out."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from stellar_ops.core.config import Section


class RestartSpec(Section):
    backend: Literal["docker", "command", "http_reload"] = Field(
        "http_reload",
        description="How the service restarts: a Docker container, a command, or POST reload_path.",
    )
    container: str | None = Field(None, description="Container restarted by the docker backend.")
    command: list[str] = Field(
        default_factory=list, description="argv of the command backend (no shell); returns once restarted."
    )
    reload_path: str = Field("/_reload", description="Path the http_reload backend POSTs to (admin key).")
    url: str | None = Field(
        None,
        description="Base URL of the service: the http_reload backend POSTs reload_path to it, and its "
        "/health must answer after its restart; null is the API's (connections.api).",
    )


class ChangesConfig(Section):
    lock_timeout: str = Field(
        "5s",
        min_length=1,
        description="lock_timeout of a migration's session (PostgreSQL interval), in the rehearsal and "
        "in production: a statement that waits longer for a lock fails and nothing is applied.",
    )
    statement_timeout: str = Field(
        "15min", min_length=1, description="statement_timeout of a migration's session (PostgreSQL interval)."
    )
    large_table_rows: int = Field(
        1_000_000,
        gt=0,
        description="A table with at least this many rows (estimated) is large: locks on it warn.",
    )
    large_table_bytes: int = Field(
        1 << 30, gt=0, description="A table of at least this many bytes (with indexes and TOAST) is large."
    )
    lock_sample_seconds: float = Field(
        0.05, gt=0, le=5, description="How often the rehearsal samples pg_locks of the migration's session."
    )
    git_dir: str | None = Field(
        None,
        description="A git checkout on the worker: a migration named 'git:<rev>:<path>' is read from it "
        "(git show), so what is applied is what was reviewed at that revision.",
    )
    log_prefix: str = Field(
        "changes/",
        min_length=1,
        description="S3 prefix (backups bucket) of the change log: one record per change.",
    )
    restore_conn_id: str = Field(
        "stellar_restore",
        min_length=1,
        description="Postgres connection a db_restore of the pre-change backup over production uses (the "
        "way back of a migration without a rollback script); its role must own the database or be a superuser.",
    )
    services: list[str] = Field(
        default_factory=lambda: ["api"],
        min_length=1,
        description="Services a config change restarts, one after another, each healthy before the next.",
    )
    restart: dict[str, RestartSpec] = Field(
        default_factory=dict,
        description="How each service restarts; a service not named here restarts as rotation.restart "
        "restarts the API.",
    )
    healthy_timeout_seconds: float = Field(
        60,
        ge=0,
        description="How long a restarted service may take to answer /health before the rolling restart "
        "stops and the change is reverted.",
    )
    health_checks: list[str] = Field(
        default_factory=lambda: ["services"],
        description="morning_health_check checks that must pass after a config change, else it is reverted.",
    )
    health_settle_seconds: float = Field(
        5, ge=0, description="Seconds to wait after the last restart before the health checks."
    )
    config_store: Literal["env_file", "aws_secrets_manager"] = Field(
        "env_file",
        description="Where the services' config variables live: the API's .env file, or one JSON secret "
        "in AWS Secrets Manager (config_secret_id); each change keeps the version before it.",
    )
    config_env_file: str | None = Field(
        None, description="The .env file of config_store env_file; null takes rotation.env_file."
    )
    config_secret_id: str = Field(
        "stellar-escrow/config", min_length=1, description="The secret of config_store aws_secrets_manager."
    )
