"""stellar_ops.backup.slots: a slot's period, what covers it, and what a backup for a past slot says."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from stellar_ops.backup.procedure import PROCEDURE
from stellar_ops.backup.report import Published, success_message
from stellar_ops.backup.slots import (
    SCHEDULE_PERIOD,
    cover_reason,
    is_past,
    late_note,
    slot_period,
    within_period,
)
from stellar_ops.catalogue.manifest import Manifest

SLOT = datetime(2026, 12, 3, 2, 0, tzinfo=UTC)


def test_the_period_runs_to_the_next_slot_of_the_daily_schedule() -> None:
    (entry,) = PROCEDURE.dags
    assert entry.schedule == "0 2 * * *", "a new schedule needs a new SCHEDULE_PERIOD"
    assert timedelta(days=1) == SCHEDULE_PERIOD
    assert slot_period(SLOT) == (SLOT, datetime(2026, 12, 4, 2, 0, tzinfo=UTC))


@pytest.mark.parametrize(
    ("moment", "inside"),
    [
        (SLOT - timedelta(seconds=1), False),
        (SLOT, True),
        (SLOT + timedelta(hours=23, minutes=59, seconds=59), True),
        (SLOT + timedelta(days=1), False),
    ],
)
def test_within_period_includes_the_slot_and_excludes_the_next(moment: datetime, inside: bool) -> None:
    assert within_period(SLOT, moment) is inside
    assert is_past(SLOT, moment) is (moment >= SLOT + timedelta(days=1))


def test_a_backup_of_the_same_slot_covers_it_whenever_it_was_taken(
    make_manifest: Callable[..., Manifest],
) -> None:
    three_days_later = SLOT + timedelta(days=3, hours=8)
    manifest = make_manifest(slot=SLOT.isoformat(), snapshot_at=three_days_later.isoformat())
    reason = cover_reason(manifest, SLOT)
    assert reason is not None and "taken by a run for this slot" in reason
    assert "2026-12-06 10:00:00 UTC" in reason
    assert cover_reason(manifest, SLOT + timedelta(days=1)) is None


def test_a_backup_whose_snapshot_lies_within_the_period_covers_the_slot(
    make_manifest: Callable[..., Manifest],
) -> None:
    manual = make_manifest(
        slot=(SLOT + timedelta(hours=9)).isoformat(),
        snapshot_at=(SLOT + timedelta(hours=9, seconds=4)).isoformat(),
    )
    reason = cover_reason(manual, SLOT)
    assert reason is not None and "within the slot's period (until 2026-12-04 02:00:00 UTC)" in reason
    assert cover_reason(manual, SLOT - timedelta(days=1)) is None  # after the previous slot's period
    assert cover_reason(manual, SLOT + timedelta(days=1)) is None  # before the next slot


def test_an_earlier_manifest_without_the_snapshot_time_is_dated_by_the_dumps_start(
    make_manifest: Callable[..., Manifest],
) -> None:
    earlier = make_manifest(slot="2026-12-02T02:00:00+00:00", started_at="2026-12-03T02:30:00+00:00")
    assert earlier.snapshot_at is None
    assert earlier.snapshot_time == datetime(2026, 12, 3, 2, 30, tzinfo=UTC)
    assert cover_reason(earlier, SLOT) is not None


def test_only_a_snapshot_after_the_period_is_noted_as_not_the_slots_data() -> None:
    assert late_note(SLOT, SLOT + timedelta(hours=8)) is None  # a late scheduled run: still its day
    note = late_note(SLOT, datetime(2026, 12, 6, 10, 0, 3, 250000, tzinfo=UTC))
    assert note == (
        "This backup holds the data of 2026-12-06 10:00:03 UTC, not of its slot 2026-12-03 02:00:00 UTC: "
        "a backfill or late re-run cannot back up the past"
    )


def test_the_success_message_carries_the_note() -> None:
    fields = dict(
        key="b/stellar_escrow_20261206T100003Z.dump.zst",
        manifest_key="b/stellar_escrow_20261206T100003Z.dump.zst.manifest.json",
        bucket="bk",
        size_bytes=5 << 20,
        sha256="0" * 64,
        duration_seconds=12.0,
        finished_at="2026-12-06T10:00:15+00:00",
        slot=SLOT.isoformat(),
        dump_format="custom",
        snapshot_at="2026-12-06T10:00:03.250000+00:00",
    )
    on_time = success_message(Published(**fields))["text"]
    assert "\n" not in on_time and "not of its slot" not in on_time
    note = late_note(SLOT, datetime(2026, 12, 6, 10, 0, 3, tzinfo=UTC))
    late = success_message(Published(**fields, note=note))["text"]
    assert late.startswith(":white_check_mark: Backup OK: s3://bk/b/stellar_escrow_20261206T100003Z.dump.zst")
    assert late.endswith(f"\n:warning: {note}")


def test_what_an_earlier_version_published_is_still_read() -> None:
    earlier = {
        "key": "b/stellar_escrow_20261203T020000Z.dump.zst",
        "manifest_key": "b/stellar_escrow_20261203T020000Z.dump.zst.manifest.json",
        "bucket": "bk",
        "size_bytes": 1,
        "sha256": "0" * 64,
        "duration_seconds": 1.0,
        "finished_at": "2026-12-03T02:01:00+00:00",
        "slot": "2026-12-03T02:00:00+00:00",
        "dump_format": "custom",
    }
    published = Published.from_dict(earlier)
    assert published.note is None
    assert published.data_time == SLOT
