"""What a procedure's steps run with, whoever runs them.

A :class:`Runtime` holds the configuration, the :class:`Resources` (the database, the bucket,
the HTTP endpoints and the notification channel), and where progress is said. The Airflow
adapters build it from connections and the config Variable
(:mod:`stellar_ops.adapters.common.runtime`); the CLI builds it from the environment
(:mod:`stellar_ops.cli.env`). The steps themselves never know which.

The runtime is generic in its configuration and never knows the root one
(:class:`stellar_ops.registry.StellarOpsConfig`, which composes every procedure's section): it
reads only :class:`RuntimeConfig`. Each procedure's flow names what it reads in a protocol that
extends :class:`RuntimeConfig` (``backup.flow.BackupSections``: ``backup``, ``retention``), and
takes a ``Runtime[ThoseSections]``; the root config satisfies every such protocol structurally.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from stellar_ops.core import alertmanager, alerts, metrics
from stellar_ops.core.config import AlertsConfig, Channel, MetricsConfig
from stellar_ops.core.errors import StellarOpsError
from stellar_ops.core.http import HttpEndpoint, RedisTarget
from stellar_ops.core.runbooks import runbook_link
from stellar_ops.core.taxonomy import Severity
from stellar_ops.postgres.binaries import BinariesSetting, PgBinaries, find_binaries
from stellar_ops.postgres.target import PgTarget
from stellar_ops.storage.s3 import S3Store

log = logging.getLogger(__name__)


class RuntimeConfig(Protocol):
    """The sections the runtime reads itself: where the PostgreSQL client programs are
    (``backup.pg_bin_dir``), where notifications and alerts go, and where metrics are published."""

    @property
    def backup(self) -> BinariesSetting: ...
    @property
    def alerts(self) -> AlertsConfig: ...
    @property
    def metrics(self) -> MetricsConfig: ...


# covariant: a Runtime[StellarOpsConfig] is a Runtime[BackupSections], and one of any procedure's
C = TypeVar("C", bound=RuntimeConfig, covariant=True)


class Resources(Protocol):
    """Where the procedures' targets are; every secret in them is already registered as one."""

    def database(self) -> PgTarget:
        """The StellarEscrow database."""
        ...

    def store(self) -> S3Store:
        """The backups bucket."""
        ...

    def endpoint(self, name: str) -> HttpEndpoint | None:
        """``api``, ``pushgateway`` or ``alertmanager``; None when it is not configured."""
        ...

    def send_message(self, payload: dict[str, Any], channel: Channel = "ops") -> None:
        """Post a notification (a Slack incoming-webhook payload) to the ops or the paging channel;
        a no-op when notifications are switched off."""
        ...

    def redis(self) -> RedisTarget | None:
        """The Redis server whose statistics are read; None when it is not configured."""
        ...

    def docker(self) -> Any | None:
        """A ``docker.APIClient`` for the Docker daemon; None when no Docker connection is configured."""
        ...


@dataclass
class Runtime(Generic[C]):
    """A procedure's steps run with this; ``C`` is what they read of the configuration."""

    config: C
    resources: Resources
    say: Callable[[str], None] = log.info
    warn: Callable[[str], None] = log.warning
    # The procedure (its DAG id) and run this runtime serves: every PostgreSQL session it opens
    # says so in application_name (stellar-ops/<procedure>/<run id>), for pg_stat_activity.
    procedure: str | None = None
    run_id: str | None = None
    _store: S3Store | None = field(default=None, init=False, repr=False)

    def database(self) -> PgTarget:
        return self.labelled(self.resources.database())

    def labelled(self, target: PgTarget) -> PgTarget:
        """``target`` with this run's sessions named after the procedure and run (any server the
        procedure connects to: the source, a restore target, a scratch server)."""
        return target.for_session(self.procedure, self.run_id) if self.procedure else target

    def store(self) -> S3Store:
        if self._store is None:
            self._store = self.resources.store()
        return self._store

    @functools.cached_property
    def binaries(self) -> PgBinaries:
        return find_binaries(self.config.backup.pg_bin_dir)

    def notify(self, payload: dict[str, Any], severity: Severity | None = None) -> None:
        """Send a message on the route of ``severity`` (``alerts.routes``); without one, to ops."""
        channel: Channel = self.config.alerts.routes[severity] if severity else "ops"
        self.resources.send_message(payload, channel)

    def alert(self, finding: alerts.Finding) -> None:
        """Send what a procedure found (not a failure of the procedure itself), on its severity's
        route, and to Alertmanager when ``alerts.alertmanager_severities`` names its severity."""
        self.warn(f"{finding.alert_name} ({finding.severity}): {finding.summary}")
        self.notify(alerts.finding_message(finding, self.config.alerts), finding.severity)
        settings = self.config.alerts
        endpoint = self.resources.endpoint("alertmanager")
        if finding.severity in settings.alertmanager_severities and endpoint is not None:
            document = alertmanager.alert(
                name=finding.alert_name,
                severity=finding.severity,
                labels={"dag_id": finding.dag_id, **finding.labels},
                summary=finding.summary,
                runbook=finding.runbook,
                runbook_url=runbook_link(finding.runbook, settings.runbook_base_url),
            )
            try:
                alertmanager.post(endpoint, [document])
            except StellarOpsError as exc:
                self.warn(f"the finding was sent, but not to Alertmanager: {exc}")

    def publish_metrics(
        self, procedure: str, points: list[metrics.Metric], grouping: dict[str, str] | None = None
    ) -> None:
        metrics.publish(
            points,
            procedure=procedure,
            config=self.config.metrics,
            gateway=self.resources.endpoint("pushgateway"),
            api=self.resources.endpoint("api"),
            say=self.say,
            warn=self.warn,
            grouping=grouping,
        )
