"""Build an archive's indexes and constraints over sessions of their own, as their tables load.

Each session runs the script's settings once, then takes the next entry the
:class:`~stellar_ops.post_data.Schedule` allows, one statement batch at a time (autocommit, as
``pg_restore`` runs them). Sessions are opened up front, so the last tables' builds start the
moment their data is in, without a new program or connection.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

from stellar_ops.core.errors import RestoreError
from stellar_ops.dr.engine import post_data
from stellar_ops.dr.engine.parallel_load import describe_failure
from stellar_ops.postgres.target import PgTarget, connect


class PostDataRunner:
    """Start with :meth:`start`; report loaded tables with :meth:`table_loaded`; end with :meth:`finish`."""

    def __init__(self, target: PgTarget, sessions: int) -> None:
        if sessions < 1:
            raise ValueError(f"sessions must be at least 1, got {sessions}")
        self.target = target
        self.sessions = sessions
        self._cond = threading.Condition()
        self._schedule = post_data.Schedule([])
        self._plan: post_data.Plan | None = None
        self._error: str | None = None
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self._conns: list[Any] = []

    def start(self, plan: post_data.Plan) -> None:
        """Open the sessions and begin with whatever is loaded already."""
        with self._cond:
            if self._stopping:
                return
            loaded, all_loaded = self._schedule.loaded, self._schedule.all_loaded
            self._plan = plan
            self._schedule = post_data.Schedule(plan.early())
            self._schedule.loaded, self._schedule.all_loaded = loaded, all_loaded
            # started under the lock, so that a stop() meanwhile joins every one of them
            for index in range(self.sessions):
                thread = threading.Thread(target=self._serve, name=f"stellar-post-data-{index}", daemon=True)
                thread.start()
                self._threads.append(thread)

    def table_loaded(self, table: str) -> None:
        with self._cond:
            self._schedule.loaded.add(table)
            self._cond.notify_all()

    def finish(self) -> list[str]:
        """Every table is loaded: build the rest of the early entries; the list lines of those built.

        Raises :class:`RestoreError` quoting the first statement that failed.
        """
        with self._cond:
            self._schedule.all_loaded = True
            self._cond.notify_all()
            while not (self._schedule.finished() or self._error or self._stopping):
                self._cond.wait()
        if self._error:
            self.stop()
            raise RestoreError(f"building the indexes and constraints failed: {self._error}")
        self._join()
        return [each.list_line for each in self._schedule.built if each.list_line]

    def stop(self) -> None:
        """Give up: cancel what runs and close the sessions."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            for conn in self._conns:
                with contextlib.suppress(Exception):
                    conn.cancel()
        self._join()

    def _join(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join()

    def _serve(self) -> None:
        try:
            with connect(self.target) as conn:
                with self._cond:
                    self._conns.append(conn)
                assert self._plan is not None
                for setting in self._plan.settings:
                    conn.execute(setting)
                while (entry := self._take()) is not None:
                    try:
                        conn.execute(entry.sql)
                    except Exception as exc:  # noqa: BLE001 - reported by finish()
                        self._fail(describe_failure(exc, entry.describe()))
                        return
                    with self._cond:
                        self._schedule.done(entry)
                        self._cond.notify_all()
        except Exception as exc:  # noqa: BLE001 - reported by finish()
            self._fail(describe_failure(exc))

    def _fail(self, error: str) -> None:
        with self._cond:
            if self._error is None and not self._stopping:
                self._error = error
            self._cond.notify_all()

    def _take(self) -> post_data.Entry | None:
        with self._cond:
            while not (self._error or self._stopping):
                entry = self._schedule.next()
                if entry is not None:
                    return entry
                if self._schedule.all_loaded and not self._schedule.waiting:
                    return None  # nothing more to start: the others finish what they run
                self._cond.wait()
            return None
