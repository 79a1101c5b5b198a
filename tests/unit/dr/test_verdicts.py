"""stellar_ops.dr.verdicts: the DR test's verdicts and RPO."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from stellar_ops.catalogue.manifest import Manifest
from stellar_ops.core.errors import VerificationError
from stellar_ops.dr import verdicts
from stellar_ops.postgres import catalog

KEY_TABLES = ["trades", "events"]


# -- row counts -----------------------------------------------------------------------------------


def test_row_counts_match(make_manifest: Callable[..., Manifest]) -> None:
    manifest = make_manifest()

    verdict = verdicts.row_counts(manifest, dict(manifest.row_counts), KEY_TABLES)

    assert verdict.passed
    assert verdict.check == "row counts"
    assert verdict.detail == "match: 4 tables, 15,000 rows"
    assert verdict.problems == []
    verdict.raise_if_failed()


def test_row_counts_name_every_differing_table_with_both_counts(
    make_manifest: Callable[..., Manifest],
) -> None:
    manifest = make_manifest()
    observed = dict(manifest.row_counts)
    observed["public.trades"] = 2999
    observed["public.accounts"] = 5001

    verdict = verdicts.row_counts(manifest, observed, KEY_TABLES)

    assert not verdict.passed
    assert verdict.problems == [
        "public.accounts: restored 5001 rows, manifest says 5000",
        "public.trades: restored 2999 rows, manifest says 3000",
    ]
    assert verdict.detail == (
        "2 table(s) differ: public.accounts: restored 5001 rows, manifest says 5000; "
        "public.trades: restored 2999 rows, manifest says 3000"
    )
    with pytest.raises(VerificationError, match=r"^row counts failed: 2 table\(s\) differ"):
        verdict.raise_if_failed()


def test_row_counts_missing_and_extra_tables(make_manifest: Callable[..., Manifest]) -> None:
    manifest = make_manifest()
    observed = dict(manifest.row_counts)
    del observed["public.events"]
    observed["public.surprise"] = 12

    verdict = verdicts.row_counts(manifest, observed, KEY_TABLES)

    assert not verdict.passed
    assert verdict.problems == [
        "public.events: missing after restore, manifest says 6000 rows",
        "public.surprise: restored 12 rows, not in the manifest",
    ]


def test_row_counts_zero_rows_still_must_match(make_manifest: Callable[..., Manifest]) -> None:
    manifest = make_manifest(row_counts={"public.trades": 0, "public.events": 3})

    assert verdicts.row_counts(manifest, {"public.trades": 0, "public.events": 3}, KEY_TABLES).passed
    failed = verdicts.row_counts(manifest, {"public.trades": 1, "public.events": 3}, KEY_TABLES)
    assert failed.problems == ["public.trades: restored 1 rows, manifest says 0"]


def test_legacy_row_counts_need_rows_in_key_tables() -> None:
    observed = {"public.trades": 10, "public.events": 4, "public.accounts": 0}

    verdict = verdicts.row_counts(None, observed, KEY_TABLES)

    assert verdict.passed
    assert verdict.detail == "match: key tables trades, events have rows (legacy backup: no manifest counts)"


def test_legacy_row_counts_report_empty_and_missing_key_tables() -> None:
    verdict = verdicts.row_counts(None, {"public.trades": 0, "public.accounts": 5}, KEY_TABLES)

    assert not verdict.passed
    assert verdict.problems == ["public.trades: empty after restore", "public.events: missing after restore"]
    assert verdict.detail.startswith("2 table(s) differ: ")


def test_legacy_key_tables_may_be_schema_qualified() -> None:
    verdict = verdicts.row_counts(None, {"audit.log": 3, "public.trades": 1}, ["audit.log", "trades"])
    assert verdict.passed
    failed = verdicts.row_counts(None, {"public.log": 3}, ["audit.log"])
    assert failed.problems == ["audit.log: missing after restore"]


# -- schema ---------------------------------------------------------------------------------------


def test_schema_matches_the_manifest(
    make_manifest: Callable[..., Manifest], schema_doc: dict[str, Any]
) -> None:
    verdict = verdicts.schema(make_manifest(), schema_doc, KEY_TABLES, min_tables=3)

    assert verdict.passed
    assert verdict.check == "schema"
    assert verdict.detail == "4 tables, 8 objects in 2 sections; fingerprint matches the manifest"


def test_schema_too_few_tables(schema_doc: dict[str, Any]) -> None:
    verdict = verdicts.schema(None, schema_doc, KEY_TABLES, min_tables=5)

    assert not verdict.passed
    assert verdict.problems == ["only 4 tables restored, at least 5 expected"]


def test_schema_missing_key_table(schema_doc: dict[str, Any]) -> None:
    del schema_doc["tables"]["public.events"]

    verdict = verdicts.schema(None, schema_doc, KEY_TABLES, min_tables=3)

    assert not verdict.passed
    assert verdict.problems == ["key table public.events is missing"]
    assert verdict.detail == "key table public.events is missing"


def test_schema_without_manifest_is_legacy(schema_doc: dict[str, Any]) -> None:
    verdict = verdicts.schema(None, schema_doc, KEY_TABLES, min_tables=4)
    assert verdict.passed
    assert verdict.detail == "4 tables; no manifest fingerprint (legacy)"


def test_schema_of_an_empty_database(make_manifest: Callable[..., Manifest]) -> None:
    verdict = verdicts.schema(make_manifest(), {}, KEY_TABLES, min_tables=3)

    assert not verdict.passed
    assert verdict.problems[:3] == [
        "only 0 tables restored, at least 3 expected",
        "key table public.trades is missing",
        "key table public.events is missing",
    ]
    assert "table public.accounts is missing" in verdict.problems


def test_schema_fingerprint_mismatch_lists_the_differences(
    make_manifest: Callable[..., Manifest], schema_doc: dict[str, Any]
) -> None:
    observed = copy.deepcopy(schema_doc)
    observed["tables"]["public.trades"]["columns"][2] = ["amount", "double precision", True]
    del observed["indexes"]["public.events_pkey"]

    verdict = verdicts.schema(make_manifest(), observed, KEY_TABLES, min_tables=3)

    assert not verdict.passed
    assert verdict.problems == [
        "column public.trades.amount is ['double precision', True], manifest says ['numeric(20,7)', True]",
        "index public.events_pkey is missing (CREATE UNIQUE INDEX events_pkey ON public.events USING btree (id))",
    ]
    assert verdict.detail == "; ".join(verdict.problems)


def test_schema_columns_in_another_order_are_named(
    make_manifest: Callable[..., Manifest], schema_doc: dict[str, Any]
) -> None:
    # Same columns in another order: no column is missing or changed, but the table differs.
    observed = copy.deepcopy(schema_doc)
    observed["tables"]["public.trades"]["columns"].reverse()
    manifest = make_manifest()

    verdict = verdicts.schema(manifest, observed, KEY_TABLES, min_tables=3)

    assert not verdict.passed
    assert verdict.problems == ["table public.trades's columns are in another order than the manifest's"]


def test_schema_mismatch_without_a_nameable_difference_reports_the_fingerprints(
    make_manifest: Callable[..., Manifest], schema_doc: dict[str, Any]
) -> None:
    manifest = make_manifest(schema_fingerprint="0" * 64)  # a fingerprint of some other schema

    verdict = verdicts.schema(manifest, schema_doc, KEY_TABLES, min_tables=3)

    assert not verdict.passed
    assert verdict.problems == [f"fingerprint {catalog.fingerprint(schema_doc)} differs from {'0' * 64}"]


def test_a_format_1_manifest_is_compared_on_its_own_sections(
    make_manifest: Callable[..., Manifest], schema_doc: dict[str, Any]
) -> None:
    observed = {**copy.deepcopy(schema_doc), "triggers": {"public.trades.t": "CREATE TRIGGER t ..."}}
    verdict = verdicts.schema(make_manifest(), observed, KEY_TABLES, min_tables=3)
    assert verdict.passed, verdict.problems


def test_every_object_kind_of_a_complete_schema_is_compared_by_name(
    make_manifest: Callable[..., Manifest], schema_doc: dict[str, Any]
) -> None:
    complete = {
        **copy.deepcopy(schema_doc),
        "constraints": {"public.trades.trades_amount_check": ["c", "CHECK (amount > 0::numeric)"]},
        "triggers": {
            "public.trades.trades_audit": "CREATE TRIGGER trades_audit AFTER INSERT ON public.trades"
        },
        "sequences": {"public.trades_id_seq": ["bigint", 1, 1, 1, 9223372036854775807, False]},
        "views": {"public.open_trades": " SELECT id FROM trades;"},
        "materialized_views": {},
        "functions": {"public.f()": ["f", "CREATE FUNCTION public.f() ..."]},
        "types": {"public.kind": ["e", ["a", "b"]]},
        "extensions": {"plpgsql": "pg_catalog"},
        "acls": {"public.trades": ["r", "stellar", ["app_reader=r/stellar", "stellar=arwdDxt/stellar"]]},
        "default_acls": {},
    }
    manifest = make_manifest(
        schema=complete,
        schema_fingerprint=catalog.fingerprint(complete),
        sequence_values={"public.trades_id_seq": 3000},
    )
    observed = copy.deepcopy(complete)
    del observed["triggers"]["public.trades.trades_audit"]
    observed["constraints"]["public.trades.trades_amount_check"] = ["c", "CHECK (amount >= 0::numeric)"]
    observed["acls"]["public.trades"] = ["r", "stellar", ["stellar=arwdDxt/stellar"]]
    observed["views"]["public.open_trades"] = " SELECT id FROM trades WHERE false;"

    verdict = verdicts.schema(manifest, observed, KEY_TABLES, 3, {"public.trades_id_seq": 1})

    assert not verdict.passed
    assert verdict.problems == [
        "constraint public.trades.trades_amount_check differs: restored "
        '["c","CHECK (amount >= 0::numeric)"], manifest ["c","CHECK (amount > 0::numeric)"]',
        "trigger public.trades.trades_audit is missing (CREATE TRIGGER trades_audit AFTER INSERT ON public.trades)",
        "view public.open_trades differs: restored SELECT id FROM trades WHERE false;, manifest SELECT id FROM trades;",
        'privileges of public.trades differs: restored ["r","stellar",["stellar=arwdDxt/stellar"]], '
        'manifest ["r","stellar",["app_reader=r/stellar","stellar=arwdDxt/stellar"]]',
        "sequence public.trades_id_seq is at 1, manifest says at least 3000",
    ]
    moved_on = verdicts.schema(manifest, complete, KEY_TABLES, 3, {"public.trades_id_seq": 3100})
    assert moved_on.passed, moved_on.problems  # used after the backup saw it: no loss


# -- sanity queries -------------------------------------------------------------------------------


def test_sanity_queries_pass() -> None:
    results = [
        {"query": "SELECT 1", "ok": True, "rows": 1, "first": [["1"]]},
        {"query": "SELECT max(created_at) FROM events", "ok": True, "rows": 1, "first": [["x"]]},
    ]
    verdict = verdicts.sanity_queries(results)
    assert verdict.passed
    assert verdict.detail == "all 2 ran"


def test_sanity_queries_name_each_failure() -> None:
    results = [
        {"query": "SELECT 1", "ok": True, "rows": 1},
        {"query": "SELECT * FROM nope", "ok": False, "error": 'relation "nope" does not exist'},
        {"query": "SELECT 1/0", "ok": False, "error": "division by zero"},
    ]

    verdict = verdicts.sanity_queries(results)

    assert not verdict.passed
    assert verdict.problems == [
        "'SELECT * FROM nope': relation \"nope\" does not exist",
        "'SELECT 1/0': division by zero",
    ]
    assert verdict.detail.startswith("2 of 3 failed: ")


def test_sanity_queries_missing_ok_counts_as_failure() -> None:
    assert not verdicts.sanity_queries([{"query": "SELECT 1"}]).passed


def test_no_sanity_queries_pass_trivially() -> None:
    assert verdicts.sanity_queries([]).detail == "all 0 ran"


# -- rpo, report, summary -------------------------------------------------------------------------


def test_rpo_seconds() -> None:
    taken = datetime(2025, 3, 1, 2, 0, tzinfo=UTC)
    assert verdicts.rpo_seconds(taken, taken + timedelta(hours=5, milliseconds=250)) == 18000.2
    assert verdicts.rpo_seconds(taken, taken) == 0.0
    # A backup "from the future" (clock skew) loses nothing rather than a negative amount.
    assert verdicts.rpo_seconds(taken, taken - timedelta(minutes=1)) == 0.0
