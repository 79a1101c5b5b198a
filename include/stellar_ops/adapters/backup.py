"""Task bodies of ``db_backup``: each runs one step of :mod:`stellar_ops.backup.flow`."""

from __future__ import annotations

from typing import Any

from stellar_ops.adapters.common.assets import BACKUP_ASSET
from stellar_ops.adapters.common.runtime import (
    checked,
    current_context,
    run_slot,
    task_logger,
    task_runtime,
    task_states,
    try_token,
)
from stellar_ops.backup import flow
from stellar_ops.backup.report import Published

log = task_logger()


@checked
def check_prerequisites(force: bool) -> dict[str, Any]:
    from airflow.sdk.exceptions import AirflowSkipException

    slot = run_slot(current_context())
    prerequisites = flow.check_prerequisites(task_runtime(), slot)
    if prerequisites.verified_backup_exists and not force:
        raise AirflowSkipException(
            f"a verified backup for this slot already exists ({prerequisites.key}); trigger with force=true "
            "to take it again"
        )
    return {"key": prerequisites.key, "slot": slot.isoformat()}


@checked
def dump_to_s3() -> dict[str, Any]:
    context = current_context()
    return flow.dump_to_s3(
        task_runtime(), run_slot(context), run_id=context["dag_run"].run_id, token=try_token(context)
    )


@checked
def verify_backup(draft: dict[str, Any]) -> dict[str, Any]:
    return flow.verify_backup(task_runtime(), draft)


@checked
def publish_backup(draft: dict[str, Any], verification: dict[str, Any]) -> dict[str, Any]:
    manifest = flow.publish_backup(task_runtime(), draft, verification)
    published = Published.from_manifest(manifest)
    # The Asset event carries the manifest too (all but the schema), so consumers need no S3 read.
    document = manifest.to_document()
    document.pop("schema")
    current_context()["outlet_events"][BACKUP_ASSET].extra = {**published.as_dict(), "manifest": document}
    return published.as_dict()


@checked
def apply_retention(published: dict[str, Any], dry_run: bool) -> dict[str, Any]:
    return flow.apply_retention(task_runtime(), Published.from_dict(published), dry_run=dry_run).as_dict()


@checked
def notify_success(published: dict[str, Any]) -> None:
    flow.notify_success(task_runtime(), Published.from_dict(published))


@checked
def publish_metrics() -> dict[str, Any] | None:
    """Runs whatever happened upstream: success metrics, or stellar_backup_success=0."""
    ti = current_context()["ti"]
    published = ti.xcom_pull(task_ids="publish_backup")
    if published is None and task_states(ti, ["check_prerequisites"]).get("check_prerequisites") == "skipped":
        log.info("this slot was already backed up: no metrics to publish")
        return None
    points = flow.publish_metrics(task_runtime(), Published.from_dict(published) if published else None)
    return {m.name: m.value for m in points}
