"""The ``health`` section: what the morning health check looks at, and where each check turns red."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from stellar_ops.core.config import Section

CHECK_NAMES = ("services", "alerts", "backups", "disk", "indexer_lag", "certificates", "wal_archive")
_ENDPOINT = re.compile(r"^(tcp|tls|http|https)://[^/\s:]+:\d{1,5}(/\S*)?$|^(http|https)://[^/\s]+(/\S*)?$")


class Endpoint(Section):
    name: str = Field(min_length=1, description="What the endpoint is, as the summary names it.")
    url: str = Field(
        description="tcp://host:port (a connect), tls://host:port (a verified handshake, e.g. nginx), "
        "or an http(s):// URL answering below 400."
    )
    server_name: str | None = Field(None, description="TLS server name (SNI) of a tls:// endpoint.")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not _ENDPOINT.match(value):
            raise ValueError(f"{value!r} must be tcp://host:port, tls://host:port or an http(s):// URL")
        return value


class Domain(Section):
    host: str = Field(min_length=1, description="Host to connect to.")
    port: int = Field(443, ge=1, le=65535, description="TLS port.")
    server_name: str | None = Field(None, description="Server name (SNI) and name verified; null: host.")


class HealthConfig(Section):
    check_timeout_seconds: float = Field(
        30.0, gt=0, description="Longest one check may take; a check that takes longer is unknown."
    )
    probe_timeout_seconds: float = Field(
        5.0, gt=0, description="Connect and answer timeout of each network probe within a check."
    )
    services_source: Literal["auto", "docker", "endpoints"] = Field(
        "auto",
        description="services: docker reads the containers through the Docker connection; endpoints "
        "probes the database, Redis, the API, the bucket and health.endpoints; auto uses Docker when "
        "its daemon answers, else the endpoints.",
    )
    services: list[str] = Field(
        default_factory=lambda: ["api", "postgres", "redis", "nginx", "indexer"],
        description="Containers expected running and healthy (compose service or container names).",
    )
    max_restarts: int = Field(
        0, ge=0, description="Restarts of one container since the previous check above which it is a warning."
    )
    endpoints: list[Endpoint] = Field(
        default_factory=list,
        description="Further endpoints probed when the services are checked by reachability, "
        'for example {"name": "nginx", "url": "tls://escrow.example:443"}.',
    )
    ignore_alert_dags: list[str] = Field(
        default_factory=lambda: ["morning_health_check"],
        description="Alerts whose dag_id or procedure label is one of these are left out (this check's own "
        "failure and the rules on its metrics).",
    )
    alerts_lookback_hours: float = Field(
        24.0, gt=0, description="Without a previous check on record, alerts newer than this are overnight."
    )
    backup_max_age_hours: float = Field(
        26.0,
        gt=0,
        description="The newest verified backup must have finished within this (Barman's "
        "last_backup_maximum_age).",
    )
    backup_min_size_ratio: float = Field(
        0.5,
        ge=0,
        le=1,
        description="The newest verified backup must be at least this share of the previous verified "
        "one's size; 0 switches the size check off.",
    )
    dr_max_age_days: float = Field(
        35.0, gt=0, description="The newest DR report older than this is a warning (the drill is monthly)."
    )
    disk_paths: list[str] = Field(
        default_factory=lambda: ["/"],
        description="Paths whose filesystems are checked (data directories, docker volume mountpoints).",
    )
    disk_volumes: list[str] = Field(
        default_factory=list,
        description="Docker volumes whose filesystems are checked, found by their mountpoint through the "
        "Docker connection (the mountpoint must be visible where the check runs).",
    )
    disk_warning_percent: float = Field(70.0, gt=0, le=100, description="Disk use at or above this warns.")
    disk_critical_percent: float = Field(
        85.0, gt=0, le=100, description="Disk use at or above this is critical."
    )
    indexer_lag_warning_seconds: float = Field(
        60.0, ge=0, description="Indexer lag (the API's /health) above this warns."
    )
    indexer_lag_critical_seconds: float = Field(
        300.0, ge=0, description="Indexer lag above this is critical: P2 IndexerLag."
    )
    tls_results_max_age_hours: float = Field(
        13.0,
        gt=0,
        description="TLS results (<backup.prefix>tls/latest.json) older than this are not used: the "
        "domains are probed afresh.",
    )
    tls_domains: list[Domain] = Field(
        default_factory=list, description="Domains probed when there are no recent TLS results."
    )
    tls_ca_file: str | None = Field(
        None, description="CA bundle the fresh probe verifies against; null is the system's."
    )
    tls_warning_days: int = Field(30, ge=0, description="A certificate with fewer days left warns.")
    tls_critical_days: int = Field(7, ge=0, description="A certificate with fewer days left is critical.")

    @model_validator(mode="after")
    def _ordered(self) -> HealthConfig:
        if self.disk_critical_percent < self.disk_warning_percent:
            raise ValueError("disk_critical_percent: must be at least disk_warning_percent")
        if self.indexer_lag_critical_seconds < self.indexer_lag_warning_seconds:
            raise ValueError("indexer_lag_critical_seconds: must be at least indexer_lag_warning_seconds")
        if self.tls_critical_days > self.tls_warning_days:
            raise ValueError("tls_critical_days: must be at most tls_warning_days")
        return self
