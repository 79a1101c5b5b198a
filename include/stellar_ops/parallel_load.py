"""Load the data section of a dump over several sessions at once, while it is being written.

``pg_restore --section=data -f FILE`` turns an archive's data into a script: a few ``SET`` lines,
one ``COPY ... FROM stdin;`` block per table, and ``setval`` calls. Each COPY block goes first to
one of ``connections`` loaders (the one with the least left to load), each a session of its own,
in a transaction that starts with ``TRUNCATE`` of the (new, empty) table, so on a server with
``wal_level=minimal`` the COPY skips the WAL, as ``pg_restore -j`` does. If another loader falls
idle while a big table still has much to come, the owner commits what it has and the rest of
the table is shared out in pieces (WAL-logged), so no core waits on one long COPY. Other
statements run in order on the first loader, session settings on all of them. A caller hears of
each table once all its rows are committed (the DR restore builds its indexes then).

The script is read from its file as it grows (:class:`ScriptFile`), and loaders are handed byte
ranges of it, a few pieces ahead of their server: what is not handed out yet is just file.

A COPY block's rows are passed on whole: in COPY text format a newline inside a value is written
``\\n``, so every newline ends a row, and a line that is exactly ``\\.`` ends the block.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import queue
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stellar_ops.errors import RestoreError
from stellar_ops.pg import PgTarget, connect

CHUNK_BYTES = 1 << 20
PIECE_BYTES = 8 << 20  # rows are handed out in pieces of about this size, cut at a row's end
BACKLOG_BYTES = 16 << 20  # what a session may have been handed ahead of its server
SHARE_AFTER_BYTES = 32 << 20  # a table is shared only once its owner has had this much of it
_COPY_START = re.compile(rb"^COPY (.+) FROM stdin;$")
_COPY_TABLE = re.compile(r"^((?:\"(?:[^\"]|\"\")+\"|[^\s.(\"]+)\.(?:\"(?:[^\"]|\"\")+\"|[^\s.(\"]+))")
_COPY_END = b"\\.\n"
_SESSION_SETTING = re.compile(r"^\s*(SET\s|SELECT pg_catalog\.set_config\()")
# psql meta-commands pg_restore 15.14+ writes around a script; they mean nothing to a plain session.
_IGNORED_META = (b"\\restrict ", b"\\unrestrict ")


@dataclass
class LoadStats:
    """What was loaded: rows per table, the sessions that loaded each, statements run, bytes read."""

    rows: dict[str, int] = field(default_factory=dict)
    sessions: dict[str, list[int]] = field(default_factory=dict)
    statements: int = 0
    bytes: int = 0


# -- the script file -------------------------------------------------------------------------------


class ScriptFile:
    """A file another process may still be writing, read through a memory map that follows it.

    ``writing()`` says whether the writer is still at work; once it is not, the end of the file
    is the end of the script. The file only grows (its writer appends).
    """

    def __init__(self, path: Path, writing: Callable[[], bool], poll_seconds: float = 0.005) -> None:
        self._fd = os.open(path, os.O_RDONLY)
        self._writing = writing
        self._poll = poll_seconds
        self._map: mmap.mmap | None = None
        self.size = 0  # bytes mapped so far

    def grow(self, at_least: int = 1) -> bool:
        """Wait for ``at_least`` more bytes (fewer if the writer ends); False if none will come."""
        while True:
            still_writing = self._writing()
            size = os.fstat(self._fd).st_size
            if size >= self.size + at_least or (size > self.size and not still_writing):
                old, self._map = self._map, mmap.mmap(self._fd, size, access=mmap.ACCESS_READ)
                if old is not None:
                    old.close()
                self.size = size
                return True
            if not still_writing:
                return False
            time.sleep(self._poll)

    def find(self, needle: bytes, start: int, end: int | None = None) -> int:
        return self._map.find(needle, start, self.size if end is None else end) if self._map else -1

    def rfind(self, needle: bytes, start: int, end: int) -> int:
        return self._map.rfind(needle, start, end) if self._map else -1

    def byte(self, offset: int) -> int:
        assert self._map is not None
        return self._map[offset]

    def slice(self, start: int, end: int) -> bytes:
        return self._map[start:end] if self._map else b""

    def read(self, offset: int, length: int) -> bytes:
        """Bytes the dispatcher has seen (so already in the file); safe from any thread."""
        data = os.pread(self._fd, length, offset)
        if len(data) != length:
            raise RestoreError(f"the data script returned {len(data)} of {length} bytes at {offset}")
        return data

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
        os.close(self._fd)


# -- loaders ----------------------------------------------------------------------------------------


def _is_ordinary_table(conn: Any, table: str) -> bool:
    """Whether ``table`` is an ordinary table (TRUNCATE ONLY of a partitioned one fails)."""
    row = conn.execute("SELECT relkind::text FROM pg_class WHERE oid = to_regclass(%s)", (table,)).fetchone()
    return row is not None and row[0] == "r"


class _Tally:
    """The pieces of one table handed out; says when the last is committed and no more will come."""

    def __init__(self, table: str, on_loaded: Callable[[str], None]) -> None:
        self.table = table
        self._on_loaded = on_loaded
        self._lock = threading.Lock()
        self._out = 0
        self._closed = False

    def piece(self) -> None:
        with self._lock:
            self._out += 1

    def committed(self) -> None:
        with self._lock:
            self._out -= 1
            loaded = self._closed and self._out == 0
        if loaded:
            self._on_loaded(self.table)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            loaded = self._out == 0
        if loaded:
            self._on_loaded(self.table)


@dataclass(frozen=True)
class _Block:
    statement: str
    table: str
    truncate: bool  # empty it first (if it is an ordinary table) for the WAL skip
    tally: _Tally | None = None


class _Loader(threading.Thread):
    """One session: runs what the dispatcher hands it, in order; remembers its first failure."""

    def __init__(self, index: int, target: PgTarget, script: ScriptFile, progress: threading.Event) -> None:
        super().__init__(name=f"stellar-load-{index}", daemon=True)
        self.index = index
        self.target = target
        self.script = script
        self.progress = progress  # set each time a message is done
        self.inbox: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self.error: str | None = None
        self.connected = threading.Event()
        self.connect_error: BaseException | None = None
        self.rows: dict[str, int] = {}  # rows COPY reported, by table, once committed
        self._lock = threading.Lock()
        self._to_load = 0  # bytes handed over and not yet sent to the server
        self._unserved = 0  # messages handed over and not yet done
        self._block = _Block("", "", truncate=False)  # the block being loaded
        self._cursor: Any = None
        self._copy_cm: Any = None
        self._copy: Any = None
        self._statement = ""

    # the dispatcher's side
    def give(self, message: tuple[str, Any]) -> None:
        with self._lock:
            self._unserved += 1
            if message[0] == "rows":
                self._to_load += message[1][1]
        self.inbox.put(message)

    def busy(self) -> bool:
        with self._lock:
            return self._unserved > 0

    def to_load(self) -> int:
        with self._lock:
            return self._to_load

    # the loader's side
    def run(self) -> None:
        try:
            with connect(self.target, autocommit=False) as conn:
                self.connected.set()
                self._serve(conn)
        except BaseException as exc:  # noqa: BLE001 - reported by the dispatcher
            if not self.connected.is_set():
                self.connect_error = exc
                self.connected.set()
            elif self.error is None:
                self.error = describe_failure(exc)
            while self.inbox.get()[0] != "stop":
                pass

    def _serve(self, conn: Any) -> None:
        while True:
            kind, payload = self.inbox.get()
            if kind == "stop":
                return
            if self.error is None:
                self._serve_one(conn, kind, payload)
            with self._lock:
                self._unserved -= 1
                if kind == "rows":
                    self._to_load -= payload[1]
            self.progress.set()

    def _serve_one(self, conn: Any, kind: str, payload: Any) -> None:
        try:
            if kind == "sql":
                self._statement = payload
                conn.execute(payload)
                conn.commit()
            elif kind == "begin":
                self._statement, self._block = payload.statement, payload
                if payload.truncate and _is_ordinary_table(conn, payload.table):
                    conn.execute(f"TRUNCATE TABLE ONLY {payload.table}")
                self._cursor = conn.cursor()
                self._copy_cm = self._cursor.copy(payload.statement)
                self._copy = self._copy_cm.__enter__()
            elif kind == "rows":
                offset, length = payload
                for start in range(offset, offset + length, CHUNK_BYTES):  # COPY data may be cut anywhere
                    self._copy.write(self.script.read(start, min(CHUNK_BYTES, offset + length - start)))
            elif kind == "end":
                copy_cm, self._copy_cm, self._copy = self._copy_cm, None, None
                copy_cm.__exit__(None, None, None)
                conn.commit()
                self.rows[self._block.table] = self.rows.get(self._block.table, 0) + self._cursor.rowcount
                if self._block.tally is not None:
                    self._block.tally.committed()
        except Exception as exc:  # noqa: BLE001 - the first failure is the one reported
            self.error = describe_failure(exc, self._statement)
            if self._copy_cm is not None:
                with contextlib.suppress(Exception):
                    self._copy_cm.__exit__(type(exc), exc, None)
                self._copy_cm = self._copy = None
            with contextlib.suppress(Exception):
                conn.rollback()


def describe_failure(exc: BaseException, statement: str = "") -> str:
    """The server's message and where it happened (for COPY, the table, line and column)."""
    diag = getattr(exc, "diag", None)
    message = " ".join(str(getattr(diag, "message_primary", None) or exc).split())
    context = " ".join(str(getattr(diag, "context", None) or "").split())
    where = context or " ".join(statement.split())[:300]
    return f"{message} ({where})" if where else message


