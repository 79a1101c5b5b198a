"""What every configuration section shares, and the sections every procedure reads.

At task run time the Airflow Variable ``stellar_ops_config`` (JSON) is laid over the defaults;
the CLI reads the same JSON from ``STELLAR_OPS_CONFIG`` (inline JSON or a file path). Unknown
fields and bad values are rejected with a message that names the field, so a typo never silently
falls back to a default. Each procedure declares its own section in its package;
:mod:`stellar_ops.registry` composes them into the one root object.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from stellar_ops.core.errors import ConfigError

VARIABLE_NAME = "stellar_ops_config"
SeverityName = Literal["P1", "P2", "P3"]
Channel = Literal["paging", "ops"]
DEFAULT_ROUTES: dict[SeverityName, Channel] = {"P1": "paging", "P2": "ops", "P3": "ops"}
DEFAULT_REVIEWED: list[SeverityName] = ["P1", "P2"]
RootT = TypeVar("RootT", bound=BaseModel)


class Section(BaseModel):
    """A configuration section: frozen, strict about unknown fields, every default validated."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False, validate_default=True)


class ConnectionIds(Section):
    db: str = Field("stellar_db", description="Postgres connection of the StellarEscrow database.")
    s3: str = Field("stellar_s3", description="AWS connection of the backups bucket (endpoint_url in extra).")
    api: str | None = Field(
        "stellar_api", description="HTTP connection of the StellarEscrow API; null disables API calls."
    )
    redis: str = Field("stellar_redis", description="Redis connection for hit-rate statistics.")
    docker: str = Field("stellar_docker", description="Docker connection for containers and scratch servers.")
    alerts: str | None = Field(
        "slack_alerts",
        description="Slack incoming-webhook connection of the ops channel; null disables notifications.",
    )
    paging: str | None = Field(
        "slack_paging",
        description="Slack incoming-webhook connection of the paging channel; when it is null or not "
        "defined, what would page goes to the ops channel, marked so.",
    )
    alertmanager: str = Field("alertmanager", description="HTTP connection of Alertmanager.")
    pushgateway: str | None = Field(
        "pushgateway", description="HTTP connection of the Prometheus Pushgateway; null disables pushes."
    )


class DeliveryConfig(Section):
    """How hard a message is pushed through before it falls back (docs/alerting.md, "Delivery")."""

    max_seconds: float = Field(
        150.0,
        gt=0,
        description="Time bound of one message's retries on its own route (429 with Retry-After, 5xx, "
        "connection errors, timeouts), from the first try: long enough to survive a minute of 5xx.",
    )
    attempt_timeout_seconds: float = Field(10.0, gt=0, description="Timeout of one HTTP attempt.")
    retry_after_cap_seconds: float = Field(
        30.0, ge=0, description="Longest wait honoured from a 429's Retry-After header."
    )
    max_backoff_seconds: float = Field(
        30.0, gt=0, description="Longest wait between retries (exponential backoff from 1 s, with jitter)."
    )
    fallback_max_seconds: float = Field(
        20.0,
        gt=0,
        description="Time bound on each fallback route (the other channel, Alertmanager) of a message "
        "its own route did not take.",
    )
    drain_max_seconds: float = Field(
        30.0,
        gt=0,
        description="Time bound of the outbox drain at the start of a task (alerts/outbox/ under "
        "backup.prefix): what is left stays for the next task.",
    )
    sent_retention_days: float = Field(
        14.0,
        gt=0,
        description="How long the ids of delivered outbox alerts (alerts/sent/) are kept, so a replay "
        "skips them.",
    )


