"""Week over week: this run's ``pg_stat_statements`` snapshot against a previous report's.

The counters are cumulative, so a query's mean *this week* is the growth of its total time over
the growth of its calls. A ``pg_stat_statements_reset()`` between the two (``stats_reset`` moved,
or a query's counters fell) makes that difference meaningless: it is said as a reset, and the
means are then compared as they stand, never read as an improvement.
"""

from __future__ import annotations

from typing import Any


def _by_id(entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {str(e["queryid"]): e for e in entries}


def detect_reset(previous: dict[str, Any], current: dict[str, Any]) -> str | None:
    """Why the statistics were reset between the two snapshots, or None."""
    before, now = previous.get("stats_reset"), current.get("stats_reset")
    if before and now and now != before:
        return (
            f"pg_stat_statements was reset at {now} (the compared snapshot's statistics date from {before})"
        )
    old = _by_id(previous.get("entries") or [])
    fell = [
        qid
        for qid, entry in _by_id(current.get("entries") or []).items()
        if qid in old
        and (entry["calls"] < old[qid]["calls"] or entry["total_ms"] < old[qid]["total_ms"] - 1e-6)
    ]
    if fell:
        return f"the counters of {len(fell)} queries fell (for example {fell[0]}): the statistics were reset"
    return None


def week_mean(previous: dict[str, Any] | None, current: dict[str, Any], reset: bool) -> tuple[float, int]:
    """The query's mean time and calls over the week; since the reset (or ever) when unknown."""
    if previous is None or reset:
        return float(current["mean_ms"]), int(current["calls"])
    calls = int(current["calls"]) - int(previous["calls"])
    if calls <= 0:
        return float(current["mean_ms"]), 0
    return round((float(current["total_ms"]) - float(previous["total_ms"])) / calls, 3), calls


def compare(
    previous: dict[str, Any] | None,
    current: dict[str, Any],
    *,
    regression_share: float,
    min_mean_ms: float,
    top: list[dict[str, Any]],
    previous_top: list[dict[str, Any]] | None,
    compared_key: str | None,
) -> dict[str, Any]:
    """Regressions (mean up by more than ``regression_share``) and new entries in the top list.

    ``previous`` and ``current`` are snapshots: ``{"stats_reset", "entries": [...]}`` with
    ``queryid``, ``calls``, ``total_ms``, ``mean_ms``, ``query`` per entry.
    """
    if previous is None:
        return {
            "compared_to": compared_key,
            "available": False,
            "reason": f"no previous report at {compared_key}" if compared_key else "no previous report",
            "reset": None,
            "regressions": [],
            "new_in_top": [],
        }
    reason = detect_reset(previous, current)
    old = _by_id(previous.get("entries") or [])
    regressions = []
    for entry in current.get("entries") or []:
        before = old.get(str(entry["queryid"]))
        if before is None or int(before["calls"]) == 0:
            continue
        mean, calls = week_mean(before, entry, reason is not None)
        if calls == 0 or mean < min_mean_ms:
            continue
        base = float(before["mean_ms"])
        if base > 0 and mean > base * (1 + regression_share):
            regressions.append(
                {
                    "queryid": str(entry["queryid"]),
                    "mean_ms_before": base,
                    "mean_ms_now": mean,
                    "change_share": round(mean / base - 1, 4),
                    "calls_this_week": calls,
                    "query": entry.get("query", ""),
                }
            )
    regressions.sort(key=lambda r: -r["change_share"])
    known = {str(q["queryid"]) for q in previous_top or []}
    new_in_top = [
        {"queryid": str(q["queryid"]), "mean_ms": q.get("mean_ms"), "query": q.get("query", "")}
        for q in top
        if previous_top is not None and str(q["queryid"]) not in known
    ]
    return {
        "compared_to": compared_key,
        "available": True,
        "reason": None,
        "reset": reason,
        "regressions": regressions,
        "new_in_top": new_in_top,
    }