# -- dispatcher -------------------------------------------------------------------------------------


def load(
    script: ScriptFile,
    target: PgTarget,
    *,
    connections: int,
    stop: Callable[[], None] = lambda: None,
    on_loaded: Callable[[str], None] = lambda table: None,
) -> LoadStats:
    """Run the data script in ``script`` over ``connections`` sessions.

    ``on_loaded(table)`` is called (from a loading thread) once all of a table's rows are
    committed. Raises :class:`RestoreError` naming the first statement or COPY row that failed;
    ``stop`` is called first, so whatever writes ``script`` can be ended.
    """
    if connections < 1:
        raise ValueError(f"connections must be at least 1, got {connections}")
    progress = threading.Event()
    loaders = [_Loader(i, target, script, progress) for i in range(connections)]
    for loader in loaders:
        loader.start()
    for loader in loaders:
        loader.connected.wait()
    stats = LoadStats()
    try:
        unreachable = next((each.connect_error for each in loaders if each.connect_error), None)
        if unreachable is not None:
            raise RestoreError(f"cannot open a loading session: {unreachable}")
        _Dispatcher(script, loaders, stats, progress, on_loaded).run()
    except BaseException:
        stop()
        raise
    finally:
        for loader in loaders:
            loader.give(("stop", None))
        for loader in loaders:
            loader.join()
    stats.rows = {table: sum(each.rows.get(table, 0) for each in loaders) for table in stats.sessions}
    errors = [each.error for each in loaders if each.error]
    if errors:
        stop()
        raise RestoreError(f"loading the data failed: {errors[0]}")
    return stats


