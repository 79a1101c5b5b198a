"""stellar_ops.core.durations: a duration in words, as the on-call engineer reads it."""

from __future__ import annotations

from datetime import timedelta

import pytest

from stellar_ops.core.durations import humanize_duration


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (timedelta(days=7), "7 days"),  # str(): "7 days, 0:00:00"
        (timedelta(minutes=4, seconds=19, microseconds=200000), "4 min 19 s"),  # str(): "0:04:19.200000"
        (timedelta(hours=2, minutes=5), "2 h 5 min"),
        (0.85, "850 ms"),
        (0, "0 ms"),
        (0.0004, "0 ms"),
        (1, "1 s"),
        (4.27, "4.3 s"),
        (9.96, "10 s"),
        (42.26, "42 s"),
        (60, "1 min"),
        (59.6, "1 min"),  # rounded to the unit shown, then named again
        (3599.6, "1 h"),
        (3600, "1 h"),
        (7200.0, "2 h"),
        (86400, "1 day"),
        (90000, "1 day 1 h"),
        (timedelta(days=400, hours=3), "400 days 3 h"),
        (timedelta(hours=1, minutes=59, seconds=40), "2 h"),
        (-5, "-5 s"),
    ],
)
def test_at_most_two_units_and_never_microseconds(value: timedelta | float, expected: str) -> None:
    assert humanize_duration(value) == expected


@pytest.mark.parametrize("seconds", [0.001, 0.5, 3.3, 59, 61, 3601.5, 86399, 86401, 10 * 86400 + 1.25])
def test_never_clock_notation_nor_more_than_two_numbers(seconds: float) -> None:
    text = humanize_duration(seconds)
    assert ":" not in text and "," not in text
    assert sum(part.replace(".", "").isdigit() for part in text.split()) <= 2


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_duration_that_is_no_number_is_refused(value: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        humanize_duration(value)
