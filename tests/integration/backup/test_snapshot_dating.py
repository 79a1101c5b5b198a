"""Every reader dates a backup by its snapshot's time, whatever slot the run that took it had.

Two real backups are taken: one for the current slot, then one for a slot 40 days back (a
backfill). The backfill's is the newer data, so it is the newest backup for the listing,
``latest``, retention's ``min_keep``, the health check's freshness and the DR test's RPO, and
the drill of the backfilled slot's month does not pick it. A legacy ``.sql.gz`` of the old
scripts keeps its place by the timestamp in its name.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from stellar_ops.backup import retention
from stellar_ops.backup.dump import BackupJob, verify_upload
from stellar_ops.catalogue import source
from stellar_ops.catalogue.inventory import list_backups
from stellar_ops.core.errors import BackupNotFoundError
from stellar_ops.health import freshness
from stellar_ops.health.config import HealthConfig
from stellar_ops.postgres.binaries import find_binaries

pytestmark = pytest.mark.integration


def take(job: BackupJob, slot: datetime, token: str):
    draft = job.dump(slot, run_id="test-run", token=token)
    return job.publish(draft, verify_upload(job.store, draft, job.binaries))


def test_readers_date_backups_by_their_snapshot_not_their_slot(stack, ops):
    ops.update(backup={"local_dir": None, "include_globals": False})
    job = BackupJob(stack.db, ops.store(), ops.config.backup, find_binaries())
    store = ops.store()
    now = datetime.now(UTC)
    today = take(job, now.replace(minute=0, second=0, microsecond=0), "t1")
    backfill_slot = (now - timedelta(days=40)).replace(hour=2, minute=0, second=0, microsecond=0)
    backfilled = take(job, backfill_slot, "t2")
    assert backfilled.snapshot_at > today.snapshot_at and backfilled.slot < today.slot
    legacy = f"{ops.prefix}stellar_escrow_{backfill_slot - timedelta(days=1):%Y%m%d_%H%M%S}.sql.gz"
    store.put_bytes(legacy, b"a dump of the old scripts")

    listing = list_backups(store, ops.prefix)
    assert [(e.key, e.state) for e in listing.backups] == [
        (backfilled.key, "verified"),
        (today.key, "verified"),
        (legacy, "legacy"),
    ]
    row = listing.backups[0].as_dict(datetime.now(UTC))
    assert datetime.fromisoformat(row["timestamp"]) == backfilled.snapshot_at.replace(microsecond=0)
    assert row["age_hours"] < 0.1

    latest = source.resolve(store, ops.prefix, "latest", reference=now, month_scoped=False)
    assert latest.location == backfilled.key
    manifest = source.load_manifest(store, latest)
    assert source.backup_time(latest, manifest) == backfilled.snapshot_at  # the DR test's RPO
    # The drill for the backfilled slot's month finds the old scripts' backup of that month, not
    # the backfill, which holds this month's data.
    of_that_month = source.resolve(store, ops.prefix, "latest", reference=backfill_slot, month_scoped=True)
    assert (of_that_month.location, of_that_month.state) == (legacy, "legacy")
    with pytest.raises(BackupNotFoundError, match="no restorable backup taken before"):
        source.resolve(
            store, ops.prefix, "latest", reference=backfill_slot - timedelta(days=40), month_scoped=True
        )

    health = freshness.check(store, ops.prefix, None, HealthConfig(), datetime.now(UTC))
    assert health.status != "critical", health
    assert health.items[0]["key"] == backfilled.key
    assert health.items[0]["snapshot_at"] == backfilled.snapshot_at.isoformat()
    assert health.items[0]["age_hours"] < 0.1

    # min_keep=1 keeps the newest restorable backup by snapshot time: the backfill's
    plan = retention.plan_s3(
        listing,
        reference=backfilled.snapshot_at + timedelta(days=60),
        retention_days=30,
        min_keep=1,
        stale_before=now - timedelta(days=1),
        include_legacy=True,
    )
    assert backfilled.key in plan.keep
    assert today.key in plan.delete and legacy in plan.delete