class _Dispatcher:
    """Reads the script once, in order, through its map: ``at`` is where reading goes on."""

    def __init__(
        self,
        script: ScriptFile,
        loaders: list[_Loader],
        stats: LoadStats,
        progress: threading.Event,
        on_loaded: Callable[[str], None],
    ) -> None:
        self.script = script
        self.loaders = loaders
        self.stats = stats
        self.progress = progress
        self.on_loaded = on_loaded
        self.at = 0

    def _failed(self) -> bool:
        return any(each.error for each in self.loaders)

    def run(self) -> None:
        statement: list[bytes] = []
        while not self._failed():
            newline = self.script.find(b"\n", self.at)
            if newline < 0:
                if not self.script.grow():
                    break
                continue
            line, self.at = self.script.slice(self.at, newline), newline + 1
            header = _COPY_START.match(line) if not statement else None
            if header:
                self._copy_block(line.decode(), header.group(1).decode())
            else:
                self._statement_line(line, statement)
        self.stats.bytes = self.script.size
        rest = self.script.slice(self.at, self.script.size)
        if not self._failed() and (rest.strip() or statement):
            text = (b"".join(statement) + rest)[:200].decode(errors="replace")
            raise RestoreError(f"the data script ends inside a statement: {text!r}")

    def _statement_line(self, line: bytes, statement: list[bytes]) -> None:
        if not statement:
            if not line.strip() or line.startswith(b"--"):
                return
            if line.startswith(b"\\"):
                if line.startswith(_IGNORED_META):
                    return
                raise RestoreError(f"unexpected psql meta-command in the data script: {line[:80]!r}")
        statement.append(line + b"\n")
        if not line.rstrip().endswith(b";"):
            return
        sql = b"".join(statement).decode()
        statement.clear()
        self.stats.statements += 1
        for loader in self.loaders if _SESSION_SETTING.match(sql) else self.loaders[:1]:
            loader.give(("sql", sql))

    def _copy_block(self, header: str, target: str) -> None:
        """Hand one COPY block out as byte ranges of the script, whole rows at a time.

        The least busy session takes the block in the transaction that empties the table. If
        another session falls idle while much of the block is still to come, the owner commits
        what it has and the rest goes out in pieces, each its own COPY, to whichever session has
        room (those rows are WAL-logged: the table is no longer new to their transactions).
        """
        table_match = _COPY_TABLE.match(target)
        table = table_match.group(1) if table_match else target.split(" (", 1)[0]
        tally = _Tally(table, self.on_loaded)
        first = min(self.loaders, key=lambda each: (each.to_load(), each.index))
        tally.piece()
        first.give(("begin", _Block(header, table, truncate=table_match is not None, tally=tally)))
        sessions = self.stats.sessions.setdefault(table, [])
        sessions.append(first.index)
        owner: _Loader | None = first  # None once the block is shared
        scan = first_row = self.at  # scan: where the search for the end marker goes on
        while True:
            end, scan = self._find_end(scan)
            # whole rows only; the partial last line may be the start of the end marker
            ready = end if end >= 0 else self.script.rfind(b"\n", self.at, self.script.size) + 1
            while ready > self.at and not self._failed():
                self.progress.clear()  # before looking, so that no wake-up is missed
                if owner is not None and self._worth_sharing(owner, first_row, ready, complete=end >= 0):
                    owner.give(("end", None))
                    owner = None
                loader = self._with_room(owner)
                if loader is None:
                    self.progress.wait(0.05)
                    continue
                cut = self._row_cut(ready)
                if owner is None:
                    tally.piece()
                    loader.give(("begin", _Block(header, table, truncate=False, tally=tally)))
                    if loader.index not in sessions:
                        sessions.append(loader.index)
                loader.give(("rows", (self.at, cut - self.at)))
                if owner is None:
                    loader.give(("end", None))
                self.at = cut
            if end >= 0:
                self.at = end + len(_COPY_END)
                break
            if self._failed():
                return
            if not self.script.grow(CHUNK_BYTES):
                raise RestoreError(f"the data script ends inside the COPY block of {table}")
        if owner is not None:
            owner.give(("end", None))
        tally.close()

    def _worth_sharing(self, owner: _Loader, first_row: int, ready: int, *, complete: bool) -> bool:
        """The block is big, more than a few pieces of it are still to come, and another session is idle."""
        if self.at - first_row < SHARE_AFTER_BYTES or (complete and ready - self.at <= 2 * PIECE_BYTES):
            return False
        return any(not each.busy() for each in self.loaders if each is not owner)

    def _with_room(self, owner: _Loader | None) -> _Loader | None:
        """The owner, or once shared the least busy session, if it may be handed another piece."""
        candidates = [owner] if owner is not None else self.loaders
        loader = min(candidates, key=lambda each: (each.to_load(), each.index))
        return loader if loader.to_load() < BACKLOG_BYTES else None

    def _row_cut(self, ready: int) -> int:
        """Where the next piece ends: the last row end within a piece's size, or the first after."""
        limit = self.at + PIECE_BYTES
        if limit >= ready:
            return ready
        newline = self.script.rfind(b"\n", self.at, limit)
        if newline < 0:
            newline = self.script.find(b"\n", limit, ready)
        return newline + 1

    def _find_end(self, scan: int) -> tuple[int, int]:
        """The offset of the ``\\.`` line from ``scan`` on, or -1 and where to look again.

        It is found through its backslash (memchr-fast; backslashes are rare in COPY text, mostly
        ``\\N``), then checked to be a whole line.
        """
        script, size = self.script, self.script.size
        while True:
            found = script.find(b"\\", scan, size)
            if found < 0:
                return -1, size
            if found + len(_COPY_END) > size:
                return -1, found  # the line may not be complete yet
            if (found == 0 or script.byte(found - 1) == 0x0A) and script.slice(found, found + 3) == _COPY_END:
                return found, found
            scan = found + 1
