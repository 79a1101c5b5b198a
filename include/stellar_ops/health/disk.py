"""Disk usage of the configured paths (data directories, volume mountpoints) against 70% / 85%.

Use is counted as ``df`` does: used blocks over the blocks an unprivileged writer can have
(used + available), so the root-reserved share counts as full.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stellar_ops.core.alerts import human_bytes
from stellar_ops.health.config import HealthConfig
from stellar_ops.health.results import AlertRef, CheckResult, Status, worst

NAME = "disk"
FULL = AlertRef("DiskAlmostFull", "P2", "SEC-1.1")


def usage(path: str, statvfs: Callable[[str], Any] = os.statvfs) -> dict[str, Any]:
    stats = statvfs(path)
    used = (stats.f_blocks - stats.f_bfree) * stats.f_frsize
    available = stats.f_bavail * stats.f_frsize
    total = used + available
    percent = 100.0 * used / total if total else 0.0
    return {"path": path, "used_bytes": used, "available_bytes": available, "percent": round(percent, 1)}


@dataclass(frozen=True)
class Place:
    """A filesystem to measure: a configured path, or a Docker volume's mountpoint (None when it
    could not be found, with the reason)."""

    label: str
    path: str | None
    problem: str | None = None


def places(settings: HealthConfig) -> list[Place]:
    return [Place(path, path) for path in settings.disk_paths]


def check(
    settings: HealthConfig, statvfs: Callable[[str], Any] = os.statvfs, where: list[Place] | None = None
) -> CheckResult:
    where = places(settings) if where is None else where
    if not where:
        return CheckResult(
            NAME, "unknown", "no path or volume is configured (health.disk_paths, health.disk_volumes)"
        )
    items: list[dict[str, Any]] = []
    states: list[Status] = []
    lines: list[str] = []
    for place in where:
        if place.path is None:
            items.append({"name": place.label, "path": None, "error": place.problem})
            states.append("unknown")
            lines.append(f"{place.label}: {place.problem}")
            continue
        try:
            item = {"name": place.label, **usage(place.path, statvfs)}
        except OSError as exc:
            items.append({"name": place.label, "path": place.path, "error": exc.strerror or str(exc)})
            states.append("unknown")
            lines.append(f"{place.label}: {place.path} cannot be read ({exc.strerror or exc})")
            continue
        percent = item["percent"]
        if percent >= settings.disk_critical_percent:
            state: Status = "critical"
        elif percent >= settings.disk_warning_percent:
            state = "warning"
        else:
            state = "ok"
        item["state"] = state
        items.append(item)
        states.append(state)
        lines.append(f"{place.label} {percent:.0f}% ({human_bytes(item['available_bytes'])} free)")
    status = worst(states)
    return CheckResult(NAME, status, "; ".join(lines), items, FULL if status == "critical" else None)
