"""What a check finds: a state (ok, warning, critical, unknown), one line, and its items.

:func:`run_bounded` runs a check so that it cannot hang its caller: past its timeout it is
``unknown`` with the reason, and an unexpected error is ``unknown`` with the error, never a crash.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from stellar_ops.core.taxonomy import AlertRef as AlertRef  # the alert a non-ok check stands for

Status = Literal["ok", "warning", "critical", "unknown"]
STATUSES: tuple[Status, ...] = ("ok", "warning", "critical", "unknown")
# stellar_health_check_status and stellar_perf_check_status share these values
STATUS_VALUE: dict[Status, int] = {"ok": 0, "warning": 1, "critical": 2, "unknown": 3}
# how bad a state is, to pick the worst of several (unknown ranks below critical: it is not a failure)
_RANK: dict[Status, int] = {"ok": 0, "unknown": 1, "warning": 2, "critical": 3}


def worst(statuses: list[Status]) -> Status:
    return max(statuses, key=_RANK.__getitem__, default="ok")


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: Status
    detail: str
    items: list[dict[str, Any]] = field(default_factory=list)
    alert: AlertRef | None = None
    runbook: str = "SEC-1.1"
    duration_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "detail": self.detail,
            "items": self.items,
            "alert": None
            if self.alert is None
            else {"name": self.alert.name, "severity": self.alert.severity, "runbook": self.alert.runbook},
            "runbook": self.runbook,
            "duration_seconds": round(self.duration_seconds, 3),
        }

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> CheckResult:
        alert = document.get("alert")
        return cls(
            name=str(document["name"]),
            status=document["status"],
            detail=str(document["detail"]),
            items=list(document.get("items") or []),
            alert=AlertRef(alert["name"], alert["severity"], alert["runbook"]) if alert else None,
            runbook=str(document.get("runbook") or "SEC-1.1"),
            duration_seconds=float(document.get("duration_seconds") or 0.0),
        )


def run_bounded(name: str, check: Callable[[], CheckResult], timeout: float) -> CheckResult:
    """``check()`` in its own thread, waited for at most ``timeout`` seconds.

    A daemon thread, so a check stuck in a call that ignores its own timeouts is abandoned, not
    joined at exit; what it would still do is only reading.
    """
    outcome: list[CheckResult] = []
    failure: list[BaseException] = []
    started = time.monotonic()

    def target() -> None:
        try:
            outcome.append(check())
        except Exception as exc:  # noqa: BLE001 - any failure of a check is its result, not a crash
            failure.append(exc)

    thread = threading.Thread(target=target, name=f"health-{name}", daemon=True)
    thread.start()
    thread.join(timeout)
    elapsed = time.monotonic() - started
    if thread.is_alive():
        return CheckResult(
            name,
            "unknown",
            f"did not finish within {timeout:g}s (health.check_timeout_seconds)",
            duration_seconds=elapsed,
        )
    if failure:
        exc = failure[0]
        message = " ".join(str(exc).split())[:300] or type(exc).__name__
        return CheckResult(name, "unknown", f"could not be checked: {message}", duration_seconds=elapsed)
    result = outcome[0]
    return CheckResult(
        result.name, result.status, result.detail, result.items, result.alert, result.runbook, elapsed
    )


def run_all(checks: dict[str, Callable[[], CheckResult]], timeout: float) -> list[CheckResult]:
    """Every check at once, each under its own ``timeout``; results in the order given."""
    results: dict[str, CheckResult] = {}

    def one(name: str, check: Callable[[], CheckResult]) -> None:
        results[name] = run_bounded(name, check, timeout)

    threads = [threading.Thread(target=one, args=item, daemon=True) for item in checks.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()  # run_bounded returns within its timeout
    return [results[name] for name in checks]


def parse_utc(text: Any) -> datetime | None:
    """An ISO 8601 time (``Z`` accepted; UTC when it names no zone); None when it is not one."""
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
