"""Fault injection against real processes, and readers for what the servers recorded."""

from __future__ import annotations

import re
import signal
import threading
import time
from pathlib import Path

import psutil
import requests


def _io_bytes(pid: int, counter: str = "wchar") -> int:
    """Bytes a process passed to write(2) (``wchar``) or read(2) (``rchar``): files and pipes, not
    send(2) on a socket."""
    try:
        for line in Path(f"/proc/{pid}/io").read_text().splitlines():
            if line.startswith(f"{counter}:"):
                return int(line.split()[1])
    except OSError:
        return 0
    return 0


class _PgDumpPoller:
    """Polls this process's ``program`` children (pg_dump by default) on a thread while active
    (a context manager)."""

    program = "pg_dump"

    def __init__(self) -> None:
        self._seen: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):  # noqa: ANN204 - returns the subclass
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set() and not self.done():
            for child in me.children(recursive=True):
                try:
                    if child.name() == self.program and child.pid not in self._seen and self.visit(child):
                        self._seen.add(child.pid)
                except psutil.Error:
                    continue
            time.sleep(0.002)

    def done(self) -> bool:
        return False

    def visit(self, child: psutil.Process) -> bool:
        """Handle one pg_dump; True when it needs no more visits."""
        raise NotImplementedError


class PgDumpKiller(_PgDumpPoller):
    """Kills pg_dump children with SIGKILL once they have written ``after_bytes``.

    ``counter``: ``rchar`` counts what they read instead, for a program whose output goes to a
    server's socket (pg_restore reads its archive file; what it sends is not counted).

    ``times`` bounds how many it kills (None: every one), so a first try can die and a retry live.
    ``sparing``: children whose argv holds this argument are left alone (for example the
    verification's ``--file=/dev/null`` read of an archive, when the restore's is the target).
    """

    def __init__(
        self,
        *,
        after_bytes: int = 1 << 20,
        times: int | None = 1,
        program: str = "pg_dump",
        sparing: str | None = None,
        counter: str = "wchar",
    ) -> None:
        super().__init__()
        self.program = program
        self.counter = counter
        self.after_bytes = after_bytes
        self.times = times
        self.sparing = sparing
        self.killed: list[int] = []

    def done(self) -> bool:
        return self.times is not None and len(self.killed) >= self.times

    def visit(self, child: psutil.Process) -> bool:
        if self.sparing is not None and self.sparing in child.cmdline():
            return True
        if _io_bytes(child.pid, self.counter) < self.after_bytes:
            return False
        child.send_signal(signal.SIGKILL)
        self.killed.append(child.pid)
        return True


class PgDumpWatcher(_PgDumpPoller):
    """Records the argv and environment of every pg_dump child."""

    def __init__(self) -> None:
        super().__init__()
        self.argv: list[list[str]] = []
        self.environ: list[dict[str, str]] = []

    def visit(self, child: psutil.Process) -> bool:
        argv, environ = child.cmdline(), child.environ()
        self.argv.append(argv)
        self.environ.append(environ)
        return True


def gauge(pushgateway_url: str, name: str, **labels: str) -> float | None:
    """The value of a metric on the Pushgateway, matched by its labels; None if absent."""
    text = requests.get(f"{pushgateway_url}/metrics", timeout=5).text
    for line in text.splitlines():
        match = re.match(rf"^{re.escape(name)}\{{(.*)\}} (\S+)$", line)
        if not match:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(match.group(2))
    return None


def api_metrics(api_url: str, admin_key: str) -> list[dict]:
    response = requests.get(f"{api_url}/api/metrics", headers={"X-API-Key": admin_key}, timeout=5)
    response.raise_for_status()
    return list(response.json()["metrics"])
