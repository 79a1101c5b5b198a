"""The ``tls`` section: the domains to probe, the thresholds, and how certbot and nginx are run."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Literal

from pydantic import Field, field_validator, model_validator

from stellar_ops.core.config import Section
from stellar_ops.probes.tls import Target

_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$|^\[?[0-9a-fA-F:.]+\]?$")
_CERT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class TlsDomain(Section):
    host: str = Field(description="Host name or IP address to connect to.")
    port: int = Field(443, ge=1, le=65535, description="TCP port of the TLS endpoint.")
    server_name: str | None = Field(
        None, description="SNI name sent and verified against the certificate; null uses host."
    )
    ca_bundle: str | None = Field(
        None, description="PEM file of the CAs to trust for this domain; null uses the system CAs."
    )
    cert_name: str | None = Field(
        None, description="certbot's certificate name (its lineage); null uses the SNI name."
    )

    @field_validator("host", "server_name")
    @classmethod
    def _hostname(cls, value: str | None) -> str | None:
        if value is not None and not _HOST.match(value):
            raise ValueError(f"{value!r} is not a host name or IP address")
        return value

    @field_validator("cert_name")
    @classmethod
    def _lineage(cls, value: str | None) -> str | None:
        if value is not None and not _CERT_NAME.match(value):
            raise ValueError(f"{value!r} is not a certbot certificate name")
        return value

    @property
    def sni(self) -> str:
        return self.server_name or self.host

    @property
    def lineage(self) -> str:
        return self.cert_name or self.sni

    def target(self) -> Target:
        return Target(self.host, self.port, self.server_name, self.ca_bundle)

    @property
    def label(self) -> str:
        """The ``domain`` label of metrics and alerts (``name`` or ``name@host:port``)."""
        return self.target().label


class TlsConfig(Section):
    domains: list[TlsDomain] = Field(
        default_factory=list,
        description="The TLS endpoints to check, each {host, port (443), server_name (SNI; null: host), "
        "ca_bundle (null: system CAs), cert_name (certbot lineage; null: the SNI name)}.",
    )
    warning_days: float = Field(30, gt=0, description="State warning under this many days left.")
    critical_days: float = Field(
        14, gt=0, description="State critical under this many days left (alerts P2)."
    )
    renew_below_days: float = Field(30, ge=0, description="Renew through certbot under this many days left.")
    min_renewal_interval: timedelta = Field(
        timedelta(hours=24),
        ge=timedelta(0),
        description="No automatic renewal of a certificate (certbot lineage) sooner than this after its "
        "last one, as recorded in <backup.prefix>tls/renewals/<cert_name>.json, so that a certificate "
        "still due after a renewal cannot run into the CA's rate limits; force_renewal ignores it. "
        'An ISO 8601 duration ("P1D", "PT12H") or seconds.',
    )
    renew: bool = Field(True, description="Renew automatically; false only probes and alerts.")
    connect_timeout_seconds: float = Field(5, gt=0, description="TCP connect timeout of a probe.")
    handshake_timeout_seconds: float = Field(10, gt=0, description="TLS handshake timeout of a probe.")
    max_concurrency: int = Field(16, ge=1, le=256, description="Probes run at once (CLI and bulk probes).")
    executor: Literal["local", "docker"] = Field(
        "local",
        description="local: certbot and nginx run as commands here; docker: in their containers "
        "(docker-compose's certbot and nginx services) through the Docker connection.",
    )
    certbot_command: list[str] = Field(
        default_factory=lambda: ["certbot"],
        description="certbot's argv prefix (locally the program; in docker mode run in certbot_container).",
    )
    certbot_action: Literal["renew", "certonly"] = Field(
        "renew",
        description="renew: `certbot renew --cert-name NAME --force-renewal`; certonly: `certbot certonly "
        "--cert-name NAME -d SNI --force-renewal` with certbot_certonly_args (for example the webroot).",
    )
    certbot_config_dir: str | None = Field(
        None, description="certbot --config-dir (null: certbot's default)."
    )
    certbot_work_dir: str | None = Field(None, description="certbot --work-dir (null: certbot's default).")
    certbot_logs_dir: str | None = Field(None, description="certbot --logs-dir (null: certbot's default).")
    certbot_server: str | None = Field(
        None, description="ACME directory URL (certbot --server); null: the one the lineage was issued by."
    )
    certbot_ca_bundle: str | None = Field(
        None, description="CA bundle certbot trusts for the ACME server (its REQUESTS_CA_BUNDLE)."
    )
    certbot_certonly_args: list[str] = Field(
        default_factory=list,
        description="Extra arguments of certonly, for example ['--webroot', '-w', '/var/www/acme'].",
    )
    certbot_extra_args: list[str] = Field(
        default_factory=list, description="Extra arguments of every certbot run."
    )
    certbot_timeout_seconds: float = Field(300, gt=0, description="How long one certbot run may take.")
    certbot_container: str = Field(
        "certbot", description="The certbot container in docker mode (docker-compose's certbot service)."
    )
    nginx_reload_command: list[str] = Field(
        default_factory=lambda: ["nginx", "-s", "reload"],
        description="How nginx is reloaded (locally the program; in docker mode run in nginx_container).",
    )
    nginx_container: str = Field("nginx", description="The nginx container in docker mode.")
    reload_settle_seconds: float = Field(
        1.0, ge=0, description="Between re-probes after the reload, while nginx's old workers drain."
    )
    reprobe_attempts: int = Field(
        5, ge=1, description="Re-probes after the reload before a renewal is judged not served."
    )

    @model_validator(mode="after")
    def _thresholds(self) -> TlsConfig:
        if self.critical_days > self.warning_days:
            raise ValueError(
                f"critical_days: {self.critical_days:g} must not exceed warning_days ({self.warning_days:g})"
            )
        labels = [d.label for d in self.domains]
        duplicated = sorted({label for label in labels if labels.count(label) > 1})
        if duplicated:
            raise ValueError(f"domains: listed more than once: {', '.join(duplicated)}")
        return self

    def domain(self, name: str) -> TlsDomain:
        """The configured domain whose label, SNI name or host is ``name``."""
        for candidate in self.domains:
            if name in (candidate.label, candidate.sni):
                return candidate
        for candidate in self.domains:
            if name == candidate.host:
                return candidate
        known = ", ".join(d.label for d in self.domains) or "none"
        raise KeyError(f"{name!r} is not one of tls.domains (configured: {known})")
