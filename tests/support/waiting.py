"""Waiting for what a running system does in its own time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T],
    timeout: float,
    what: str,
    *,
    interval: float = 1.0,
    explain: Callable[[], str] | None = None,
) -> T:
    """``predicate()``'s first truthy answer; an AssertionError naming ``what`` after ``timeout``
    seconds, with ``explain()``'s account of why, when given."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(interval)
    detail = f"\n{explain()}" if explain is not None else ""
    raise AssertionError(f"no {what} within {timeout:.0f}s{detail}")
