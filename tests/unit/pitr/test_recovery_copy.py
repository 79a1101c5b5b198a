"""A point-in-time restore into a named server: its plan for the approval, and the copy judged
against the recovered server it came from."""

from __future__ import annotations

from datetime import UTC, datetime

from stellar_ops.dr.point_in_time import PointInTimePlan, compare, default_database

PLAN = PointInTimePlan(
    target_time="2026-12-07T06:30:00Z",
    base_backup_id="20261206T020000Z",
    base_backup_stop_time="2026-12-06T02:01:10Z",
    window="the recoverable window is 2026-12-06T02:01:10Z to 2026-12-07T07:00:00Z",
    archive="s3://stellar-backups/pitr/stellar/",
    source_database="stellar_escrow",
    target="stellar_restore@db:5432",
    database="stellar_escrow_pitr_20261207_063000",
    rename_existing_to=None,
    target_server_version="15.18",
)


def _view(**counts: int) -> dict:
    return {
        "row_counts": counts,
        "tables": list(counts),
        "schema": {"tables": {t: {"columns": []} for t in counts}},
        "schema_fingerprint": "f-" + "-".join(sorted(counts)),
        "sanity": [{"query": "SELECT 1", "ok": True, "rows": 1}],
    }


def test_the_plan_says_what_is_recovered_from_where_and_where_it_goes():
    text = PLAN.summary()
    assert (
        "Recover s3://stellar-backups/pitr/stellar/ to 2026-12-07T06:30:00Z from base backup 20261206T020000Z"
        in text
    )
    assert (
        "copy its database 'stellar_escrow' into 'stellar_escrow_pitr_20261207_063000' on stellar_restore@db:5432"
        in text
    )
    assert "does not exist on the target: it will be created" in text
    assert PointInTimePlan.from_dict({**PLAN.as_dict(), "summary": text}) == PLAN


def test_the_default_database_is_named_after_the_moment():
    assert default_database(datetime(2026, 12, 7, 6, 30, tzinfo=UTC)) == "stellar_escrow_pitr_20261207_063000"


def test_a_faithful_copy_passes_every_check():
    verdicts = compare(
        _view(**{"public.trades": 5, "public.escrows": 2}), _view(**{"public.trades": 5, "public.escrows": 2})
    )
    assert [(v.check, v.passed) for v in verdicts] == [
        ("row counts", True),
        ("schema", True),
        ("sanity queries", True),
    ]


def test_a_copy_that_lost_rows_or_a_table_fails_naming_them():
    recovered = _view(**{"public.trades": 5, "public.escrows": 2})
    copied = _view(**{"public.trades": 4})
    rows, schema, _ = compare(recovered, copied)
    assert not rows.passed
    assert rows.problems == [
        "public.escrows: copied no rows, recovered 2",
        "public.trades: copied 4 rows, recovered 5",
    ]
    assert not schema.passed
