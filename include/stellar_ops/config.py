"""The one typed configuration object for every procedure.

At task run time the Airflow Variable ``stellar_ops_config`` (JSON) is laid over the defaults
below; the CLI reads the same JSON from ``STELLAR_OPS_CONFIG`` (inline JSON or a file path).
Unknown fields and bad values are rejected with a message that names the field, so a typo
never silently falls back to a default.

``docs/configuration.md`` is generated from these models (``stellar-ops config reference``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from stellar_ops.errors import ConfigError

VARIABLE_NAME = "stellar_ops_config"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False, validate_default=True)


class ConnectionIds(_Section):
    db: str = Field("stellar_db", description="Postgres connection of the StellarEscrow database.")
    s3: str = Field("stellar_s3", description="AWS connection of the backups bucket (endpoint_url in extra).")
    api: str | None = Field(
        "stellar_api", description="HTTP connection of the StellarEscrow API; null disables API calls."
    )
    redis: str = Field("stellar_redis", description="Redis connection for hit-rate statistics.")
    docker: str = Field("stellar_docker", description="Docker connection for containers and scratch servers.")
    alerts: str | None = Field(
        "slack_alerts", description="Slack incoming-webhook connection for notifications; null disables them."
    )
    alertmanager: str = Field("alertmanager", description="HTTP connection of Alertmanager.")
    pushgateway: str | None = Field(
        "pushgateway", description="HTTP connection of the Prometheus Pushgateway; null disables pushes."
    )


class BackupConfig(_Section):
    bucket: str = Field("stellar-backups", min_length=3, max_length=63, description="S3 bucket of backups.")
    prefix: str = Field(
        "backups/", description="Key prefix of backups (legacy .sql.gz objects must live under it too)."
    )
    format: Literal["custom", "plain"] = Field(
        "custom",
        description="custom: pg_dump -Fc through zstd (.dump.zst); plain: SQL through gzip (.sql.gz).",
    )
    compression_level: int = Field(
        2, ge=1, le=19, description="zstd level (1-19) for custom, gzip level (1-9) for plain."
    )
    compression_threads: int = Field(
        0, ge=0, le=64, description="zstd worker threads; 0 compresses on the calling thread."
    )
    part_size_mb: int = Field(
        8, ge=5, le=512, description="S3 multipart part size in MiB (raised for databases over ~70 GiB)."
    )
    max_parts_in_flight: int = Field(2, ge=1, le=16, description="Parts uploaded concurrently.")
    server_side_encryption: Literal["none", "AES256", "aws:kms"] = Field(
        "AES256", description="S3 server-side encryption of backup objects."
    )
    kms_key_id: str | None = Field(None, description="KMS key id, required with aws:kms.")
    local_dir: str | None = Field(
        None, description="Also write each backup here in the same pass; null keeps no local copy."
    )
    local_retention_days: int = Field(7, ge=1, description="Age after which local copies are deleted.")
    retention_days: int = Field(30, ge=1, description="Age after which S3 backups may be deleted.")
    min_keep: int = Field(
        7, ge=1, description="The newest N restorable backups are always kept, whatever their age."
    )
    progress_interval_seconds: float = Field(5.0, gt=0, description="Seconds between progress log lines.")
    notify_on_success: bool = Field(True, description="Post a short success message after each backup.")
    pg_bin_dir: str | None = Field(
        None, description="Directory holding pg_dump/pg_restore/psql; null picks the newest installed."
    )
    stale_upload_hours: int = Field(
        24, ge=1, description="Unfinished uploads older than this are aborted by retention."
    )

    @field_validator("prefix")
    @classmethod
    def _prefix_shape(cls, value: str) -> str:
        if value.startswith("/"):
            raise ValueError("must not start with '/'")
        if value and not value.endswith("/"):
            raise ValueError("must be empty or end with '/'")
        return value

    @field_validator("bucket")
    @classmethod
    def _bucket_shape(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z0-9][a-z0-9.\-]*[a-z0-9]", value):
            raise ValueError("must be lower-case letters, digits, '.' and '-'")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> BackupConfig:
        if self.format == "plain" and self.compression_level > 9:
            raise ValueError("compression_level: gzip (format 'plain') takes 1-9")
        if self.server_side_encryption == "aws:kms" and not self.kms_key_id:
            raise ValueError("kms_key_id: required when server_side_encryption is 'aws:kms'")
        if self.local_dir is not None and not self.local_dir.startswith("/"):
            raise ValueError("local_dir: must be an absolute path")
        return self


class DrConfig(_Section):
    scratch_backend: Literal["local", "docker"] = Field(
        "local", description="Where the scratch server runs: initdb on the worker, or a container."
    )
    trigger_on_new_backup: bool = Field(
        False, description="Also run a DR test whenever db_backup publishes a new backup."
    )
    restore_jobs: int = Field(
        2,
        ge=1,
        le=32,
        description="Sessions loading a custom-format backup's tables, and as many building its indexes and constraints.",
    )
    docker_image: str = Field(
        "postgres:{major}", description="Image of the docker scratch server; {major} is the server major."
    )
    docker_network: str | None = Field(
        None,
        description="Docker network to put the scratch container on (workers in containers); null "
        "publishes its port on docker_host_address instead.",
    )
    docker_host_address: str = Field(
        "127.0.0.1", description="Address the scratch container's port is published on and reached at."
    )
    key_tables: list[str] = Field(
        default_factory=lambda: ["trades", "events"],
        description="Tables that must exist and, for legacy backups, hold rows.",
    )
    min_tables: int = Field(3, ge=1, description="The restored schema must hold at least this many tables.")
    sanity_queries: list[str] = Field(
        default_factory=lambda: [
            "SELECT count(*) FROM trades WHERE amount < 0",
            "SELECT max(created_at) FROM events",
            "SELECT status, count(*) FROM escrows GROUP BY status",
        ],
        description="Read-only queries that must run without error on the restored database.",
    )
    scratch_settings: dict[str, str] = Field(
        default_factory=dict, description="Extra postgresql.conf settings of the scratch server."
    )
    work_dir: str | None = Field(
        None, description="Parent directory of local scratch servers; null uses the system temp dir."
    )
    stage_in_memory: bool = Field(
        True,
        description="Stage a custom-format backup's decompressed data in /dev/shm while it loads, "
        "when it takes at most a quarter of the free space there; otherwise in work_dir.",
    )
    run_as_user: str = Field(
        "postgres", description="OS user that runs a local scratch server when the worker runs as root."
    )
    startup_timeout_seconds: int = Field(
        60, ge=5, description="How long the scratch server may take to start."
    )


class MaintenanceConfig(_Section):
    tables: list[str] = Field(
        default_factory=list, description="Tables to VACUUM ANALYZE; empty means the whole database."
    )
    window_start_utc: str = Field("02:00", description="Start of the low-traffic window (HH:MM, UTC).")
    window_end_utc: str = Field("06:00", description="End of the low-traffic window (HH:MM, UTC).")
    bloat_warn_dead_ratio: float = Field(
        0.2, ge=0, le=1, description="Warn when dead / (live + dead) tuples is above this."
    )
    bloat_min_dead_tuples: int = Field(
        1000, ge=0, description="Ignore tables with fewer dead tuples than this."
    )
    lock_timeout_seconds: int = Field(30, ge=1, description="lock_timeout for each VACUUM.")

    @field_validator("window_start_utc", "window_end_utc")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        match = re.fullmatch(r"(\d{2}):(\d{2})", value)
        if not match or int(match[1]) > 23 or int(match[2]) > 59:
            raise ValueError("must be HH:MM (24-hour, UTC)")
        return value

    @field_validator("tables")
    @classmethod
    def _identifiers(cls, value: list[str]) -> list[str]:
        for name in value:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?", name):
                raise ValueError(f"{name!r} is not a table name (schema.table or table)")
        return value


class AlertsConfig(_Section):
    runbook_url_template: str | None = Field(
        None,
        description="Runbook link of alerts, with {dag_id}; null links the DAG's page in the Airflow UI.",
    )
    mention: str | None = Field(None, description="Prefix for P1 alerts, for example '<!here>'.")


class MetricsConfig(_Section):
    job: str = Field("stellar_ops", description="Pushgateway job name.")
    push_to_api: bool = Field(True, description="Also POST metrics to the API's /api/metrics.")
    timeout_seconds: float = Field(10.0, gt=0, description="HTTP timeout of each push.")


class StellarOpsConfig(_Section):
    connections: ConnectionIds = Field(default_factory=ConnectionIds)  # type: ignore[arg-type]
    backup: BackupConfig = Field(default_factory=BackupConfig)  # type: ignore[arg-type]
    dr: DrConfig = Field(default_factory=DrConfig)  # type: ignore[arg-type]
    maintenance: MaintenanceConfig = Field(default_factory=MaintenanceConfig)  # type: ignore[arg-type]
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)  # type: ignore[arg-type]
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)  # type: ignore[arg-type]

    def with_overrides(self, overrides: Mapping[str, Any]) -> StellarOpsConfig:
        """Return a copy with ``{"section": {"field": value}}`` laid over, validated again."""
        merged = _deep_merge(self.model_dump(), dict(overrides))
        return parse_config(merged)


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _describe(error: Mapping[str, Any]) -> str:
    location = ".".join(str(part) for part in error["loc"] if part != "__root__")
    if error["type"] == "extra_forbidden":
        return f"{location}: unknown field (check the spelling against docs/configuration.md)"
    message = str(error["msg"]).removeprefix("Value error, ")
    if (
        error["type"] == "value_error"
        and re.match(r"\w+: ", message)
        and isinstance(error.get("input"), dict)
    ):
        # A cross-field check on a section names its own field: report it as section.field.
        return f"{location}.{message}" if location else message
    got = error.get("input")
    shown = "" if isinstance(got, dict | list) or got is None else f" (got {got!r})"
    prefix = f"{location}: " if location else ""
    return f"{prefix}{message}{shown}"


def parse_config(raw: Mapping[str, Any] | str | None) -> StellarOpsConfig:
    """Validate ``raw`` (a mapping or a JSON string; None means all defaults)."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return StellarOpsConfig()
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"{VARIABLE_NAME} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
            ) from None
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{VARIABLE_NAME} must be a JSON object, got {type(raw).__name__}")
    try:
        return StellarOpsConfig.model_validate(dict(raw))
    except ValidationError as exc:
        problems = "; ".join(_describe(err) for err in exc.errors())
        raise ConfigError(f"Invalid {VARIABLE_NAME}: {problems}") from None


def reference_markdown() -> str:
    """Render every field with its type, default and description (docs/configuration.md)."""
    lines = [
        "# Configuration reference",
        "",
        f"Set the Airflow Variable `{VARIABLE_NAME}` to a JSON object; each field left out keeps its",
        "default. The CLI reads the same JSON from `STELLAR_OPS_CONFIG` (inline JSON or a file path).",
        "An unknown field or a bad value fails the task with a message naming the field.",
        "",
        "This page is generated by `stellar-ops config reference`; a test keeps it current.",
        "",
    ]
    defaults = StellarOpsConfig()
    for section_name in StellarOpsConfig.model_fields:
        section = getattr(defaults, section_name)
        lines += [f"## `{section_name}`", "", "| field | default | description |", "|---|---|---|"]
        for name, field in type(section).model_fields.items():
            default = json.dumps(getattr(section, name))
            lines.append(f"| `{section_name}.{name}` | `{default}` | {field.description} |")
        lines.append("")
    return "\n".join(lines)
