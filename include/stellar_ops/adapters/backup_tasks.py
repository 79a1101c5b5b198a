"""Task bodies of ``db_backup``: each is the single call its DAG task makes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from stellar_ops import alerts, metrics, retention
from stellar_ops.adapters.alerting import send
from stellar_ops.adapters.assets import BACKUP_ASSET
from stellar_ops.adapters.connections import pg_target, s3_store
from stellar_ops.adapters.metrics import send_metrics
from stellar_ops.adapters.runtime import (
    checked,
    current_context,
    load_config,
    run_slot,
    task_logger,
    try_token,
)
from stellar_ops.backup import BackupJob, verify_upload
from stellar_ops.config import StellarOpsConfig
from stellar_ops.pg import find_binaries

log = task_logger()


def _job(config: StellarOpsConfig) -> BackupJob:
    return BackupJob(
        pg_target(config.connections.db),
        s3_store(config),
        config.backup,
        find_binaries(config.backup.pg_bin_dir),
    )


@checked
def check_prerequisites(force: bool) -> dict[str, Any]:
    from airflow.sdk.exceptions import AirflowSkipException

    config = load_config()
    slot = run_slot(current_context())
    prerequisites = _job(config).check_prerequisites(slot)
    log.info(
        "PostgreSQL %s, %s; backup key for slot %s is %s",
        prerequisites.server_version,
        prerequisites.pg_dump_version,
        slot.isoformat(),
        prerequisites.key,
    )
    if prerequisites.verified_backup_exists and not force:
        raise AirflowSkipException(
            f"a verified backup for this slot already exists ({prerequisites.key}); trigger with force=true "
            "to take it again"
        )
    return {"key": prerequisites.key, "slot": slot.isoformat()}


@checked
def dump_to_s3() -> dict[str, Any]:
    config = load_config()
    context = current_context()
    return _job(config).dump(
        run_slot(context), run_id=context["dag_run"].run_id, token=try_token(context), say=log.info
    )


@checked
def verify_backup(draft: dict[str, Any]) -> dict[str, Any]:
    config = load_config()
    verification = verify_upload(s3_store(config), draft, find_binaries(config.backup.pg_bin_dir))
    log.info("verified %s: %s", draft["temp_key"], ", ".join(verification["checks"]))
    return verification


@checked
def publish_backup(draft: dict[str, Any], verification: dict[str, Any]) -> dict[str, Any]:
    config = load_config()
    manifest = _job(config).publish(draft, verification)
    summary = {
        "key": manifest.key,
        "manifest_key": manifest.key + ".manifest.json",
        "bucket": manifest.bucket,
        "size_bytes": manifest.size_bytes,
        "sha256": manifest.sha256,
        "duration_seconds": manifest.duration_seconds,
        "finished_at": manifest.finished_at.isoformat(),
        "slot": manifest.slot.isoformat(),
        "dump_format": manifest.dump_format,
    }
    # The Asset event carries the manifest too (all but the schema), so consumers need no S3 read.
    document = manifest.to_document()
    document.pop("schema")
    current_context()["outlet_events"][BACKUP_ASSET].extra = {**summary, "manifest": document}
    log.info("published s3://%s/%s with its manifest", manifest.bucket, manifest.key)
    return summary


@checked
def apply_retention(published: dict[str, Any], dry_run: bool) -> dict[str, Any]:
    config = load_config()
    store = s3_store(config)
    retention.require_this_run_verified(store, published["key"])
    reference = datetime.fromisoformat(published["slot"])
    return retention.apply_policy(
        store, config.backup, reference=reference, dry_run=dry_run, say=log.info
    ).as_dict()


@checked
def notify_success(published: dict[str, Any]) -> None:
    config = load_config()
    if not config.backup.notify_on_success:
        log.info("success notifications are off (backup.notify_on_success)")
        return
    send(config, alerts.info_message(_success_text(published)))


def _success_text(published: dict[str, Any]) -> str:
    return (
        f":white_check_mark: Backup OK: s3://{published['bucket']}/{published['key']} "
        f"({alerts.human_bytes(published['size_bytes'])}, {published['duration_seconds']:.1f}s)"
    )


@checked
def publish_metrics() -> dict[str, Any] | None:
    """Runs whatever happened upstream: success metrics, or stellar_backup_success=0."""
    context = current_context()
    ti = context["ti"]
    published = ti.xcom_pull(task_ids="publish_backup")
    if published is None and _skipped_as_done(ti):
        log.info("this slot was already backed up: no metrics to publish")
        return None
    config = load_config()
    if published:
        points = metrics.backup_metrics(
            success=True,
            finished_at=datetime.fromisoformat(published["finished_at"]),
            size_bytes=published["size_bytes"],
            duration_seconds=published["duration_seconds"],
        )
    else:
        points = metrics.backup_metrics(
            success=False, finished_at=datetime.now(UTC), size_bytes=0, duration_seconds=0
        )
    send_metrics(config, "db_backup", points)
    return {m.name: m.value for m in points}


def _skipped_as_done(ti: Any) -> bool:
    states = ti.get_task_states(dag_id=ti.dag_id, run_ids=[ti.run_id], task_ids=["check_prerequisites"])
    return states.get(ti.run_id, {}).get("check_prerequisites") == "skipped"
