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
    return flow.run_check(task_runtime(), name).as_dict()


@checked
def assemble_report(results: list[dict[str, Any]], compare_to: str | None) -> dict[str, Any]:
    context = current_context()
    summary = flow.assemble_report(
        task_runtime(),
        list(results),
        day=run_slot(context).date(),
        run_id=context["dag_run"].run_id,
        compare_to=compare_to or None,
    )
    # The document (with its snapshot) stays in S3; XCom carries where it is and the states.
    return {k: v for k, v in summary.items() if k not in ("document", "markdown")}


@checked
def publish_report(assembled: dict[str, Any]) -> dict[str, Any]:
    rt = task_runtime()
    document = flow.load_report(rt, assembled["key"])
    return flow.publish_report(rt, document, where=rt.store().url(assembled["key"]))
