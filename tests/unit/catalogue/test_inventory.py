"""stellar_ops.inventory over a fake store: states, sidecars, orphans, incoming, lookups."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from stellar_ops.catalogue.inventory import OURS_METADATA, find, list_backups, nearest_keys_hint
from stellar_ops.core.errors import BackupNotFoundError
from stellar_ops.storage.s3 import ObjectInfo

PREFIX = "backups/"
WHEN = datetime(2025, 3, 31, 3, 0, tzinfo=UTC)


class FakeStore:
    """Just what list_backups reads: one LIST and HEADs."""

    bucket = "stellar-backups"

    def __init__(self, keys: list[str], metadata: dict[str, dict[str, str]] | None = None) -> None:
        self.keys = keys
        self.metadata = metadata or {}
        self.heads: list[str] = []

    def list_objects(self, prefix: str, *, recursive: bool = True) -> Iterator[ObjectInfo]:
        for index, key in enumerate(self.keys):
            if key.startswith(prefix) and (recursive or "/" not in key[len(prefix) :]):
                yield ObjectInfo(key, 100 + index, WHEN - timedelta(hours=index))

    def head(self, key: str) -> dict[str, Any] | None:
        self.heads.append(key)
        return {"Metadata": self.metadata.get(key, {})}


OURS = PREFIX + "stellar_escrow_20250331T020000Z.dump.zst"
OURS_PLAIN = PREFIX + "stellar_escrow_20250330T020000Z.sql.gz"
LEGACY = PREFIX + "stellar_escrow_20250101_020000.sql.gz"
UNPUBLISHED = PREFIX + "stellar_escrow_20250329T020000Z.dump.zst"
KEYS = [
    OURS,
    OURS + ".manifest.json",
    OURS + ".dr_report.json",
    OURS_PLAIN,
    LEGACY,
    UNPUBLISHED,
    PREFIX + "stellar_escrow_20240101T020000Z.dump.zst.manifest.json",  # orphan
    PREFIX + ".incoming/stellar_escrow_20250331T020000Z.dump.zst.tok",
    PREFIX + ".incoming/stellar_escrow_20250331T020000Z.dump.zst.tok.manifest.json",
    PREFIX + "README.txt",
    PREFIX + "old/stellar_escrow_20240101T020000Z.dump.zst",
]


def test_list_backups_classifies_every_object() -> None:
    store = FakeStore(KEYS, metadata={OURS_PLAIN: {OURS_METADATA: "1"}})

    listing = list_backups(store, PREFIX)  # type: ignore[arg-type]

    assert [(e.key, e.state) for e in listing.backups] == [
        (OURS, "verified"),
        (OURS_PLAIN, "unverified"),  # ours, but its manifest never landed
        (UNPUBLISHED, "unverified"),
        (LEGACY, "legacy"),
    ]
    assert listing.backups[0].sidecars == (OURS + ".manifest.json", OURS + ".dr_report.json")
    assert [o.key for o in listing.orphan_sidecars] == [
        PREFIX + "stellar_escrow_20240101T020000Z.dump.zst.manifest.json"
    ]
    assert [o.key for o in listing.incoming] == [
        PREFIX + ".incoming/stellar_escrow_20250331T020000Z.dump.zst.tok",
        PREFIX + ".incoming/stellar_escrow_20250331T020000Z.dump.zst.tok.manifest.json",
    ]
    # Only manifest-less .sql.gz objects cost a HEAD.
    assert sorted(store.heads) == sorted([OURS_PLAIN, LEGACY])


def test_entry_properties() -> None:
    listing = list_backups(FakeStore(KEYS), PREFIX)  # type: ignore[arg-type]
    by_key = {e.key: e for e in listing.backups}

    assert by_key[OURS].restorable
    assert by_key[LEGACY].restorable
    assert not by_key[UNPUBLISHED].restorable
    assert by_key[OURS].as_dict(datetime(2025, 3, 31, 14, 0, tzinfo=UTC)) == {
        "key": OURS,
        "timestamp": "2025-03-31T02:00:00+00:00",
        "age_hours": 12.0,
        "size_bytes": 100,
        "format": "custom",
        "state": "verified",
    }


def test_find_and_nearest_keys() -> None:
    listing = list_backups(FakeStore(KEYS), PREFIX)  # type: ignore[arg-type]

    assert find(listing, LEGACY).state == "legacy"
    with pytest.raises(BackupNotFoundError) as info:
        find(listing, PREFIX + "stellar_escrow_20250102T000000Z.dump.zst")
    message = str(info.value)
    assert message.startswith(
        f"backup '{PREFIX}stellar_escrow_20250102T000000Z.dump.zst' does not exist; nearest: "
    )
    # The closest in time comes first.
    assert message.split("nearest: ")[1].split(", ")[0] == LEGACY


def test_nearest_keys_hint_of_an_empty_listing() -> None:
    listing = list_backups(FakeStore([]), PREFIX)  # type: ignore[arg-type]
    assert nearest_keys_hint(listing, "x") == "there are no backups under that prefix"


ROOT_LEGACY = "stellar_escrow_20241231_020000.sql.gz"


def test_the_legacy_prefix_adds_its_own_objects_only() -> None:
    """At the bucket root: the old scripts' objects there, not everything below it."""
    store = FakeStore([*KEYS, ROOT_LEGACY, "notes.txt", "other/stellar_escrow_20241230_020000.sql.gz"])

    listing = list_backups(store, PREFIX, legacy_prefix="")  # type: ignore[arg-type]

    states = {entry.key: entry.state for entry in listing.backups}
    assert states[ROOT_LEGACY] == "legacy"
    assert states[LEGACY] == "legacy"
    assert "other/stellar_escrow_20241230_020000.sql.gz" not in states
    assert len([k for k in states if k.startswith(PREFIX + "old/")]) == 0
    assert [entry.key for entry in listing.backups] == sorted(
        states, key=lambda key: next(e.name for e in listing.backups if e.key == key), reverse=True
    )
    assert list_backups(store, PREFIX).backups == [e for e in listing.backups if e.key != ROOT_LEGACY]  # type: ignore[arg-type]
