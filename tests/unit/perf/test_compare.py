"""Week over week: regressions by this week's mean, new top entries, and resets said as resets."""

from __future__ import annotations

from stellar_ops.perf.compare import compare, detect_reset


def entry(qid: str, calls: int, total_ms: float, query: str = "SELECT 1") -> dict:
    return {"queryid": qid, "calls": calls, "total_ms": total_ms, "mean_ms": total_ms / calls, "query": query}


def snap(*entries: dict, reset: str = "2026-11-01T00:00:00+00:00") -> dict:
    return {"stats_reset": reset, "entries": list(entries)}


def run(previous, current, **kwargs):
    options = {
        "regression_share": 0.5,
        "min_mean_ms": 1.0,
        "top": [],
        "previous_top": [],
        "compared_key": "perf/2026-11-22.json",
    }
    options.update(kwargs)
    return compare(previous, current, **options)


def test_a_query_slower_this_week_is_a_regression_by_its_weekly_mean() -> None:
    # 1000 calls at 10 ms last week; this week 100 more calls at 30 ms each: the cumulative mean
    # barely moves (11.8 ms), the week's mean is 30 ms.
    before = snap(entry("7", 1000, 10_000), entry("8", 500, 5_000))
    after = snap(entry("7", 1100, 13_000), entry("8", 600, 6_000))
    result = run(before, after)
    assert result["available"] and result["reset"] is None
    (regression,) = result["regressions"]
    assert regression["queryid"] == "7"
    assert regression["mean_ms_before"] == 10
    assert regression["mean_ms_now"] == 30
    assert regression["change_share"] == 2.0
    assert regression["calls_this_week"] == 100


def test_a_rise_within_the_share_is_not_a_regression() -> None:
    before = snap(entry("7", 100, 1_000))
    after = snap(entry("7", 200, 2_000 + 400))  # this week's mean 14 ms: +40%
    assert run(before, after)["regressions"] == []


def test_fast_queries_and_queries_not_called_this_week_are_left_out() -> None:
    before = snap(entry("1", 100, 10), entry("2", 100, 1000))
    after = snap(entry("1", 200, 10 + 90), entry("2", 100, 1000))  # 0.9 ms now; no new calls
    assert run(before, after)["regressions"] == []


def test_a_reset_between_weeks_is_reported_as_a_reset_not_an_improvement() -> None:
    before = snap(entry("7", 1000, 10_000), reset="2026-11-01T00:00:00+00:00")
    after = snap(entry("7", 10, 400), reset="2026-11-25T00:00:00+00:00")
    result = run(before, after)
    assert "reset" in result["reset"] and "2026-11-25" in result["reset"]
    (regression,) = result["regressions"]  # 40 ms since the reset against 10 ms before
    assert regression["mean_ms_now"] == 40


def test_counters_that_fell_mean_a_reset_even_without_stats_reset() -> None:
    before = snap(entry("7", 1000, 10_000), reset=None)
    after = snap(entry("7", 10, 50), reset=None)
    assert detect_reset(before, after) is not None
    result = run(before, after)
    assert result["reset"] and result["regressions"] == []


def test_new_entries_in_the_top_list() -> None:
    top = [{"queryid": "1", "query": "a"}, {"queryid": "9", "query": "new one", "mean_ms": 5}]
    result = run(snap(), snap(), top=top, previous_top=[{"queryid": "1"}])
    assert [q["queryid"] for q in result["new_in_top"]] == ["9"]


def test_without_a_previous_report_nothing_is_compared() -> None:
    result = compare(
        None,
        snap(entry("7", 1, 1)),
        regression_share=0.5,
        min_mean_ms=1,
        top=[],
        previous_top=None,
        compared_key=None,
    )
    assert not result["available"] and result["regressions"] == [] and result["reason"]
