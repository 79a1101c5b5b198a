"""stellar_ops.backup_source: the pure parts (month_end, ResolvedBackup, backup_time)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest

from stellar_ops.catalogue.manifest import Manifest
from stellar_ops.catalogue.source import ResolvedBackup, backup_time, month_end

# -- month_end ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (datetime(2025, 3, 15, 12, 0, tzinfo=UTC), datetime(2025, 4, 1, tzinfo=UTC)),
        (datetime(2025, 1, 1, 0, 0, tzinfo=UTC), datetime(2025, 2, 1, tzinfo=UTC)),
        (datetime(2025, 2, 28, 23, 59, 59, tzinfo=UTC), datetime(2025, 3, 1, tzinfo=UTC)),
        (datetime(2025, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)),
        (datetime(2025, 12, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)),
    ],
)
def test_month_end(moment: datetime, expected: datetime) -> None:
    result = month_end(moment)
    assert result == expected
    assert result.tzinfo is UTC


def test_month_end_converts_to_utc_first() -> None:
    # Midnight of 1 April in UTC+2 is still 31 March in UTC.
    plus_two = timezone(timedelta(hours=2))
    assert month_end(datetime(2025, 4, 1, 0, 30, tzinfo=plus_two)) == datetime(2025, 4, 1, tzinfo=UTC)
    # 31 December 20:00 in UTC-5 is already 1 January in UTC.
    minus_five = timezone(timedelta(hours=-5))
    assert month_end(datetime(2025, 12, 31, 20, 0, tzinfo=minus_five)) == datetime(2026, 2, 1, tzinfo=UTC)


# -- ResolvedBackup --------------------------------------------------------------------------------


def test_resolved_backup_round_trip() -> None:
    backup = ResolvedBackup(
        source="s3",
        location="backups/stellar_escrow_20250301T020000Z.dump.zst",
        dump_format="custom",
        timestamp="2025-03-01T02:00:00+00:00",
        state="verified",
    )

    data = backup.as_dict()

    assert data == {
        "source": "s3",
        "location": "backups/stellar_escrow_20250301T020000Z.dump.zst",
        "dump_format": "custom",
        "timestamp": "2025-03-01T02:00:00+00:00",
        "state": "verified",
    }
    assert ResolvedBackup.from_dict(data) == backup
    assert backup.manifest_location == "backups/stellar_escrow_20250301T020000Z.dump.zst.manifest.json"
    assert not backup.legacy


def test_legacy_resolved_backup() -> None:
    backup = ResolvedBackup(
        "local", "/b/stellar_escrow_20250101_020000.sql.gz", "plain", "2025-01-01T02:00:00+00:00", "legacy"
    )
    assert backup.legacy
    assert ResolvedBackup.from_dict(backup.as_dict()).legacy


def test_from_dict_refuses_unknown_fields() -> None:
    with pytest.raises(TypeError):
        ResolvedBackup.from_dict(
            {
                "source": "s3",
                "location": "k",
                "dump_format": "custom",
                "timestamp": "t",
                "state": "x",
                "extra": 1,
            }
        )


def test_backup_time_prefers_the_manifest(make_manifest: Callable[..., Manifest]) -> None:
    manifest = make_manifest()
    backup = ResolvedBackup("s3", "k", "custom", "2025-03-01T02:00:00+00:00", "verified")

    assert backup_time(backup, manifest) == datetime(2025, 3, 1, 2, 0, 5, tzinfo=UTC)
    assert backup_time(backup, None) == datetime(2025, 3, 1, 2, 0, tzinfo=UTC)
    naive = ResolvedBackup("local", "k", "plain", "2025-03-01T02:00:00", "legacy")
    assert backup_time(naive, None) == datetime(2025, 3, 1, 2, 0, tzinfo=UTC)
