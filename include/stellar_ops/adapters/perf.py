"""Task bodies of ``perf_analysis``: each runs one step of :mod:`stellar_ops.perf.flow`."""

from __future__ import annotations

from typing import Any

from stellar_ops.adapters.common.runtime import checked, current_context, run_slot, task_runtime
from stellar_ops.perf import flow
from stellar_ops.perf.config import CHECKS

__all__ = ["CHECKS", "assemble_report", "check_performance", "list_checks", "publish_report"]


@checked
def list_checks(chosen: list[str] | None) -> list[str]:
    rt = task_runtime()
    names = flow.select_checks(rt, chosen)
    rt.say(f"checks: {', '.join(names)}")
    return names


@checked
def check_performance(name: str) -> dict[str, Any]:
    context = current_context()
    context["check_name"] = name  # the mapped task's label in the grid
    rt = task_runtime()
    # its values and findings (slow queries, indexes, tables) wait in the bucket for the report
    return flow.stage_result(rt, flow.run_check(rt, name), context["dag_run"].run_id)


REGRESSIONS_SHOWN = 10  # query ids in assemble_report's XCom; the report has them all


@checked
def assemble_report(results: list[dict[str, Any]], compare_to: str | None) -> dict[str, Any]:
    context = current_context()
    rt = task_runtime()
    staged = list(results)
    summary = flow.assemble_report(
        rt,
        flow.load_results(rt, staged),
        day=run_slot(context).date(),
        run_id=context["dag_run"].run_id,
        compare_to=compare_to or None,
    )
    flow.discard_results(rt, staged)
    # The document (with its snapshot) stays in S3; XCom carries where it is and the states.
    regressions = list(summary["regressions"])
    return {
        **{k: v for k, v in summary.items() if k not in ("document", "markdown")},
        "regressions": regressions[:REGRESSIONS_SHOWN],
        "regressions_count": len(regressions),
    }


@checked
def publish_report(assembled: dict[str, Any]) -> dict[str, Any]:
    rt = task_runtime()
    document = flow.load_report(rt, assembled["key"])
    return flow.publish_report(rt, document, where=rt.store().url(assembled["key"]))
