"""Task bodies of ``db_base_backup``: each runs one step of :mod:`stellar_ops.pitr.flow`."""

from __future__ import annotations

import time
from typing import Any

from stellar_ops.adapters.common.runtime import checked, current_context, task_logger, task_runtime
from stellar_ops.pitr import flow
from stellar_ops.pitr.layout import BaseBackupRecord

log = task_logger()

KEYS_SHOWN = 10  # of the deleted keys in apply_retention's XCom; the task log names every one


@checked
def check_prerequisites() -> dict[str, Any]:
    return flow.check_prerequisites(task_runtime())


@checked
def take_base_backup() -> dict[str, Any]:
    """The base backup; XCom carries its record (a few hundred bytes) and how long it took."""
    started = time.monotonic()
    record = flow.take(task_runtime())
    return {**flow.record_summary(record), "duration_seconds": round(time.monotonic() - started, 3)}


@checked
def verify_base_backup(taken: dict[str, Any]) -> dict[str, Any]:
    return flow.verify(task_runtime(), str(taken["backup_id"]))


@checked
def apply_retention(verified: dict[str, Any], dry_run: bool) -> dict[str, Any]:
    """After a verified base backup only: the counts and the first keys deleted."""
    return flow.apply_retention(task_runtime(), dry_run=dry_run).as_dict(dry_run=dry_run, shown=KEYS_SHOWN)


@checked
def notify_success(taken: dict[str, Any]) -> None:
    flow.notify_success(task_runtime(), BaseBackupRecord.from_json(_record_fields(taken)))


@checked
def publish_metrics() -> dict[str, float]:
    """Runs whatever happened upstream: the base backup's metrics (or success=0) and the window."""
    ti = current_context()["ti"]
    taken = ti.xcom_pull(task_ids="take_base_backup")
    verified = ti.xcom_pull(task_ids="verify_base_backup")
    record = BaseBackupRecord.from_json(_record_fields(taken)) if taken and verified else None
    duration = float(taken["duration_seconds"]) if record is not None and taken else None
    points = flow.publish_metrics(task_runtime(), record, duration)
    return {m.name: m.value for m in points}


def _record_fields(taken: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in taken.items() if k != "duration_seconds"}
