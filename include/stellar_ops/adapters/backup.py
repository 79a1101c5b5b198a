"""Task bodies of ``db_backup``: each runs one step of :mod:`stellar_ops.backup.flow`."""

from __future__ import annotations

from typing import Any

from stellar_ops.adapters.common.assets import BACKUP_ASSET
from stellar_ops.adapters.common.runs import start_run
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
    rt = task_runtime()
    prerequisites = flow.check_prerequisites(rt, slot)
    cover = prerequisites.cover
    if cover is not None and not force:
        raise AirflowSkipException(
            f"{flow.skip_reason(slot, cover)}; trigger with force=true to take another"
        )
    if cover is not None:
        flow.forced_over(rt, cover)
    return {"slot": slot.isoformat(), "covering_backup": cover.key if cover else None}


@checked
def dump_to_s3() -> dict[str, Any]:
    """The dump; its draft manifest (a schema and a row count per table) goes to the bucket, and
    XCom carries its key with a short summary."""
    context = current_context()
    rt = task_runtime()
    draft = flow.dump_to_s3(rt, run_slot(context), run_id=context["dag_run"].run_id, token=try_token(context))
    return flow.stage_draft(rt, draft)


@checked
def verify_backup(staged: dict[str, Any]) -> dict[str, Any]:
    rt = task_runtime()
    return flow.verify_backup(rt, flow.load_draft(rt, staged))


@checked
def publish_backup(staged: dict[str, Any], verification: dict[str, Any]) -> dict[str, Any]:
    rt = task_runtime()
    manifest = flow.publish_backup(rt, flow.load_draft(rt, staged), verification)
    flow.discard_draft(rt, staged)
    published = Published.from_manifest(manifest)
    current_context()["outlet_events"][BACKUP_ASSET].extra = published.asset_event_extra(manifest)
    return published.as_dict()


KEYS_SHOWN = 10  # of each list in apply_retention's XCom; the task log names every key


@checked
def apply_retention(published: dict[str, Any], dry_run: bool) -> dict[str, Any]:
    """The counts, and the first keys of each list: what it kept and deleted grows with the bucket."""
    outcome = flow.apply_retention(task_runtime(), Published.from_dict(published), dry_run=dry_run).as_dict()
    summary: dict[str, Any] = {"dry_run": outcome["dry_run"]}
    for name in ("kept", "deleted", "local_deleted"):
        keys = list(outcome[name])  # type: ignore[call-overload]
        summary[name] = keys[:KEYS_SHOWN]
        summary[f"{name}_count"] = len(keys)
    return summary


@checked
def notify_success(published: dict[str, Any]) -> None:
    flow.notify_success(task_runtime(), Published.from_dict(published))


@checked
def publish_metrics() -> dict[str, Any] | None:
    """Runs whatever happened upstream: success metrics, or stellar_backup_success=0."""
    ti = current_context()["ti"]
    published = ti.xcom_pull(task_ids="publish_backup")
    if published is None and task_states(ti, ["check_prerequisites"]).get("check_prerequisites") == "skipped":
        log.info("a verified backup covers this slot: no metrics to publish")
        return None
    points = flow.publish_metrics(task_runtime(), Published.from_dict(published) if published else None)
    return {m.name: m.value for m in points}


@checked
def trigger_drill(published: dict[str, Any]) -> None:
    """Start a ``dr_restore_test`` run of the new backup when ``dr.trigger_on_new_backup`` asks for
    one; skip otherwise, so no drill run starts to do nothing."""
    from airflow.sdk.exceptions import AirflowSkipException

    if not task_runtime().config.dr.trigger_on_new_backup:
        raise AirflowSkipException("dr.trigger_on_new_backup is off: no DR test of this backup now")
    key = published["key"]
    ti = current_context()["ti"]
    run_id = f"drill_of__{ti.run_id}"
    log.info("starting dr_restore_test run %s to test %s", run_id, key)
    # a cleared backup run does not start a second drill
    raise start_run(
        "dr_restore_test", run_id, {"backup": key}, f"Started by db_backup run {ti.run_id} for {key}"
    )
