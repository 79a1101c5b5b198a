"""A run's slot and the backups that cover it.

A backup is named by its dump's snapshot time, and its manifest records the slot of the run that
took it. A run for slot S cannot back up the past: it skips when a verified backup covers S, and
otherwise takes a backup now, which says it holds the data of its snapshot time, not of S.

A verified backup covers S when its manifest's slot is S (a re-run of S, a backfill of S done
again), or when its snapshot was taken within S's period: from S up to the next slot of the daily
schedule.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from stellar_ops.catalogue.keys import MANIFEST_SUFFIX, parse_backup_key
from stellar_ops.catalogue.manifest import Manifest
from stellar_ops.core.errors import StellarOpsError
from stellar_ops.storage.s3 import S3Store

log = logging.getLogger(__name__)

# db_backup runs daily (0 2 * * *): a slot's period ends where the next slot begins.
SCHEDULE_PERIOD = timedelta(days=1)
# The snapshot time is read on the database server's clock, the slot on the scheduler's: a backup
# of slot S whose snapshot the server dated a little before S is still found by its manifest's slot.
CLOCK_SKEW = timedelta(minutes=10)


def slot_period(slot: datetime) -> tuple[datetime, datetime]:
    """The period of ``slot``: from the slot up to (not including) the schedule's next slot."""
    return slot, slot + SCHEDULE_PERIOD


def within_period(slot: datetime, moment: datetime) -> bool:
    start, end = slot_period(slot)
    return start <= moment < end


def is_past(slot: datetime, snapshot_at: datetime) -> bool:
    """A snapshot taken after ``slot``'s period: the run was a backfill or a late re-run."""
    return snapshot_at >= slot_period(slot)[1]


def cover_reason(manifest: Manifest, slot: datetime) -> str | None:
    """Why the verified backup of ``manifest`` covers ``slot``, or None when it does not."""
    if manifest.slot == slot:
        return f"it was taken by a run for this slot, from a snapshot of {_utc(manifest.snapshot_time)}"
    if within_period(slot, manifest.snapshot_time):
        end = slot_period(slot)[1]
        return f"its snapshot of {_utc(manifest.snapshot_time)} lies within the slot's period (until {_utc(end)})"
    return None


def late_note(slot: datetime, snapshot_at: datetime) -> str | None:
    """What a backup taken for a past slot says about itself; None for a slot of its own period."""
    if not is_past(slot, snapshot_at):
        return None
    return (
        f"This backup holds the data of {_utc(snapshot_at)}, not of its slot {_utc(slot)}: "
        "a backfill or late re-run cannot back up the past"
    )


@dataclass(frozen=True)
class Cover:
    """The verified backup that covers a slot."""

    key: str
    reason: str


def find_cover(
    store: S3Store, prefix: str, slot: datetime, *, say: Callable[[str], None] = log.info
) -> Cover | None:
    """The verified backup under ``prefix`` that covers ``slot``, if there is one.

    One LIST of the prefix; then only the manifests of verified backups named at or after the slot
    (less the clock skew) are read, those within its period first: a covering backup's snapshot
    cannot precede the slot, so older ones are never read, and a daily run reads one or none. A
    manifest that cannot be read covers nothing (a backup is taken rather than skipped on it).
    """
    start, end = slot_period(slot)
    keys = {obj.key for obj in store.list_objects(prefix, recursive=False)}
    names = [
        name
        for key in keys
        if (name := parse_backup_key(key, prefix)) is not None
        and name.manifest_key in keys
        and name.timestamp >= start - CLOCK_SKEW
    ]
    # a second's timestamp is cut, so the one that contains `end` still belongs to the period
    names.sort(key=lambda name: (not start - CLOCK_SKEW <= name.timestamp <= end, name.timestamp))
    for name in names:
        manifest_key = name.key + MANIFEST_SUFFIX
        try:
            manifest = Manifest.from_document(store.get_json(manifest_key), source=store.url(manifest_key))
        except StellarOpsError as exc:
            say(f"{store.url(manifest_key)} cannot be read, so it covers no slot: {exc}")
            continue
        reason = cover_reason(manifest, slot)
        if reason is not None:
            return Cover(name.key, reason)
    return None


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
