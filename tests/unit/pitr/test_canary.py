"""stellar_ops.pitr.canary's pure parts: the verdict on a recovery, the RPO it reached, the moment."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from stellar_ops.core.errors import PrerequisiteError, VerificationError
from stellar_ops.pitr import canary
from stellar_ops.pitr.canary import CanaryRow

T0 = datetime(2026, 12, 6, 12, 0, 0, tzinfo=UTC)


def rows(count: int = 10, every: float = 5.0, first_id: int = 1) -> list[CanaryRow]:
    """Canaries committed every ``every`` seconds from T0, each 0.25 s into its second."""
    return [CanaryRow(first_id + n, T0 + timedelta(seconds=n * every + 0.25)) for n in range(count)]


def test_a_recovery_holding_exactly_the_canaries_up_to_the_target_passes():
    source = rows()  # commits at :00.25, :05.25, ... :45.25
    target = T0 + timedelta(seconds=22)  # after id 5 (:20.25), before id 6 (:25.25)
    reached = T0 + timedelta(seconds=21, microseconds=500_000)

    verdict = canary.verdict(source, {1, 2, 3, 4, 5}, target, reached)

    assert verdict.passed, verdict.detail
    assert (verdict.expected, verdict.recovered) == (5, 5)
    assert verdict.missing == [] and verdict.extra == []
    assert verdict.newest_recovered == T0 + timedelta(seconds=20.25)
    assert verdict.rpo_seconds == 0.5  # target - the last replayed commit
    assert "all 5 canaries committed at or before 2026-12-06T12:00:22.000000Z are there" in verdict.detail
    assert "none of the 5 after it" in verdict.detail
    verdict.raise_if_failed()


def test_without_the_reached_time_the_rpo_is_measured_from_the_newest_recovered_canary():
    verdict = canary.verdict(rows(), {1, 2, 3, 4, 5}, T0 + timedelta(seconds=22))

    assert verdict.passed
    assert verdict.rpo_seconds == 1.75  # 22 - 20.25


def test_a_canary_committed_exactly_at_the_target_must_be_there():
    source = rows()
    target = source[3].committed_at  # recovery_target_inclusive: a commit at the target is applied

    assert canary.verdict(source, {1, 2, 3, 4}, target).passed
    short = canary.verdict(source, {1, 2, 3}, target)
    assert not short.passed
    assert short.missing == [{"id": 4, "committed_at": target}]


def test_a_recovery_that_stopped_short_names_the_first_missing_canaries():
    source = rows(20)
    target = T0 + timedelta(seconds=92)  # ids 1..19 committed at or before it

    verdict = canary.verdict(source, set(range(1, 9)), target)

    assert not verdict.passed
    assert verdict.missing_count == 11
    assert [m["id"] for m in verdict.missing] == [9, 10, 11, 12, 13]
    assert (
        "11 canary row(s) committed at or before the target are missing, first 9 "
        "(2026-12-06T12:00:40.250000Z), 10 (2026-12-06T12:00:45.250000Z)" in verdict.detail
    )
    assert "and 6 more: the recovery stopped short of the target" in verdict.detail
    with pytest.raises(VerificationError, match="point-in-time canaries failed: 11 canary row"):
        verdict.raise_if_failed()


def test_a_recovery_that_went_past_the_target_names_the_extra_canaries():
    source = rows()
    target = T0 + timedelta(seconds=12)  # ids 1..3

    verdict = canary.verdict(source, {1, 2, 3, 4, 5}, target, reached=T0 + timedelta(seconds=20.25))

    assert not verdict.passed
    assert verdict.extra_count == 2
    assert verdict.extra == [
        {"id": 4, "committed_at": T0 + timedelta(seconds=15.25)},
        {"id": 5, "committed_at": T0 + timedelta(seconds=20.25)},
    ]
    assert (
        "2 canary row(s) committed after the target are present, first 4 (2026-12-06T12:00:15.250000Z)"
        in (verdict.detail)
    )
    assert "the recovered server replayed a commit of 2026-12-06T12:00:20.250000Z, after the target" in (
        verdict.detail
    )
    assert verdict.rpo_seconds == 0.0  # never negative


def test_a_recovery_with_no_canary_before_the_target_proves_nothing_and_fails():
    verdict = canary.verdict(rows(), set(), T0 - timedelta(seconds=1))

    assert not verdict.passed
    assert "no canary was committed at or before the target 2026-12-06T11:59:59.000000Z" in verdict.detail
    assert "is the canary writer running?" in verdict.detail
    assert verdict.rpo_seconds is None

    empty = canary.verdict([], set(), T0)
    assert not empty.passed and "does not exist" in empty.detail


def test_an_empty_recovered_table_fails_as_missing_everything():
    verdict = canary.verdict(rows(), set(), T0 + timedelta(seconds=60))

    assert not verdict.passed
    assert verdict.missing_count == 10 and verdict.recovered == 0


def test_ids_the_source_never_committed_mean_another_server_was_recovered():
    verdict = canary.verdict(rows(), {1, 2, 3, 400}, T0 + timedelta(seconds=12))

    assert not verdict.passed
    assert verdict.unknown_ids == [400]
    assert "were never committed in the source, first 400" in verdict.detail


def test_ids_older_than_the_source_keeps_are_not_held_against_the_recovery():
    # ids below the oldest the source still has (its commit time unknown, or the row pruned) are
    # no evidence either way
    verdict = canary.verdict(rows(first_id=100), {7, 100, 101}, T0 + timedelta(seconds=7))

    assert verdict.passed, verdict.detail


def test_the_verdict_travels_as_plain_data():
    verdict = canary.verdict(rows(), {1, 2, 3, 4}, T0 + timedelta(seconds=12), T0 + timedelta(seconds=10.25))

    document = verdict.as_dict()

    assert document["check"] == "point-in-time canaries"
    assert document["passed"] is False
    assert document["target"] == "2026-12-06T12:00:12+00:00"
    assert document["extra"] == [{"id": 4, "committed_at": "2026-12-06T12:00:15.250000+00:00"}]
    assert document["reached"] == "2026-12-06T12:00:10.250000+00:00"
    assert document["problems"] and isinstance(document["problems"][0], str)


def test_a_naive_target_is_refused():
    with pytest.raises(ValueError, match="no time zone"):
        canary.verdict(rows(), set(), datetime(2026, 12, 6, 12, 0))


# -- the moment ---------------------------------------------------------------------------------


def test_the_moment_is_a_whole_second_inside_the_bounds():
    low = T0 + timedelta(microseconds=300)
    high = T0 + timedelta(seconds=10, microseconds=900)
    seen = {canary.choose_moment(low, high, random.Random(seed)) for seed in range(300)}

    assert all(moment.microsecond == 0 for moment in seen)
    assert min(seen) == T0 + timedelta(seconds=1)  # low rounded up
    assert max(seen) == T0 + timedelta(seconds=10)  # high rounded down
    assert len(seen) == 10  # every second of the range can be chosen


def test_an_empty_window_has_no_moment():
    with pytest.raises(PrerequisiteError, match="no whole second to recover to between"):
        canary.choose_moment(
            T0 + timedelta(seconds=5, microseconds=1), T0 + timedelta(seconds=5, microseconds=999)
        )


def test_the_bounds_are_the_lookback_or_the_window_start_and_the_safe_point():
    now = T0
    safe = T0 - timedelta(seconds=3)
    day = timedelta(hours=24)

    # a window older than the lookback: the last 24 hours
    assert canary.rehearsal_bounds(now, T0 - timedelta(days=9), safe, day) == (T0 - day, safe)
    # a base backup from an hour ago: from its end
    assert canary.rehearsal_bounds(now, T0 - timedelta(hours=1), safe, day) == (T0 - timedelta(hours=1), safe)


def test_no_moment_before_the_first_canary():
    first = T0 - timedelta(hours=2)
    low, _ = canary.rehearsal_bounds(T0, T0 - timedelta(days=9), T0, timedelta(hours=24), first)
    assert low == first