class AlertsConfig(Section):
    runbook_url_template: str | None = Field(
        None,
        description="Runbook link of alerts, with {dag_id}; null links the DAG's page in the Airflow UI.",
    )
    runbook_base_url: str | None = Field(
        None,
        description="Where docs/runbooks.md is published (RB-001 to RB-006 are its anchors); null names "
        "the document's path in the project.",
    )
    mention: str | None = Field(None, description="Prefix for P1 alerts, for example '<!here>'.")
    routes: dict[SeverityName, Channel] = Field(
        default_factory=lambda: dict(DEFAULT_ROUTES),
        description="The channel each severity's alerts (and their recoveries) go to.",
    )
    alertmanager_severities: list[SeverityName] = Field(
        default_factory=list,
        description="Severities whose alerts also go to Alertmanager (connections.alertmanager), so its "
        "silences and inhibition apply; their recoveries resolve them there.",
    )
    review_severities: list[SeverityName] = Field(
        default_factory=lambda: list(DEFAULT_REVIEWED),
        description="Severities whose resolved incidents leave a post-incident review draft in S3.",
    )
    delivery: DeliveryConfig = Field(
        default_factory=DeliveryConfig,  # type: ignore[arg-type]
        description="Retries of every message and the outbox of those no route took (docs/alerting.md, Delivery): "
        "max_seconds bounds one route's retries (429 with Retry-After, 5xx, connection errors, timeouts), "
        "attempt_timeout_seconds one HTTP attempt, retry_after_cap_seconds the wait a 429 may ask, "
        "max_backoff_seconds the backoff, fallback_max_seconds each fallback route, drain_max_seconds "
        "the outbox drain at the start of a task; sent_retention_days keeps the ids of delivered "
        "outbox alerts.",
    )

    @field_validator("routes")
    @classmethod
    def _every_severity(cls, value: dict[str, str]) -> dict[str, str]:
        missing = sorted({"P1", "P2", "P3"} - set(value))
        if missing:
            raise ValueError(f"needs a channel for {', '.join(missing)}")
        return value


class DeadlinesConfig(Section):
    """Read by the DAG processor from the environment variable ``STELLAR_OPS_DEADLINES`` (JSON):
    a deadline is part of a DAG's definition, and a DAG is parsed without I/O."""

    enabled: bool = Field(True, description="Give every DAG its deadline alert.")
    minutes: dict[str, float] = Field(
        default_factory=dict,
        description="Minutes after being queued by which a DAG's run must be done, by DAG id; a DAG "
        "left out keeps its procedure's expected time.",
    )


class MetricsConfig(Section):
    job: str = Field("stellar_ops", description="Pushgateway job name.")
    push_to_api: bool = Field(True, description="Also POST metrics to the API's /api/metrics.")
    timeout_seconds: float = Field(10.0, gt=0, description="HTTP timeout of each push.")


def deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``extra`` laid over ``base``, section by section."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
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


class RootSection(Section):
    """The root configuration object: one field per section."""

    def with_overrides(self: RootT, overrides: Mapping[str, Any]) -> RootT:
        """A copy with ``{"section": {"field": value}}`` laid over, validated again."""
        return parse_root(type(self), deep_merge(self.model_dump(), dict(overrides)))


def parse_root(model: type[RootT], raw: Mapping[str, Any] | str | None) -> RootT:
    """Validate ``raw`` (a mapping or a JSON string; None means all defaults) as ``model``."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return model()
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
        return model.model_validate(dict(raw))
    except ValidationError as exc:
        problems = "; ".join(_describe(err) for err in exc.errors())
        raise ConfigError(f"Invalid {VARIABLE_NAME}: {problems}") from None


def section_table(name: str, section: BaseModel) -> list[str]:
    lines = ["| field | default | description |", "|---|---|---|"]
    dumped = section.model_dump(mode="json")  # nested sections (thresholds) as JSON objects
    for field_name, field in type(section).model_fields.items():
        default = json.dumps(dumped[field_name])
        lines.append(f"| `{name}.{field_name}` | `{default}` | {field.description} |")
    return lines


def reference_markdown(defaults: BaseModel) -> str:
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
    for section_name in type(defaults).model_fields:
        section = getattr(defaults, section_name)
        lines += [f"## `{section_name}`", "", *section_table(section_name, section), ""]
    deadlines = DeadlinesConfig()
    lines += [
        "## Deadlines: `STELLAR_OPS_DEADLINES`",
        "",
        "Not in the Variable: a deadline is part of a DAG's definition, which the DAG processor parses",
        "without I/O, so it reads this JSON object from its environment variable `STELLAR_OPS_DEADLINES`.",
        "",
        *section_table("deadlines", deadlines),
        "",
    ]
    return "\n".join(lines)
