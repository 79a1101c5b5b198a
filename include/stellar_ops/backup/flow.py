"""The backup procedure's steps, defined once.

``db_backup`` runs one step per task (the task ids are the step names) and ``stellar-ops backup``
runs them in order; both hand each step the same :class:`~stellar_ops.runtime.Runtime`, so a
backup, its manifest, its metrics and its messages are the same whoever takes it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Protocol

from stellar_ops.backup import report
from stellar_ops.backup.config import BackupConfig, RetentionConfig
from stellar_ops.backup.dump import BackupJob, Prerequisites, verify_upload
from stellar_ops.backup.report import Published
from stellar_ops.backup.retention import RetentionOutcome, apply_policy, require_this_run_verified
from stellar_ops.backup.slots import Cover, is_past
from stellar_ops.catalogue.keys import INCOMING_DIR
from stellar_ops.catalogue.manifest import Manifest
from stellar_ops.core.errors import BackupError
from stellar_ops.core.metrics import Metric
from stellar_ops.runtime import Runtime, RuntimeConfig

DAG_ID = "db_backup"
DRAFT_SUFFIX = ".draft.json"


class BackupSections(RuntimeConfig, Protocol):
    """The sections db_backup's steps read: ``backup``, ``retention``, and the runtime's own."""

    @property
    def backup(self) -> BackupConfig: ...
    @property
    def retention(self) -> RetentionConfig: ...


def _job(rt: Runtime[BackupSections]) -> BackupJob:
    return BackupJob(rt.database(), rt.store(), rt.config.backup, rt.binaries)


def check_prerequisites(rt: Runtime[BackupSections], slot: datetime) -> Prerequisites:
    """The database answers, pg_dump is new enough, the bucket and the local directory are writable;
    and the verified backup that covers the run's slot, if there is one."""
    prerequisites = _job(rt).check_prerequisites(slot, say=rt.say)
    rt.say(f"PostgreSQL {prerequisites.server_version}, {prerequisites.pg_dump_version}")
    if prerequisites.cover is None and is_past(slot, datetime.now(UTC)):
        rt.say(
            f"no verified backup covers slot {slot.isoformat()}, which is in the past: this run takes a backup "
            "now, named by its snapshot time, and says so"
        )
    return prerequisites


def skip_reason(slot: datetime, cover: Cover) -> str:
    """Why a run for ``slot`` takes no backup: the verified backup that covers it."""
    return f"a verified backup covers slot {slot.isoformat()}: {cover.key} ({cover.reason})"


def forced_over(rt: Runtime[BackupSections], cover: Cover) -> None:
    rt.say(f"force is set: taking another backup, under a key of its own, beside {rt.store().url(cover.key)}")


def dump_to_s3(
    rt: Runtime[BackupSections], slot: datetime, *, run_id: str | None, token: str
) -> dict[str, Any]:
    """Stream a dump to the key of its snapshot's time, checked on its way; the draft manifest (not
    yet published), which records the run's slot."""
    return _job(rt).dump(slot, run_id=run_id, token=token, say=rt.say)


def draft_key(rt: Runtime[BackupSections], key: str) -> str:
    """Where the draft manifest of the upload at ``key`` waits for its verification: under
    ``.incoming/``, which the inventory never takes for a backup and retention empties of
    whatever is older than ``backup.stale_upload_hours`` (a draft whose run failed)."""
    return f"{rt.config.backup.prefix}{INCOMING_DIR}{key.rsplit('/', 1)[-1]}{DRAFT_SUFFIX}"


def stage_draft(rt: Runtime[BackupSections], draft: dict[str, Any]) -> dict[str, Any]:
    """Put the draft manifest (its schema and row counts grow with the tables) in the bucket; what
    the next steps need to find it, a few hundred bytes whatever the database."""
    where = draft_key(rt, draft["key"])
    rt.store().put_json(where, draft)
    rt.say(
        f"draft manifest of {draft['key']} ({len(draft.get('row_counts') or {})} tables) at {rt.store().url(where)}"
    )
    return {
        "key": draft["key"],
        "draft_key": where,
        "sha256": draft["sha256"],
        "size_bytes": draft["size_bytes"],
        "slot": draft["slot"],
        "snapshot_at": draft["snapshot_at"],
        "note": draft["note"],
        "tables": len(draft.get("row_counts") or {}),
    }


def load_draft(rt: Runtime[BackupSections], staged: dict[str, Any]) -> dict[str, Any]:
    """The draft manifest that :func:`stage_draft` put in the bucket, checked to be that upload's.

    A whole draft (what a run of an earlier version passed along) is taken as it is.
    """
    if "draft_key" not in staged:
        return staged
    store = rt.store()
    where = staged["draft_key"]
    if not store.exists(where):
        raise BackupError(
            f"the draft manifest {store.url(where)} of {staged['key']} is gone (published already, or removed by "
            "retention as stale): clear dump_to_s3 to take the backup again"
        )
    draft = store.get_json(where)
    if (
        not isinstance(draft, dict)
        or draft.get("key") != staged["key"]
        or draft.get("sha256") != staged["sha256"]
    ):
        raise BackupError(
            f"{store.url(where)} is not the draft manifest of {staged['key']}: clear dump_to_s3"
        )
    return draft


def discard_draft(rt: Runtime[BackupSections], staged: dict[str, Any]) -> None:
    """Remove the draft once its manifest is published; one left behind goes with retention."""
    if "draft_key" not in staged:
        return
    try:
        rt.store().delete(staged["draft_key"])
    except BackupError as exc:
        rt.warn(f"the draft manifest stays until retention removes it as stale: {exc}")


def verify_backup(rt: Runtime[BackupSections], draft: dict[str, Any]) -> dict[str, Any]:
    """The upload's verification record: the in-flight checks (or a read-back), against the draft."""
    read_back = rt.config.backup.verify_read_back
    verification = verify_upload(rt.store(), draft, rt.binaries, read_back=read_back)
    where = rt.store().url(draft["key"])
    rt.say(
        f"verified {where} {'by reading it back' if read_back else 'in flight'}: {', '.join(verification['checks'])}"
    )
    return verification


def publish_backup(
    rt: Runtime[BackupSections], draft: dict[str, Any], verification: dict[str, Any]
) -> Manifest:
    """Make the verified upload a backup: its manifest, written last."""
    manifest = _job(rt).publish(draft, verification)
    rt.say(f"published {rt.store().url(manifest.key)} with its manifest")
    return manifest


def apply_retention(rt: Runtime[BackupSections], published: Published, *, dry_run: bool) -> RetentionOutcome:
    """Retention relative to this run's backup (its snapshot time), only once it is verified."""
    store = rt.store()
    require_this_run_verified(store, published.key)
    reference = published.data_time
    return apply_policy(
        store,
        rt.config.backup,
        include_legacy=rt.config.retention.include_legacy,
        reference=reference,
        dry_run=dry_run,
        say=rt.say,
    )


def notify_success(rt: Runtime[BackupSections], published: Published) -> None:
    if not rt.config.backup.notify_on_success:
        rt.say("success notifications are off (backup.notify_on_success)")
        return
    rt.notify(report.success_message(published))


def publish_metrics(rt: Runtime[BackupSections], published: Published | None) -> list[Metric]:
    """The run's metrics: the published backup's, or ``stellar_backup_success=0``."""
    points = report.backup_metrics(published)
    rt.publish_metrics(DAG_ID, points)
    return points
