"""stellar_ops.maintenance: the low-traffic window and the bloat report's text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from stellar_ops.maintenance.vacuum import TableBloat, format_report, in_window


def at(hour: int, minute: int = 0, second: int = 0, microsecond: int = 0) -> datetime:
    return datetime(2025, 3, 1, hour, minute, second, microsecond, tzinfo=UTC)


@pytest.mark.parametrize(
    ("moment", "inside"),
    [
        (at(1, 59, 59, 999999), False),
        (at(2, 0), True),  # the start is inside
        (at(4, 30), True),
        (at(5, 59, 59, 999999), True),
        (at(6, 0), False),  # the end is outside
        (at(12, 0), False),
        (at(0, 0), False),
        (at(23, 59), False),
    ],
)
def test_normal_window(moment: datetime, inside: bool) -> None:
    assert in_window(moment, "02:00", "06:00") is inside


@pytest.mark.parametrize(
    ("moment", "inside"),
    [
        (at(21, 59), False),
        (at(22, 0), True),
        (at(23, 59, 59), True),
        (at(0, 0), True),  # past midnight
        (at(3, 59), True),
        (at(4, 0), False),
        (at(12, 0), False),
    ],
)
def test_window_wrapping_past_midnight(moment: datetime, inside: bool) -> None:
    assert in_window(moment, "22:00", "04:00") is inside


def test_whole_day_window() -> None:
    assert in_window(at(0, 0), "00:00", "23:59")
    assert in_window(at(23, 58, 59), "00:00", "23:59")
    assert not in_window(at(23, 59, 30), "00:00", "23:59")


def test_naive_moment_is_read_as_utc() -> None:
    assert in_window(datetime(2025, 3, 1, 3, 0), "02:00", "06:00")
    assert not in_window(datetime(2025, 3, 1, 7, 0), "02:00", "06:00")


def test_aware_non_utc_moment_is_converted_to_utc() -> None:
    cest = timezone(timedelta(hours=2))
    assert not in_window(datetime(2025, 3, 1, 3, 0, tzinfo=cest), "02:00", "06:00")


# -- format_report --------------------------------------------------------------------------------


def _row(**changes: object) -> TableBloat:
    values: dict[str, object] = {
        "table": "public.trades",
        "live_tuples": 1_234_567,
        "dead_tuples": 45_678,
        "dead_ratio": 0.0357,
        "last_vacuum": "2025-03-01T02:10:11.123456+00:00",
        "last_autovacuum": "2025-02-28T23:00:00+00:00",
        "last_analyze": None,
        "last_autoanalyze": "2025-03-01T01:00:00.5+00:00",
        "warning": False,
    }
    values.update(changes)
    return TableBloat(**values)  # type: ignore[arg-type]


def test_report_header_only_when_empty() -> None:
    text = format_report([])
    assert "\n" not in text
    assert text.split() == ["table", "live", "dead", "dead", "%", "last", "vacuum", "/", "analyze"]


def test_report_row_shows_counts_ratio_and_latest_dates() -> None:
    lines = format_report([_row()]).split("\n")

    assert len(lines) == 2
    row = lines[1]
    assert row.startswith("public.trades" + " " * (32 - len("public.trades")) + " ")
    assert "   1,234,567 " in row
    assert "    45,678 " in row
    assert "   3.6%" in row
    # The latest of manual and auto vacuum/analyze, to the second.
    assert row.endswith("  2025-03-01T02:10:11 / 2025-03-01T01:00:00")
    assert "WARNING" not in row


def test_report_row_columns_line_up_with_the_header() -> None:
    header, row = format_report([_row()]).split("\n")
    assert header.index("last vacuum") == row.index("2025-03-01T02:10:11")
    assert header.index("%") == row.index("%")


def test_report_marks_warnings_and_never_vacuumed_tables() -> None:
    row = _row(
        table="public.events",
        live_tuples=10,
        dead_tuples=90,
        dead_ratio=0.9,
        last_vacuum=None,
        last_autovacuum=None,
        last_analyze=None,
        last_autoanalyze=None,
        warning=True,
    )

    line = format_report([row]).split("\n")[1]

    assert "  90.0%" in line
    assert line.endswith("  never / never  << WARNING")


def test_report_keeps_row_order_and_long_names() -> None:
    long_name = "analytics." + "x" * 40
    text = format_report([_row(table="public.b"), _row(table=long_name), _row(table="public.a")])

    tables = [line.split()[0] for line in text.split("\n")[1:]]
    assert tables == ["public.b", long_name, "public.a"]


def test_table_bloat_as_dict() -> None:
    assert _row().as_dict()["dead_tuples"] == 45_678
    assert set(_row().as_dict()) == {
        "table",
        "live_tuples",
        "dead_tuples",
        "dead_ratio",
        "last_vacuum",
        "last_autovacuum",
        "last_analyze",
        "last_autoanalyze",
        "warning",
    }
