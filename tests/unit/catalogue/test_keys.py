"""stellar_ops.keys: backup object names, legacy spellings, sidecars and formats."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from stellar_ops.catalogue.keys import (
    BackupName,
    backup_key,
    format_of_path,
    key_timestamp,
    parse_backup_key,
    parse_timestamp,
)

TAKEN = datetime(2025, 3, 1, 2, 0, tzinfo=UTC)
PREFIX = "backups/"


@pytest.mark.parametrize(
    ("dump_format", "expected"),
    [
        ("custom", "backups/stellar_escrow_20250301T020000Z.dump.zst"),
        ("plain", "backups/stellar_escrow_20250301T020000Z.sql.gz"),
    ],
)
def test_backup_key_for_both_formats(dump_format: str, expected: str) -> None:
    assert backup_key(PREFIX, TAKEN, dump_format) == expected  # type: ignore[arg-type]


def test_backup_key_with_empty_prefix() -> None:
    assert backup_key("", TAKEN, "custom") == "stellar_escrow_20250301T020000Z.dump.zst"


def test_backup_key_keeps_seconds_and_cuts_the_fraction() -> None:
    snapshot_at = datetime(2025, 12, 31, 23, 59, 58, 999999, tzinfo=UTC)
    assert backup_key(PREFIX, snapshot_at, "custom") == "backups/stellar_escrow_20251231T235958Z.dump.zst"


def test_naive_time_is_rejected() -> None:
    with pytest.raises(ValueError, match="must be timezone-aware"):
        backup_key(PREFIX, datetime(2025, 3, 1, 2, 0), "custom")
    with pytest.raises(ValueError, match="must be timezone-aware"):
        key_timestamp(datetime(2025, 3, 1, 2, 0))


def test_non_utc_time_is_converted_to_utc() -> None:
    # 03:30 at UTC+05:30 is 22:00 UTC the day before, across a month and a year boundary.
    india = timezone(timedelta(hours=5, minutes=30))
    taken = datetime(2025, 1, 1, 3, 30, tzinfo=india)

    assert backup_key(PREFIX, taken, "plain") == "backups/stellar_escrow_20241231T220000Z.sql.gz"


def test_same_instant_in_two_zones_names_the_same_object() -> None:
    new_york = timezone(timedelta(hours=-5))
    assert backup_key(PREFIX, TAKEN, "custom") == backup_key(PREFIX, TAKEN.astimezone(new_york), "custom")


def test_backup_key_round_trips_through_parse() -> None:
    for dump_format in ("custom", "plain"):
        key = backup_key(PREFIX, TAKEN, dump_format)  # type: ignore[arg-type]
        parsed = parse_backup_key(key, PREFIX)
        assert parsed == BackupName(timestamp=TAKEN, key=key, dump_format=dump_format)  # type: ignore[arg-type]


def test_an_upload_staged_by_an_earlier_version_is_never_a_backup() -> None:
    staged = "backups/.incoming/stellar_escrow_20250301T020000Z.dump.zst.a1b2c3"
    assert parse_backup_key(staged, PREFIX) is None


# -- parse_backup_key -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "timestamp", "dump_format"),
    [
        ("stellar_escrow_20250301T020000Z.dump.zst", datetime(2025, 3, 1, 2, 0, tzinfo=UTC), "custom"),
        ("stellar_escrow_20250301T020000Z.sql.gz", datetime(2025, 3, 1, 2, 0, tzinfo=UTC), "plain"),
        # The old cron scripts' spellings.
        ("stellar_escrow_20250101_020000.sql.gz", datetime(2025, 1, 1, 2, 0, tzinfo=UTC), "plain"),
        ("stellar_escrow_20250101020000.sql.gz", datetime(2025, 1, 1, 2, 0, tzinfo=UTC), "plain"),
        ("stellar_escrow_2025-01-01_02-00-00.sql.gz", datetime(2025, 1, 1, 2, 0, tzinfo=UTC), "plain"),
        ("stellar_escrow_2025-01-01T02-00-00Z.sql.gz", datetime(2025, 1, 1, 2, 0, tzinfo=UTC), "plain"),
        ("stellar_escrow_2025-01-01T02-00-00.sql.gz", datetime(2025, 1, 1, 2, 0, tzinfo=UTC), "plain"),
        ("stellar_escrow_20250101.sql.gz", datetime(2025, 1, 1, tzinfo=UTC), "plain"),
        ("stellar_escrow_20240229_235959.sql.gz", datetime(2024, 2, 29, 23, 59, 59, tzinfo=UTC), "plain"),
    ],
)
def test_parse_our_names_and_legacy_spellings(name: str, timestamp: datetime, dump_format: str) -> None:
    parsed = parse_backup_key(PREFIX + name, PREFIX)

    assert parsed is not None
    assert parsed.timestamp == timestamp
    assert parsed.timestamp.tzinfo is UTC
    assert parsed.key == PREFIX + name
    assert parsed.dump_format == dump_format
    assert parsed.filename == name
    assert parsed.manifest_key == PREFIX + name + ".manifest.json"
    assert parsed.dr_report_key == PREFIX + name + ".dr_report.json"


def test_parse_with_empty_prefix() -> None:
    parsed = parse_backup_key("stellar_escrow_20250101_020000.sql.gz", "")
    assert parsed is not None
    assert parsed.timestamp == datetime(2025, 1, 1, 2, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "key",
    [
        # sidecars
        "backups/stellar_escrow_20250301T020000Z.dump.zst.manifest.json",
        "backups/stellar_escrow_20250301T020000Z.dump.zst.dr_report.json",
        "backups/stellar_escrow_20250101_020000.sql.gz.manifest.json",
        # in a sub-"directory" of the prefix
        "backups/old/stellar_escrow_20250301T020000Z.dump.zst",
        "backups/.incoming/stellar_escrow_20250301T020000Z.dump.zst",
        # other prefixes
        "other/stellar_escrow_20250301T020000Z.dump.zst",
        "stellar_escrow_20250301T020000Z.dump.zst",
        "backupsX/stellar_escrow_20250301T020000Z.dump.zst",
        # invalid dates and unknown spellings
        "backups/stellar_escrow_20251301T020000Z.dump.zst",
        "backups/stellar_escrow_20250230.sql.gz",
        "backups/stellar_escrow_20250101_250000.sql.gz",
        "backups/stellar_escrow_2025.sql.gz",
        "backups/stellar_escrow_20250101T020000.dump.zst",
        "backups/stellar_escrow_20250101_020000Z.sql.gz",
        # other names and extensions
        "backups/stellar_escrow_20250301T020000Z.sql",
        "backups/stellar_escrow_20250301T020000Z.dump",
        "backups/stellar_escrow_20250301T020000Z.sql.zst",
        "backups/other_20250301T020000Z.dump.zst",
        "backups/stellar_escrow_.dump.zst",
        "backups/",
    ],
)
def test_parse_rejects_what_is_not_a_backup(key: str) -> None:
    assert parse_backup_key(key, PREFIX) is None


def test_backup_names_sort_by_time_first() -> None:
    keys = [
        "backups/stellar_escrow_20250301T020000Z.dump.zst",
        "backups/stellar_escrow_20250101_020000.sql.gz",
        "backups/stellar_escrow_20250201.sql.gz",
    ]
    names = [parse_backup_key(k, PREFIX) for k in keys]

    assert [n.key for n in sorted(names)] == [keys[1], keys[2], keys[0]]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20250301T020304Z", datetime(2025, 3, 1, 2, 3, 4, tzinfo=UTC)),
        ("20250301", datetime(2025, 3, 1, tzinfo=UTC)),
        ("2025-03-01", None),
        ("garbage", None),
        ("20250332", None),
    ],
)
def test_parse_timestamp(text: str, expected: datetime | None) -> None:
    assert parse_timestamp(text) == expected


# -- format_of_path -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "dump_format"),
    [
        ("backups/stellar_escrow_20250301T020000Z.dump.zst", "custom"),
        ("/var/backups/stellar_escrow_20250101_020000.sql.gz", "plain"),
        ("anything.dump.zst", "custom"),
    ],
)
def test_format_of_path(path: str, dump_format: str) -> None:
    assert format_of_path(path) == dump_format


@pytest.mark.parametrize("path", ["x.sql", "x.dump", "x.zst", "x.gz", "x.dump.zst.manifest.json", ""])
def test_format_of_unknown_path_names_it(path: str) -> None:
    with pytest.raises(ValueError, match="neither a .dump.zst nor a .sql.gz") as info:
        format_of_path(path)
    assert repr(path) in str(info.value)
