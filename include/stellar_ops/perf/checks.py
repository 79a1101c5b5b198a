"""What a check finds: a state (ok, warning, critical, unknown) with its values, and the grading
of a value against a threshold. ``unknown`` is its own state: a source that is not configured or
did not answer is never counted as ``ok``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from stellar_ops.perf.config import Above, Below

State = Literal["ok", "warning", "critical", "unknown"]
STATES: tuple[State, ...] = ("ok", "warning", "critical", "unknown")
# stellar_perf_check_status{check}
STATUS_VALUE: dict[State, int] = {"ok": 0, "warning": 1, "critical": 2, "unknown": 3}
_RANK: dict[State, int] = {"ok": 0, "warning": 1, "critical": 2}


@dataclass(frozen=True)
class CheckResult:
    check: str
    state: State
    summary: str  # one line: the value that decided the state, against its threshold
    values: dict[str, Any] = field(default_factory=dict)
    findings: list[str] = field(default_factory=list)  # what to look at, one line each

    def as_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "state": self.state,
            "summary": self.summary,
            "values": self.values,
            "findings": list(self.findings),
        }

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> CheckResult:
        state = document.get("state")
        if state not in STATES:
            raise ValueError(f"check result {document.get('check')!r} has no valid state: {state!r}")
        return cls(
            check=str(document["check"]),
            state=state,
            summary=str(document.get("summary", "")),
            values=dict(document.get("values") or {}),
            findings=list(document.get("findings") or []),
        )


def unknown(check: str, reason: str, **values: Any) -> CheckResult:
    return CheckResult(check, "unknown", reason, dict(values))


def grade_above(value: float, threshold: Above) -> State:
    """Warning above ``threshold.warning``, critical above ``threshold.critical``; the boundary is ok."""
    if value > threshold.critical:
        return "critical"
    if value > threshold.warning:
        return "warning"
    return "ok"


def grade_below(value: float, threshold: Below) -> State:
    """Warning below ``threshold.warning``, critical below ``threshold.critical``; the boundary is ok."""
    if value < threshold.critical:
        return "critical"
    if value < threshold.warning:
        return "warning"
    return "ok"


def worst(states: Sequence[State]) -> State:
    """The worst graded state; ``ok`` when there is none. Unknown parts are not graded here."""
    graded = [s for s in states if s != "unknown"]
    return max(graded, key=lambda s: _RANK[s]) if graded else "ok"


def limits(threshold: Above | Below) -> str:
    sign = ">" if isinstance(threshold, Above) else "<"
    return f"warning {sign} {threshold.warning:g}, critical {sign} {threshold.critical:g}"
