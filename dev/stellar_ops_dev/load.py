"""A bounded, loopback-only load generator: API consumers sending requests with their keys while
a rotation runs, each switching from its old key to its new one at a random moment of the window.

What counts: requests sent; requests *rejected* (401/403) although the key was valid at that
moment (a consumer only uses its old key before its switch and its new key after it, and the
switches fall inside the window when both are served); requests *lost* to a restart (no answer
or a 5xx), counted apart; the longest gap between two accepted answers (the restart window).
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

LOOPBACK = ("127.0.0.1", "localhost", "::1")
MAX_RATE = 200.0  # requests per second, all consumers together
MAX_SECONDS = 3600.0


@dataclass
class Consumer:
    name: str
    old_key: str = field(repr=False)
    new_key: str | None = field(default=None, repr=False)
    switch_at: float | None = None  # epoch seconds

    def key(self, now: float) -> tuple[str, str]:
        if self.new_key is not None and self.switch_at is not None and now >= self.switch_at:
            return self.new_key, "new"
        return self.old_key, "old"


@dataclass
class LoadReport:
    sent: int = 0
    accepted: int = 0
    rejected: int = 0
    lost: int = 0
    by_key: dict[str, int] = field(default_factory=lambda: {"old": 0, "new": 0})
    longest_gap_seconds: float = 0.0
    rejections: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "lost": self.lost,
            "by_key": dict(self.by_key),
            "longest_gap_seconds": round(self.longest_gap_seconds, 3),
            "rejections": self.rejections[:20],
        }


class LoadGenerator:
    def __init__(
        self,
        base_url: str,
        consumers: list[Consumer],
        *,
        rate_per_second: float = 20.0,
        path: str = "/health",
        max_seconds: float = 900.0,
    ) -> None:
        host = urlsplit(base_url).hostname
        if host not in LOOPBACK:
            raise ValueError(f"the load generator only targets loopback, not {host!r}")
        if not 0 < rate_per_second <= MAX_RATE:
            raise ValueError(f"rate_per_second must be in (0, {MAX_RATE}], got {rate_per_second}")
        self.url = base_url.rstrip("/") + path
        self.consumers = consumers
        self.interval = len(consumers) / rate_per_second
        self.deadline = time.monotonic() + min(max_seconds, MAX_SECONDS)
        self.report = LoadReport()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(c,), daemon=True) for c in consumers]
        self._last_ok = 0.0

    def schedule_switches(
        self, new_keys: list[str], start: float, end: float, seed: int | None = None
    ) -> None:
        """Give consumer i new key i, switching at a random moment of [start, end] (epoch seconds)."""
        rng = random.Random(seed)
        for consumer, key in zip(self.consumers, new_keys, strict=False):
            consumer.switch_at = rng.uniform(start, end)
            consumer.new_key = key

    def start(self) -> LoadGenerator:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> LoadReport:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        return self.report

    def _run(self, consumer: Consumer) -> None:
        import requests

        session = requests.Session()
        while not self._stop.is_set() and time.monotonic() < self.deadline:
            started = time.monotonic()
            key, role = consumer.key(time.time())
            try:
                status = session.get(self.url, headers={"X-API-Key": key}, timeout=5).status_code
            except requests.RequestException:
                status = 0
            self._count(consumer, role, status)
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def _count(self, consumer: Consumer, role: str, status: int) -> None:
        now = time.monotonic()
        with self._lock:
            report = self.report
            report.sent += 1
            report.by_key[role] += 1
            if 200 <= status < 300:
                report.accepted += 1
                if self._last_ok:
                    report.longest_gap_seconds = max(report.longest_gap_seconds, now - self._last_ok)
                self._last_ok = now
            elif status in (401, 403):
                report.rejected += 1
                report.rejections.append({"consumer": consumer.name, "key": role, "at": time.time()})
            else:
                report.lost += 1
