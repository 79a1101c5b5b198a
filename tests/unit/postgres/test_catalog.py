"""stellar_ops.catalog: the pure parts, fingerprint and schema_differences."""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from stellar_ops.postgres.catalog import fingerprint, schema_differences


def test_fingerprint_is_sha256_of_canonical_json(schema_doc: dict[str, Any]) -> None:
    canonical = json.dumps(schema_doc, sort_keys=True, separators=(",", ":")).encode()
    assert fingerprint(schema_doc) == hashlib.sha256(canonical).hexdigest()


def test_fingerprint_ignores_mapping_order(schema_doc: dict[str, Any]) -> None:
    reordered = {
        "indexes": dict(reversed(list(schema_doc["indexes"].items()))),
        "tables": dict(reversed(list(schema_doc["tables"].items()))),
    }
    assert fingerprint(reordered) == fingerprint(schema_doc)


def test_fingerprint_changes_with_any_difference(schema_doc: dict[str, Any]) -> None:
    base = fingerprint(schema_doc)
    changes = []

    nullable = copy.deepcopy(schema_doc)
    nullable["tables"]["public.trades"]["columns"][1][2] = False
    changes.append(nullable)

    reordered_columns = copy.deepcopy(schema_doc)
    reordered_columns["tables"]["public.trades"]["columns"].reverse()
    changes.append(reordered_columns)

    index = copy.deepcopy(schema_doc)
    index["indexes"]["public.trades_idx"] = "CREATE INDEX trades_idx ON public.trades (escrow_id)"
    changes.append(index)

    assert len({fingerprint(c) for c in changes} | {base}) == 4


def test_fingerprint_of_empty_schema_is_stable() -> None:
    assert fingerprint({}) == hashlib.sha256(b"{}").hexdigest()
    assert len(fingerprint({"tables": {}, "indexes": {}})) == 64


def test_equal_schemas_have_no_differences(schema_doc: dict[str, Any]) -> None:
    assert schema_differences(schema_doc, copy.deepcopy(schema_doc)) == []
    assert schema_differences({}, {}) == []


def test_every_kind_of_difference_is_named(schema_doc: dict[str, Any]) -> None:
    actual = copy.deepcopy(schema_doc)
    del actual["tables"]["public.accounts"]
    actual["tables"]["public.extra"] = {"columns": [["id", "integer", True]]}
    trades = actual["tables"]["public.trades"]["columns"]
    trades[:] = [c for c in trades if c[0] != "escrow_id"]  # column missing
    trades.append(["note", "text", False])  # column not in the manifest
    actual["tables"]["public.escrows"]["columns"][2] = ["status", "character varying(20)", False]
    del actual["indexes"]["public.events_pkey"]
    actual["indexes"]["public.extra_pkey"] = "CREATE UNIQUE INDEX extra_pkey ON public.extra USING btree (id)"
    actual["indexes"]["public.trades_pkey"] = (
        "CREATE UNIQUE INDEX trades_pkey ON public.trades USING hash (id)"
    )

    problems = schema_differences(schema_doc, actual)

    assert problems == [
        "table public.accounts is missing",
        "table public.extra is not in the manifest",
        "column public.escrows.status is ['character varying(20)', False], manifest says ['text', True]",
        "column public.trades.escrow_id is missing",
        "column public.trades.note is not in the manifest",
        "index public.events_pkey is missing (CREATE UNIQUE INDEX events_pkey ON public.events USING btree (id))",
        "index public.extra_pkey is not in the manifest "
        "(CREATE UNIQUE INDEX extra_pkey ON public.extra USING btree (id))",
        "index public.trades_pkey differs: "
        "restored CREATE UNIQUE INDEX trades_pkey ON public.trades USING hash (id), "
        "manifest CREATE UNIQUE INDEX trades_pkey ON public.trades USING btree (id)",
    ]


def test_differences_against_an_empty_restore(schema_doc: dict[str, Any]) -> None:
    problems = schema_differences(schema_doc, {})

    assert problems == [f"table {t} is missing" for t in sorted(schema_doc["tables"])] + [
        f"index {i} is missing ({d})" for i, d in sorted(schema_doc["indexes"].items())
    ]
