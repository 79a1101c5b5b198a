"""stellar_ops.retention: the pure S3 and local plans, and how they are applied."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from stellar_ops.backup.retention import (
    RetentionPlan,
    apply_local,
    apply_s3,
    plan_local,
    plan_s3,
    require_this_run_verified,
)
from stellar_ops.catalogue.inventory import BackupEntry, Listing, State
from stellar_ops.catalogue.keys import BackupName, parse_backup_key
from stellar_ops.core.errors import BackupError
from stellar_ops.storage.s3 import ObjectInfo

PREFIX = "backups/"
REFERENCE = datetime(2025, 3, 31, 2, 0, tzinfo=UTC)
STALE_BEFORE = REFERENCE - timedelta(hours=24)


def entry(stamp: str, state: State, *, ext: str | None = None, sidecars: tuple[str, ...] = ()) -> BackupEntry:
    """A listed backup named ``stellar_escrow_<stamp>.<ext>`` (ext from the state when not given)."""
    ext = ext or ("sql.gz" if state == "legacy" else "dump.zst")
    key = f"{PREFIX}stellar_escrow_{stamp}.{ext}"
    name = parse_backup_key(key, PREFIX)
    assert name is not None, key
    return BackupEntry(
        name=name,
        size=1000,
        last_modified=name.timestamp + timedelta(minutes=5),
        state=state,
        sidecars=tuple(key + suffix for suffix in sidecars),
    )


def verified(stamp: str, *, dr_report: bool = False) -> BackupEntry:
    suffixes = (".manifest.json", ".dr_report.json") if dr_report else (".manifest.json",)
    return entry(stamp, "verified", sidecars=suffixes)


def listing(
    *backups: BackupEntry, orphans: list[ObjectInfo] | None = None, incoming: list[ObjectInfo] | None = None
) -> Listing:
    ordered = sorted(backups, key=lambda e: e.name, reverse=True)  # inventory lists newest first
    return Listing(backups=ordered, orphan_sidecars=orphans or [], incoming=incoming or [])


def obj(key: str, last_modified: datetime) -> ObjectInfo:
    return ObjectInfo(key=key, size=10, last_modified=last_modified)


def plan(
    the_listing: Listing,
    *,
    retention_days: int = 30,
    min_keep: int = 2,
    reference: datetime = REFERENCE,
    unfinished: list[dict[str, object]] | None = None,
    include_legacy: bool = True,
) -> RetentionPlan:
    return plan_s3(
        the_listing,
        include_legacy=include_legacy,
        reference=reference,
        retention_days=retention_days,
        min_keep=min_keep,
        stale_before=STALE_BEFORE,
        unfinished_uploads=unfinished,
    )


# -- plan_s3 --------------------------------------------------------------------------------------


def test_mixed_ages_and_states_delete_exactly_the_old_ones() -> None:
    today = verified("20250331T020000Z")
    unverified_recent = entry("20250330T020000Z", "unverified")
    legacy_recent = entry("20250329_020000", "legacy")
    mid_month = verified("20250315T020000Z")
    at_cutoff = verified("20250301T020000Z")  # exactly retention_days old: kept
    just_past = verified("20250301T015959Z", dr_report=True)
    old_legacy = entry("20250110_020000", "legacy")
    old_unverified = entry("20250105T020000Z", "unverified")
    old_unverified_plain = entry("20250104T020000Z", "unverified", ext="sql.gz")
    future = verified("20250402T020000Z")
    backups = [
        today,
        unverified_recent,
        legacy_recent,
        mid_month,
        at_cutoff,
        just_past,
        old_legacy,
        old_unverified,
        old_unverified_plain,
        future,
    ]

    result = plan(listing(*backups))

    assert sorted(result.delete) == sorted(
        [
            just_past.key,
            just_past.key + ".manifest.json",
            just_past.key + ".dr_report.json",
            old_legacy.key,
            old_unverified.key,
            old_unverified_plain.key,
        ]
    )
    assert sorted(result.keep) == sorted(
        [today.key, unverified_recent.key, legacy_recent.key, mid_month.key, at_cutoff.key, future.key]
    )
    assert set(result.keep).isdisjoint(result.delete)
    assert set(result.reasons) == {b.key for b in backups}
    assert result.abort_uploads == []


def test_legacy_backups_count_for_min_keep_but_are_kept_unless_included() -> None:
    old_legacy = entry("20250110_020000", "legacy")
    older_legacy = entry("20241201_020000", "legacy")
    old_verified = verified("20250105T020000Z")
    the_listing = listing(old_legacy, older_legacy, old_verified)

    kept = plan(the_listing, min_keep=1, include_legacy=False)
    assert kept.delete == [old_verified.key, old_verified.key + ".manifest.json"]
    assert kept.reasons[older_legacy.key] == (
        "keep: a legacy backup of the old scripts (retention.include_legacy is off)"
    )
    assert kept.reasons[old_legacy.key].startswith("keep: among the newest restorable")

    included = plan(the_listing, min_keep=1, include_legacy=True)
    assert sorted(included.delete) == sorted(
        [older_legacy.key, old_verified.key, old_verified.key + ".manifest.json"]
    )


def test_reasons_explain_each_verdict() -> None:
    newest = verified("20250331T020000Z")
    second = entry("20250320_020000", "legacy")
    recent = verified("20250310T020000Z")
    old = entry("20250101T020000Z", "unverified")
    future = verified("20250401T020000Z")

    reasons = plan(listing(newest, second, recent, old, future)).reasons

    assert reasons[future.key] == "keep: newer than this run's backup"
    assert reasons[newest.key] == "keep: among the newest restorable backups (min_keep)"
    assert reasons[second.key] == "keep: among the newest restorable backups (min_keep)"
    assert reasons[recent.key] == "keep: within retention_days"
    assert reasons[old.key] == (
        "delete: unverified backup older than the retention cutoff 2025-03-01T02:00:00+00:00"
    )


def test_min_keep_protects_the_newest_restorable_backups_when_all_are_old() -> None:
    # Nothing was backed up for months: everything is past retention.
    newest_unverified = entry("20241201T020000Z", "unverified")
    newest_verified = verified("20241130T020000Z")
    legacy = entry("20241129_020000", "legacy")
    older_verified = verified("20241128T020000Z")
    oldest_legacy = entry("20241127_020000", "legacy")

    result = plan(
        listing(newest_unverified, newest_verified, legacy, older_verified, oldest_legacy), min_keep=2
    )

    assert sorted(result.keep) == sorted([newest_verified.key, legacy.key])
    assert sorted(result.delete) == sorted(
        [
            newest_unverified.key,  # unverified backups never count towards min_keep
            older_verified.key,
            older_verified.key + ".manifest.json",
            oldest_legacy.key,
        ]
    )


def test_min_keep_larger_than_the_backups_keeps_every_restorable_one() -> None:
    backups = [verified("20240101T020000Z"), entry("20231201_020000", "legacy")]
    unverified = entry("20240201T020000Z", "unverified")

    result = plan(listing(*backups, unverified), min_keep=7)

    assert sorted(result.keep) == sorted(b.key for b in backups)
    assert result.delete == [unverified.key]


def test_newer_backups_are_never_deleted_nor_counted_by_min_keep() -> None:
    # A backfill for January runs in March: the present must not be pruned.
    reference = datetime(2025, 1, 31, 2, 0, tzinfo=UTC)
    february = [verified("20250201T020000Z"), verified("20250215T020000Z"), verified("20250301T020000Z")]
    old_unverified_future = entry("20250310T020000Z", "unverified")
    january = verified("20250101T020000Z")
    december = verified("20241201T020000Z")
    november = entry("20241101_020000", "legacy")

    result = plan(
        listing(*february, old_unverified_future, january, december, november),
        reference=reference,
        retention_days=10,
        min_keep=1,
    )

    assert set(result.keep) == {e.key for e in february} | {old_unverified_future.key, january.key}
    assert sorted(result.delete) == sorted([december.key, december.key + ".manifest.json", november.key])
    assert all(result.reasons[e.key] == "keep: newer than this run's backup" for e in february)
    assert result.reasons[january.key] == "keep: among the newest restorable backups (min_keep)"


def test_backup_taken_exactly_at_the_reference_counts_as_present() -> None:
    now = verified("20250331T020000Z")  # == REFERENCE
    old = verified("20250101T020000Z")

    result = plan(listing(now, old), min_keep=1)

    assert result.reasons[now.key] == "keep: among the newest restorable backups (min_keep)"
    assert old.key in result.delete


def test_sidecars_follow_their_backup() -> None:
    keep_me = verified("20250330T020000Z", dr_report=True)
    drop_me = verified("20250101T020000Z", dr_report=True)

    result = plan(listing(keep_me, drop_me), min_keep=1)

    assert result.delete == [drop_me.key, drop_me.key + ".manifest.json", drop_me.key + ".dr_report.json"]
    assert keep_me.key + ".manifest.json" not in result.delete
    assert keep_me.key + ".dr_report.json" not in result.delete


def test_orphan_sidecars_are_deleted_only_when_stale() -> None:
    stale = obj(
        PREFIX + "stellar_escrow_20250101T020000Z.dump.zst.manifest.json", STALE_BEFORE - timedelta(seconds=1)
    )
    fresh = obj(
        PREFIX + "stellar_escrow_20250330T020000Z.dump.zst.dr_report.json", STALE_BEFORE + timedelta(hours=1)
    )
    at_boundary = obj(PREFIX + "stellar_escrow_20250329T020000Z.dump.zst.manifest.json", STALE_BEFORE)

    result = plan(listing(orphans=[stale, fresh, at_boundary]))

    assert result.delete == [stale.key]
    assert result.reasons[stale.key] == "delete: sidecar without its backup"
    assert fresh.key not in result.reasons
    assert at_boundary.key not in result.reasons


def test_stale_incoming_uploads_are_deleted_only_when_stale() -> None:
    stale = obj(
        PREFIX + ".incoming/stellar_escrow_20250330T020000Z.dump.zst.tok1", STALE_BEFORE - timedelta(hours=2)
    )
    fresh = obj(PREFIX + ".incoming/stellar_escrow_20250331T020000Z.dump.zst.tok2", REFERENCE)

    result = plan(listing(incoming=[stale, fresh]))

    assert result.delete == [stale.key]
    assert result.reasons[stale.key] == "delete: upload that was never published"


def test_unfinished_uploads_are_aborted_only_when_stale() -> None:
    unfinished: list[dict[str, object]] = [
        {"Key": PREFIX + "old.dump.zst", "UploadId": "up-old", "Initiated": STALE_BEFORE - timedelta(days=3)},
        {"Key": PREFIX + "new.dump.zst", "UploadId": "up-new", "Initiated": REFERENCE},
        {"Key": PREFIX + "edge.dump.zst", "UploadId": "up-edge", "Initiated": STALE_BEFORE},
        {"Key": PREFIX + "odd.dump.zst", "UploadId": "up-odd", "Initiated": "yesterday"},
        {"Key": PREFIX + "none.dump.zst", "UploadId": "up-none"},
    ]

    result = plan(listing(), unfinished=unfinished)

    assert result.abort_uploads == [(PREFIX + "old.dump.zst", "up-old")]
    assert result.delete == []


def test_empty_listing_plans_nothing() -> None:
    result = plan(listing())
    assert result == RetentionPlan()


def test_plan_is_deterministic_for_a_rerun() -> None:
    the_listing = listing(
        verified("20250331T020000Z"), verified("20250101T020000Z"), entry("20241201_020000", "legacy")
    )
    assert plan(the_listing, min_keep=1) == plan(the_listing, min_keep=1)


# -- apply_s3 -------------------------------------------------------------------------------------


class FakeStore:
    """Records what retention asks of the bucket; the S3 store is the boundary here."""

    bucket = "stellar-backups"

    def __init__(self, existing: set[str] | None = None) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.existing = existing or set()

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def delete(self, key: str) -> None:
        self.calls.append(("delete", key))

    def abort_upload(self, key: str, upload_id: str) -> None:
        self.calls.append(("abort_upload", key, upload_id))

    def exists(self, key: str) -> bool:
        self.calls.append(("exists", key))
        return key in self.existing


def _sample_plan() -> RetentionPlan:
    old = verified("20250101T020000Z")
    plan_ = plan(
        listing(
            verified("20250331T020000Z"),
            old,
            orphans=[obj(PREFIX + "gone.dump.zst.manifest.json", STALE_BEFORE - timedelta(days=1))],
        ),
        min_keep=1,
        unfinished=[
            {"Key": PREFIX + "x.dump.zst", "UploadId": "U1", "Initiated": STALE_BEFORE - timedelta(days=2)}
        ],
    )
    assert plan_.delete == [old.key, old.key + ".manifest.json", PREFIX + "gone.dump.zst.manifest.json"]
    return plan_


def test_dry_run_deletes_nothing_and_logs_each_key() -> None:
    store = FakeStore()
    lines: list[str] = []
    the_plan = _sample_plan()

    apply_s3(store, the_plan, dry_run=True, say=lines.append)  # type: ignore[arg-type]

    assert store.calls == []
    for key in the_plan.delete:
        assert any(line.startswith(f"would delete s3://stellar-backups/{key} (") for line in lines), key
    old_key = the_plan.delete[0]
    assert f"would delete s3://stellar-backups/{old_key} (delete: verified backup older than" in lines[0]
    assert (
        lines[1] == f"would delete s3://stellar-backups/{old_key}.manifest.json (sidecar of a deleted backup)"
    )
    assert "would abort unfinished upload U1 of s3://stellar-backups/backups/x.dump.zst" in lines
    assert lines[-1] == "retention: keeping 1 backups; 3 objects to delete (dry run)"


def test_apply_deletes_every_planned_key_and_aborts_uploads() -> None:
    store = FakeStore()
    lines: list[str] = []
    the_plan = _sample_plan()

    apply_s3(store, the_plan, dry_run=False, say=lines.append)  # type: ignore[arg-type]

    assert store.calls == [("delete", key) for key in the_plan.delete] + [
        ("abort_upload", PREFIX + "x.dump.zst", "U1")
    ]
    assert sum(line.startswith("deleting s3://stellar-backups/") for line in lines) == 3
    assert "aborting unfinished upload U1 of s3://stellar-backups/backups/x.dump.zst" in lines
    assert lines[-1] == "retention: keeping 1 backups; 3 objects deleted"


def test_apply_logs_through_the_module_logger_by_default(caplog: pytest.LogCaptureFixture) -> None:
    store = FakeStore()
    caplog.set_level("INFO", logger="stellar_ops.backup.retention")

    apply_s3(store, _sample_plan(), dry_run=True)  # type: ignore[arg-type]

    assert "would delete s3://stellar-backups/backups/stellar_escrow_20250101T020000Z.dump.zst" in caplog.text
    assert store.calls == []


def test_require_this_run_verified() -> None:
    key = PREFIX + "stellar_escrow_20250331T020000Z.dump.zst"
    require_this_run_verified(FakeStore({key, key + ".manifest.json"}), key)  # type: ignore[arg-type]

    for existing in ({key}, {key + ".manifest.json"}, set()):
        with pytest.raises(BackupError, match="refusing to apply retention") as info:
            require_this_run_verified(FakeStore(existing), key)  # type: ignore[arg-type]
        assert f"s3://stellar-backups/{key}" in str(info.value)


# -- plan_local / apply_local ---------------------------------------------------------------------


def _touch(directory: Path, name: str, mtime: datetime | None = None) -> Path:
    path = directory / name
    path.write_bytes(b"x")
    if mtime is not None:
        os.utime(path, (mtime.timestamp(), mtime.timestamp()))
    return path


def test_plan_local_keeps_recent_and_deletes_old_and_stale_partials(tmp_path: Path) -> None:
    newest = _touch(tmp_path, "stellar_escrow_20250331T020000Z.dump.zst")
    recent = _touch(tmp_path, "stellar_escrow_20250326T020000Z.dump.zst")
    at_cutoff = _touch(tmp_path, "stellar_escrow_20250324T020000Z.sql.gz")
    old = _touch(tmp_path, "stellar_escrow_20250320T020000Z.dump.zst")
    old_legacy = _touch(tmp_path, "stellar_escrow_20250101_020000.sql.gz")
    stale_partial = _touch(
        tmp_path, "stellar_escrow_20250330T020000Z.dump.zst.partial-abc", STALE_BEFORE - timedelta(minutes=1)
    )
    fresh_partial = _touch(tmp_path, "stellar_escrow_20250331T020000Z.dump.zst.partial-def", REFERENCE)
    unrelated = _touch(tmp_path, "notes.txt", STALE_BEFORE - timedelta(days=300))
    other_db = _touch(tmp_path, "other_20250101T020000Z.dump.zst")
    (tmp_path / "stellar_escrow_20240101T020000Z.dump.zst").mkdir()  # a directory is never touched

    doomed = plan_local(tmp_path, reference=REFERENCE, retention_days=7, stale_before=STALE_BEFORE)

    assert doomed == sorted([old, old_legacy, stale_partial])
    for kept in (newest, recent, at_cutoff, fresh_partial, unrelated, other_db):
        assert kept not in doomed


def test_plan_local_always_keeps_the_newest_copy(tmp_path: Path) -> None:
    newest = _touch(tmp_path, "stellar_escrow_20250101T020000Z.dump.zst")
    older = _touch(tmp_path, "stellar_escrow_20241231_020000.sql.gz")
    oldest = _touch(tmp_path, "stellar_escrow_20241201.sql.gz")

    doomed = plan_local(tmp_path, reference=REFERENCE, retention_days=7, stale_before=STALE_BEFORE)

    assert doomed == sorted([older, oldest])
    assert newest.exists()  # planning never deletes


def test_plan_local_of_a_missing_directory_is_empty(tmp_path: Path) -> None:
    assert (
        plan_local(tmp_path / "nope", reference=REFERENCE, retention_days=7, stale_before=STALE_BEFORE) == []
    )


def test_apply_local_dry_run_then_for_real(tmp_path: Path) -> None:
    paths = [_touch(tmp_path, "stellar_escrow_20250101T020000Z.dump.zst"), tmp_path / "already-gone.sql.gz"]
    lines: list[str] = []

    apply_local(paths, dry_run=True, say=lines.append)

    assert paths[0].exists()
    assert lines == [f"would delete local copy {p}" for p in paths]

    lines.clear()
    apply_local(paths, dry_run=False, say=lines.append)

    assert not paths[0].exists()
    assert lines == [f"deleting local copy {p}" for p in paths]


def test_backup_name_sorting_used_by_min_keep_is_by_time() -> None:
    # min_keep picks "newest" by BackupName ordering: timestamp first, whatever the spelling.
    legacy = BackupName(datetime(2025, 3, 2, tzinfo=UTC), PREFIX + "stellar_escrow_20250302.sql.gz", "plain")
    ours = BackupName(
        datetime(2025, 3, 1, tzinfo=UTC), PREFIX + "stellar_escrow_20250301T000000Z.dump.zst", "custom"
    )
    assert max(legacy, ours) is legacy
