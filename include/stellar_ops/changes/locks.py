"""The locks a migration takes, watched from a second session while it runs.

A thread samples ``pg_locks`` of the migration's backend every ``lock_sample_seconds``: each
(relation, mode) it holds, or waits for (``granted = false``), with the first and last moment it
was seen. A lock held for less than one interval between two samples can go unseen; the locks a
transaction holds (until its COMMIT) are also read from the migration's own session after each
statement (:meth:`LockSampler.own_locks`), so none of them is missed, relations it created included (the
second session cannot see their names before the commit).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from stellar_ops.core.errors import PrerequisiteError
from stellar_ops.postgres.target import PgTarget, clean_error, connect

# (relation, mode, granted) of the relation locks of one backend, user schemas only: the
# catalog's own short locks say nothing about what the migration blocks.
LOCKS_SQL = """
SELECT coalesce(format('%%s.%%s', n.nspname, c.relname), 'oid ' || l.relation::text), l.mode, l.granted,
       l.relation::bigint
FROM pg_locks l
LEFT JOIN pg_class c ON c.oid = l.relation
LEFT JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE l.pid = %s AND l.locktype = 'relation'
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND (n.nspname IS NULL
       OR (n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%%'))
"""
_NAMES_SQL = "SELECT c.oid::bigint, format('%%s.%%s', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = ANY(%s)"


@dataclass
class _Seen:
    relation: str
    first: float
    last: float
    samples: int = 1


class LockSampler:
    """Samples the relation locks of backend ``pid`` of ``target``'s database from its own session."""

    def __init__(self, target: PgTarget, pid: int, interval: float) -> None:
        self.target = target
        self.pid = pid
        self.interval = interval
        self.started = time.monotonic()
        self._seen: dict[tuple[int, str, bool], _Seen] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._error: str | None = None
        self._thread = threading.Thread(target=self._run, name=f"pg_locks of {pid}", daemon=True)

    def __enter__(self) -> LockSampler:
        self.started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        try:
            with connect(self.target.bounded(10)) as conn:
                while not self._stop.is_set():
                    rows = conn.execute(LOCKS_SQL, [self.pid]).fetchall()
                    self.observe(rows, time.monotonic())
                    self._stop.wait(self.interval)
        except Exception as exc:  # noqa: BLE001 - reported by report()
            self._error = clean_error(str(exc), self.target)

    def observe(self, rows: list[Any], at: float) -> None:
        """Record rows of :data:`LOCKS_SQL` (relation, mode, granted, oid) seen at ``at``."""
        with self._lock:
            for relation, mode, granted, oid in rows:
                key = (int(oid), str(mode), bool(granted))
                seen = self._seen.get(key)
                if seen is None:
                    self._seen[key] = _Seen(str(relation), at, at)
                    continue
                seen.last = max(seen.last, at)
                seen.first = min(seen.first, at)
                seen.samples += 1
                if seen.relation.startswith("oid ") and not str(relation).startswith("oid "):
                    seen.relation = str(relation)

    def own_locks(self, conn: Any) -> list[Any]:
        """The migration's locks read from its own session (``conn``), names of the relations it
        created in its transaction included."""
        return list(conn.execute(LOCKS_SQL, [self.pid]).fetchall())

    def report(self, names_from: Any = None) -> tuple[dict[str, Any], ...]:
        """Each lock seen: ``{"relation", "mode", "waiting", "held_seconds", "since_seconds"}``
        (``held_seconds`` of a wait is how long it waited), longest first. ``names_from``: a
        connection to name the relations first seen before they were committed."""
        self.stop()
        if self._error is not None:
            raise PrerequisiteError(
                f"could not watch the locks of the migration's session (pid {self.pid}) on "
                f"{self.target.describe()}: {self._error}"
            )
        with self._lock:
            seen = dict(self._seen)
        unnamed = sorted({oid for (oid, _, _), s in seen.items() if s.relation.startswith("oid ")})
        names: dict[int, str] = {}
        if unnamed and names_from is not None:
            names = {
                int(oid): str(name) for oid, name in names_from.execute(_NAMES_SQL, [unnamed]).fetchall()
            }
        locks: list[dict[str, Any]] = [
            {
                "relation": names.get(oid, s.relation),
                "mode": mode,
                "waiting": not granted,
                "held_seconds": round(s.last - s.first, 3),
                "since_seconds": round(s.first - self.started, 3),
            }
            for (oid, mode, granted), s in seen.items()
        ]
        locks.sort(key=lambda lock: (-lock["held_seconds"], lock["relation"], lock["mode"]))
        return tuple(locks)
