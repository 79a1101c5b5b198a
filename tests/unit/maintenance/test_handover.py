"""What db_maintenance's steps hand each other through XCom stays small whatever the tables."""

from __future__ import annotations

import json

from stellar_ops.maintenance import flow, summary
from stellar_ops.maintenance.vacuum import TableBloat


def bloat(table: str, dead: int, *, warning: bool = False) -> TableBloat:
    return TableBloat(table, 1000, dead, dead / 1000, None, None, None, None, warning)


def test_the_bloat_before_the_vacuum_is_a_summary_of_the_worst_tables():
    report = [bloat(f"public.t{n:04d}", n % 50, warning=n % 7 == 0) for n in range(3000)]
    before = flow.bloat_before(report)
    assert before["tables"] == 3000
    assert before["warned_count"] == len([r for r in report if r.warning])
    assert len(before["warned"]) == len(before["worst"]) == flow.SHOWN
    assert [row["dead_tuples"] for row in before["worst"]] == [49] * flow.SHOWN
    assert len(json.dumps(before)) < 4096


def test_the_summary_of_a_vacuum_gives_the_message_the_same_count_total_and_slowest():
    timings = {f"public.t{n:04d}": 0.01 for n in range(3000)} | {"public.big": 4.5}
    vacuum = flow.VacuumSummary.of(timings)
    assert vacuum == flow.VacuumSummary(
        tables=3001, seconds=round(sum(timings.values()), 3), slowest="public.big", slowest_seconds=4.5
    )
    assert len(json.dumps(vacuum.as_dict())) < 200
    statements = {"installed": True, "preloaded": True}
    bloat_report = {"top": [], "still_bloated": []}
    whole = summary.message(statements=statements, vacuumed=timings, bloat=bloat_report)
    from_summary = summary.message(statements=statements, vacuumed=vacuum.timings(), bloat=bloat_report)
    assert from_summary == whole
    assert flow.VacuumSummary.of({}).timings() == {}
