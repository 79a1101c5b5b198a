"""
# morning_health_check: the on-call shift's first five minutes

**Schedule:** daily 07:00 UTC, before the shift starts. **Severity:** P2. **Owner:** platform.

## What it does
Seven independent checks run in parallel, each `ok`, `warning`, `critical` or `unknown`, each
under its own timeout (`health.check_timeout_seconds`; a check that takes longer is `unknown`):
1. `check_services`: every expected container running, healthy and not restarting (Docker); without
   a Docker daemon, each service reached for real: PostgreSQL runs a query, Redis answers `PING`,
   the API's `/health` answers, the bucket answers `HeadBucket`, and `health.endpoints` (nginx
   over TLS...) connect.
2. `check_alerts`: Alertmanager's firing alerts by severity with their age, the new ones since the
   previous check, and those resolved since. A firing P1 is critical, a P2 a warning.
3. `check_backups`: the newest *verified* backup (its manifest) finished within
   `health.backup_max_age_hours` (26 h) and is not below `health.backup_min_size_ratio` of the
   previous one; the newest DR report passed and is recent.
4. `check_disk`: each of `health.disk_paths` and `health.disk_volumes` (Docker volumes, by
   their mountpoint) below 70% (warning) and 85% (critical).
5. `check_indexer_lag`: the API's `/health`; over 5 minutes is P2 IndexerLag.
6. `check_certificates`: the days left that `tls_cert_check` recorded
   (`<backup.prefix>tls/latest.json`), or a fresh probe of `health.tls_domains` when none is recent.
7. `check_wal_archive`: WAL archiving, the ground of point-in-time recovery, from the database's
   `pg_stat_archiver`: a failure newer than the last success is P1 WalArchiveFailing (naming the
   WAL file); a complete segment waiting with nothing archived for over
   `pitr.max_archive_lag_seconds` (5 min) is P2 WalArchiveLagging (an idle server is not lagging);
   `archive_mode` off is green, or P2 WalArchiveDisabled when `pitr.required`.
8. `summarize_health`: sends **one message** (a table of the checks, with runbook links) and
   pushes `stellar_health_check_status{check}` (0 ok, 1 warning, 2 critical, 3 unknown), and
   with archive_mode on `stellar_pitr_archive_lag_seconds` and `stellar_pitr_archive_failing`. It
   **fails when any check is critical**; warnings keep it green and are in the message.
9. `confirm_success`: the run's verdict: green only when every step above succeeded or was
   skipped on purpose, red when any of them failed.

A backfilled run checks the present: the services, alerts and backups as they are now, not as
they were on its date.

## Is it safe to re-run?
Yes. It only reads, except the small records of what it saw (`<backup.prefix>health/`) that let
the next run tell new alerts and restarts apart. A re-run sends another summary message.

## When it fails
The failure names each critical check; the message links its runbook:
- *services*: RB-001 (database or API unavailable); start the stopped service.
- *alerts*: the firing P1 alert's own runbook.
- *backups*: RB-002 (stale or suspiciously small backup), RB-003 (the DR test failed).
- *disk*: free space on the named path before it reaches 100%.
- *indexer_lag*: RB-001; the indexer is behind the chain.
- *certificates*: RB-004; run `tls_cert_check`.
- *wal_archive*: PITR-ARCHIVE; read `archive_command`'s errors in the server log, the bucket and
  its credentials, and how full `pg_wal` is.

An `unknown` check could not be checked (a timeout, a missing connection): it does not fail the
run, but the message says why.

## Triage
P2: within the hour; a failing WAL archive (P1 WalArchiveFailing) pages: within 15 minutes.
Without Airflow: `stellar-ops health` runs the same checks from a terminal.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import task

from stellar_ops.adapters import health as steps
from stellar_ops.adapters.common.dag import procedure_dag
from stellar_ops.adapters.common.queues import docker_queue


@procedure_dag(
    "morning_health_check",
    schedule="0 7 * * *",
    doc=__doc__,
    execution_timeout=timedelta(minutes=5),
)
def morning_health_check() -> None:
    @task(**docker_queue())  # may read the Docker daemon
    def check_services() -> dict:
        return steps.check("services")

    @task
    def check_alerts() -> dict:
        return steps.check("alerts")

    @task
    def check_backups() -> dict:
        return steps.check("backups")

    @task(**docker_queue())  # may read the Docker daemon
    def check_disk() -> dict:
        return steps.check("disk")

    @task
    def check_indexer_lag() -> dict:
        return steps.check("indexer_lag")

    @task
    def check_certificates() -> dict:
        return steps.check("certificates")

    @task
    def check_wal_archive() -> dict:
        return steps.check("wal_archive")

    @task
    def summarize_health(results: list) -> dict:
        return steps.summarize_health(results)

    summarize_health(
        [
            check_services(),
            check_alerts(),
            check_backups(),
            check_disk(),
            check_indexer_lag(),
            check_certificates(),
            check_wal_archive(),
        ]
    )


morning_health_check()
