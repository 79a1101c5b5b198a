"""Retention over a real bucket: a mix of ages, legacy objects and a failed run's leftovers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from stellar_ops.backup import retention
from stellar_ops.catalogue.inventory import list_backups

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 28, 2, 0, tzinfo=UTC)


def ts(days_ago: float, fmt: str = "%Y%m%dT%H%M%SZ") -> str:
    return (NOW - timedelta(days=days_ago)).strftime(fmt)


def seed(store, prefix: str) -> dict[str, str]:
    """Objects named like the old scripts', ours, and a failed run's; returns name -> key."""
    objects = {
        # verified backups of ours (a manifest beside each)
        "verified_1d": f"stellar_escrow_{ts(1)}.dump.zst",
        "verified_10d": f"stellar_escrow_{ts(10)}.dump.zst",
        "verified_40d": f"stellar_escrow_{ts(40)}.dump.zst",
        "verified_50d": f"stellar_escrow_{ts(50)}.dump.zst",
        # the old scripts' files: no manifest, other timestamp spelling
        "legacy_5d": f"stellar_escrow_{ts(5, '%Y%m%d_%H%M%S')}.sql.gz",
        "legacy_60d": f"stellar_escrow_{ts(60, '%Y%m%d_%H%M%S')}.sql.gz",
        # a failed run: published data whose manifest never came, plus its upload
        "failed_45d": f"stellar_escrow_{ts(45)}.dump.zst",
        "newer_than_slot": f"stellar_escrow_{(NOW + timedelta(days=1)).strftime('%Y%m%dT%H%M%SZ')}.dump.zst",
    }
    keys = {name: prefix + filename for name, filename in objects.items()}
    for name, key in keys.items():
        store.put_bytes(key, b"backup bytes of " + name.encode())
        if name.startswith("verified") or name == "newer_than_slot":
            store.put_json(key + ".manifest.json", {"key": key})
    store.put_json(keys["verified_50d"] + ".dr_report.json", {"success": True})
    keys["orphan_manifest"] = prefix + f"stellar_escrow_{ts(70)}.dump.zst.manifest.json"
    store.put_json(keys["orphan_manifest"], {"key": "gone"})
    keys["incoming"] = prefix + f".incoming/stellar_escrow_{ts(45)}.dump.zst.1-abc"
    store.put_bytes(keys["incoming"], b"half an upload")
    keys["unrelated"] = prefix + "README.txt"
    store.put_bytes(keys["unrelated"], b"not a backup")
    return keys


def remaining(store, prefix: str) -> set[str]:
    return {o.key for o in store.list_objects(prefix)}


def plan(store, prefix: str, *, min_keep: int, stale_before: datetime, include_legacy: bool = True):
    return retention.plan_s3(
        list_backups(store, prefix),
        reference=NOW,
        retention_days=30,
        min_keep=min_keep,
        stale_before=stale_before,
        unfinished_uploads=store.unfinished_uploads(prefix),
        include_legacy=include_legacy,
    )


def test_retention_keeps_exactly_the_right_keys(ops):
    store = ops.store()
    keys = seed(store, ops.prefix)
    listing = list_backups(store, ops.prefix)
    states = {entry.key: entry.state for entry in listing.backups}
    assert states[keys["legacy_60d"]] == "legacy"
    assert states[keys["failed_45d"]] == "unverified"
    assert states[keys["verified_40d"]] == "verified"

    before = remaining(store, ops.prefix)
    just_made = plan(store, ops.prefix, min_keep=3, stale_before=datetime.now(UTC) - timedelta(hours=1))
    assert keys["incoming"] not in just_made.delete
    assert keys["orphan_manifest"] not in just_made.delete
    stale_now = datetime.now(UTC) + timedelta(minutes=1)  # everything seeded counts as stale
    dry = plan(store, ops.prefix, min_keep=3, stale_before=stale_now)
    messages: list[str] = []
    retention.apply_s3(store, dry, dry_run=True, say=messages.append)
    assert remaining(store, ops.prefix) == before, "a dry run deletes nothing"
    assert any("would delete" in m and keys["verified_50d"] in m for m in messages)

    retention.apply_s3(store, plan(store, ops.prefix, min_keep=3, stale_before=stale_now), dry_run=False)
    deleted = {
        keys["verified_40d"],
        keys["verified_40d"] + ".manifest.json",
        keys["verified_50d"],
        keys["verified_50d"] + ".manifest.json",
        keys["verified_50d"] + ".dr_report.json",
        keys["legacy_60d"],
        keys["failed_45d"],
        keys["orphan_manifest"],
        keys["incoming"],
    }
    assert remaining(store, ops.prefix) == before - deleted
    assert keys["newer_than_slot"] in remaining(store, ops.prefix)
    assert keys["unrelated"] in remaining(store, ops.prefix)


def test_min_keep_protects_the_newest_restorable_backups_whatever_their_age(ops):
    store = ops.store()
    prefix = ops.prefix
    old = {
        "legacy_100d": f"{prefix}stellar_escrow_{ts(100, '%Y%m%d_%H%M%S')}.sql.gz",
        "verified_90d": f"{prefix}stellar_escrow_{ts(90)}.dump.zst",
        "verified_80d": f"{prefix}stellar_escrow_{ts(80)}.dump.zst",
        "unverified_70d": f"{prefix}stellar_escrow_{ts(70)}.dump.zst",
    }
    for name, key in old.items():
        store.put_bytes(key, b"x")
        if name.startswith("verified"):
            store.put_json(key + ".manifest.json", {"key": key})
    retention.apply_s3(
        store, plan(store, prefix, min_keep=3, stale_before=NOW - timedelta(days=1)), dry_run=False
    )
    left = remaining(store, prefix)
    # the three newest restorable ones stay although all are past retention; the broken one goes
    assert left == {
        old["legacy_100d"],
        old["verified_90d"],
        old["verified_90d"] + ".manifest.json",
        old["verified_80d"],
        old["verified_80d"] + ".manifest.json",
    }


def test_stale_unfinished_uploads_are_aborted(ops):
    store = ops.store()
    key = f"{ops.prefix}.incoming/stellar_escrow_{ts(2)}.dump.zst.1-x"
    upload = store.client.create_multipart_upload(Bucket=store.bucket, Key=key)
    fresh = plan(store, ops.prefix, min_keep=1, stale_before=datetime.now(UTC) - timedelta(hours=1))
    assert fresh.abort_uploads == []
    stale = plan(store, ops.prefix, min_keep=1, stale_before=datetime.now(UTC) + timedelta(minutes=1))
    assert stale.abort_uploads == [(key, upload["UploadId"])]
    retention.apply_s3(store, stale, dry_run=False)
    assert store.unfinished_uploads(ops.prefix) == []


def test_retention_refuses_to_run_without_this_runs_verified_backup(ops):
    from stellar_ops.core.errors import BackupError

    store = ops.store()
    key = f"{ops.prefix}stellar_escrow_{ts(0)}.dump.zst"
    with pytest.raises(BackupError, match="refusing to apply retention"):
        retention.require_this_run_verified(store, key)
    store.put_bytes(key, b"x")
    with pytest.raises(BackupError, match="missing or unverified"):
        retention.require_this_run_verified(store, key)
    store.put_json(key + ".manifest.json", {})
    retention.require_this_run_verified(store, key)
