"""Load the data section of a dump over several sessions at once, while it is being written.

``pg_restore --section=data -f FILE`` turns an archive's data into a script: a few ``SET`` lines,
one ``COPY ... FROM stdin;`` block per table, and ``setval`` calls. Each COPY block goes to one of
``connections`` loaders that has no block of its own open (the one with the least left to load),
each a session of its own, in a transaction that starts with ``TRUNCATE`` of the (new, empty)
table, so on a server with ``wal_level=minimal`` the COPY skips the WAL, as ``pg_restore -j``
does. Blocks load side by side: once a big block's end is written, the next one goes to a free
loader while the big one's rows are still being handed out. If a loader falls idle with no other
table to take while a big table still has much to come, the owner commits what it has and the
rest of the table is shared out in pieces (WAL-logged), so no core waits on one long COPY. Other
statements run in order on the first loader, once the rows before them are handed out; session
settings on all of them. A caller hears of each table once all its rows are committed (the DR
restore builds its indexes then).

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
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from stellar_ops.core.errors import RestoreError
from stellar_ops.postgres.target import PgTarget, connect

CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class Sharing:
    """How rows are handed out, and when a big table is shared out across the sessions.

    Sharing is safe only once the owner's COPY has begun, since the pieces shared out commit in
    transactions of their own, and the owner's ``TRUNCATE`` must not empty the table after them.
    An owner has at most ``backlog_bytes`` and one piece handed out and not yet sent, so having
    been handed more than that (``share_after_bytes``) proves its server has its first rows.
    """

    piece_bytes: int = 8 << 20  # rows are handed out in pieces of about this size, cut at a row's end
    backlog_bytes: int = 16 << 20  # what a session may have been handed ahead of its server
    share_after_bytes: int = 32 << 20  # a table is shared only once its owner has had this much of it
    # ... and while it is still being written, only once this much of it waits in the file: the
    # writer is then far ahead, and the next table (which would load beside it without WAL) far off
    share_while_written_bytes: int = 1 << 30

    def __post_init__(self) -> None:
        if (
            min(self.piece_bytes, self.backlog_bytes, self.share_after_bytes, self.share_while_written_bytes)
            <= 0
        ):
            raise ValueError(f"sharing thresholds must be positive: {self}")
        if self.share_after_bytes <= self.backlog_bytes + self.piece_bytes:
            raise ValueError(
                f"unsafe sharing thresholds: share_after_bytes ({self.share_after_bytes}) must exceed "
                f"backlog_bytes + piece_bytes ({self.backlog_bytes + self.piece_bytes}), or a shared "
                "piece could commit before the owner's TRUNCATE empties the table"
            )


SHARING = Sharing()
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
        self.complete = False  # the writer is done and every byte is mapped

    def refresh(self, at_least: int = 1) -> bool:
        """Map what the writer has added, if ``at_least`` bytes or it is done; whether anything was.

        Once the writer is seen done and its last bytes are mapped, :attr:`complete` is True.
        """
        still_writing = self._writing()
        size = os.fstat(self._fd).st_size  # read after the writer was seen done: final then
        grew = size >= self.size + at_least or (size > self.size and not still_writing)
        if grew:
            old, self._map = self._map, mmap.mmap(self._fd, size, access=mmap.ACCESS_READ)
            if old is not None:
                old.close()
            self.size = size
        self.complete = not still_writing
        return grew

    def wait(self, woken: threading.Event) -> None:
        """Wait for ``woken`` or one polling interval, whichever comes first."""
        woken.wait(self._poll)

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
    tally: _Tally


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
        self._block: _Block | None = None  # the block being loaded
        self._cursor: Any = None
        self._copy_cm: Any = None
        self._copy: Any = None
        self._statement = ""

    # the dispatcher's side
    def give(self, message: tuple[str, Any]) -> None:
        if message[0] == "rows":
            with self._lock:
                self._to_load += message[1][1]
        self.inbox.put(message)

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
            if kind == "rows":
                with self._lock:
                    self._to_load -= payload[1]
            self.progress.set()

    def _serve_one(self, conn: Any, kind: str, payload: Any) -> None:
        try:
            if kind == "sql":
                self._statement = payload
                conn.execute(payload)
                conn.commit()
            elif kind == "transaction":
                for statement in payload:
                    self._statement = statement
                    conn.execute(statement)
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
                assert self._block is not None
                self.rows[self._block.table] = self.rows.get(self._block.table, 0) + self._cursor.rowcount
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
    ready: Callable[[], object] = lambda: None,
    sharing: Sharing | None = None,
) -> LoadStats:
    """Run the data script in ``script`` over ``connections`` sessions.

    The sessions connect, then loading starts once ``ready()`` returns (say, once the tables
    exist; what it raises is raised). ``on_loaded(table)`` is called (from a loading thread) once
    all of a table's rows are committed. Raises :class:`RestoreError` naming the first statement
    or COPY row that failed; ``stop`` is called first, so whatever writes ``script`` can be ended.
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
        ready()
        _Dispatcher(
            script, loaders, stats, progress, on_loaded, SHARING if sharing is None else sharing
        ).run()
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


@dataclass(eq=False)
class _OpenBlock:
    """A COPY block being handed out: its rows start at ``first_row`` and end at ``end`` once found."""

    first: _Block  # what its owner begins with: the COPY, in the transaction that empties the table
    sessions: list[int]  # the loaders given some of it, first the owner
    first_row: int
    owner: _Loader | None  # None once it is shared out in pieces
    next: int  # the first byte not handed out yet
    scan: int  # where the search for its end marker goes on
    end: int = -1  # where its ``\\.`` line starts, once written


class _Dispatcher:
    """Reads the script once, in order, through its map, and hands it out.

    ``at`` is where reading goes on. It may pass a COPY block whose rows are still being handed
    out, once that block's end is written, and open the next block on a free session: the tables
    after a big one load beside it, each in its own transaction that skips the WAL. Statements
    wait until the blocks before them are handed out.
    """

    def __init__(
        self,
        script: ScriptFile,
        loaders: list[_Loader],
        stats: LoadStats,
        progress: threading.Event,
        on_loaded: Callable[[str], None],
        sharing: Sharing,
    ) -> None:
        self.sharing = sharing
        self.script = script
        self.loaders = loaders
        self.stats = stats
        self.progress = progress
        self.on_loaded = on_loaded
        self.at = 0
        self.open: list[_OpenBlock] = []
        self.inside: _OpenBlock | None = None  # the open block being read, until its end is found
        self.at_header = False  # reading waits at a COPY header for a free session
        self.statement: list[bytes] = []  # the lines of a statement read so far
        self.transaction: list[str] | None = None  # the statements since a BEGIN, until its COMMIT

    def _failed(self) -> bool:
        return any(each.error for each in self.loaders)

    def run(self) -> None:
        while not self._failed():
            self.progress.clear()  # before looking, so that no wake-up is missed
            if self._read_on() | self._hand_out() or self.script.refresh(CHUNK_BYTES):
                continue
            if self.script.complete:
                if self.inside is not None:
                    raise RestoreError(
                        f"the data script ends inside the COPY block of {self.inside.first.table}"
                    )
                if not self.open:
                    break
            self.script.wait(self.progress)
        self.stats.bytes = self.script.size
        rest = self.script.slice(self.at, self.script.size)
        if not self._failed() and self.transaction is not None:
            raise RestoreError("the data script ends inside a transaction (BEGIN without its COMMIT)")
        if not self._failed() and (rest.strip() or self.statement):
            text = (b"".join(self.statement) + rest)[:200].decode(errors="replace")
            raise RestoreError(f"the data script ends inside a statement: {text!r}")

    # reading

    def _read_on(self) -> bool:
        """Read as far as the script is written and the sessions allow; whether anything was read."""
        moved = False
        self.at_header = False
        while not self._failed():
            block = self.inside
            if block is not None:
                block.end, block.scan = self._find_end(block.scan)
                if block.end < 0:
                    break
                self.at, self.inside = block.end + len(_COPY_END), None
                moved = True
                continue
            newline = self.script.find(b"\n", self.at)
            if newline < 0:
                break
            line = self.script.slice(self.at, newline)
            header = _COPY_START.match(line) if not self.statement else None
            if header:
                loader = self._free_loader()
                if loader is None:
                    self.at_header = True  # the table waits for a session to end its own
                    break
                self.at = newline + 1
                self.inside = self._open_block(loader, line.decode(), header.group(1).decode())
            elif self.open and not self._inert(line):
                break  # a statement runs after the rows before it are handed out
            else:
                self.at = newline + 1
                self._statement_line(line)
            moved = True
        return moved

    def _inert(self, line: bytes) -> bool:
        """A line outside any statement that means nothing to a session: blank, comment, ``\\restrict``."""
        return not self.statement and (not line.strip() or line.startswith((b"--", *_IGNORED_META)))

    def _statement_line(self, line: bytes) -> None:
        if self._inert(line):
            return
        if not self.statement and line.startswith(b"\\"):
            raise RestoreError(f"unexpected psql meta-command in the data script: {line[:80]!r}")
        self.statement.append(line + b"\n")
        if not line.rstrip().endswith(b";"):
            return
        sql = b"".join(self.statement).decode()
        self.statement.clear()
        self.stats.statements += 1
        # A BEGIN ... COMMIT block (the large objects' lo_open, lowrite, lo_close) runs as one
        # transaction: a large object's descriptor lives only as long as its transaction.
        if self.transaction is not None:
            if sql.strip() == "COMMIT;":
                self.loaders[0].give(("transaction", self.transaction))
                self.transaction = None
            else:
                self.transaction.append(sql)
            return
        if sql.strip() == "BEGIN;":
            self.transaction = []
            return
        for loader in self.loaders if _SESSION_SETTING.match(sql) else self.loaders[:1]:
            loader.give(("sql", sql))

    def _open_block(self, loader: _Loader, header: str, target: str) -> _OpenBlock:
        """Give a COPY block to ``loader``, in the transaction that empties the table."""
        table_match = _COPY_TABLE.match(target)
        table = table_match.group(1) if table_match else target.split(" (", 1)[0]
        block = _OpenBlock(
            _Block(header, table, truncate=table_match is not None, tally=_Tally(table, self.on_loaded)),
            sessions=self.stats.sessions.setdefault(table, []),
            first_row=self.at,
            owner=loader,
            next=self.at,
            scan=self.at,
        )
        block.first.tally.piece()
        loader.give(("begin", block.first))
        block.sessions.append(loader.index)
        self.open.append(block)
        return block

    # handing out

    def _hand_out(self) -> bool:
        """Hand each open block's written rows to its owner, or once it is shared, to whoever has room.

        A shared block's pieces are each their own COPY; those rows are WAL-logged (the table is
        no longer new to their transactions).
        """
        moved = False
        for block in list(self.open):
            ready = (
                block.end if block.end >= 0 else self.script.rfind(b"\n", block.next, self.script.size) + 1
            )
            while ready > block.next and not self._failed():
                if block.owner is not None and self._worth_sharing(block, ready):
                    block.owner.give(("end", None))
                    block.owner = None
                loader = self._with_room(block.owner)
                if loader is None:
                    break
                cut = self._row_cut(block.next, ready)
                if block.owner is None:
                    block.first.tally.piece()
                    loader.give(("begin", replace(block.first, truncate=False)))
                    if loader.index not in block.sessions:
                        block.sessions.append(loader.index)
                loader.give(("rows", (block.next, cut - block.next)))
                if block.owner is None:
                    loader.give(("end", None))
                block.next, moved = cut, True
            if block.end >= 0 and block.next >= block.end:  # every row is handed out
                if block.owner is not None:
                    block.owner.give(("end", None))
                block.first.tally.close()
                self.open.remove(block)
                moved = True
        return moved

    def _worth_sharing(self, block: _OpenBlock, ready: int) -> bool:
        """Share a block out once a session is about to fall idle with no other table to take, the
        block is big and more than a few pieces of it are still to come.

        While the block is still being written, the table after it may come soon and load
        without WAL, so it is shared only if the writer is far ahead.
        """
        if self.at_header or block.next - block.first_row < self.sharing.share_after_bytes:
            return False
        if block.end >= 0 and ready - block.next <= 2 * self.sharing.piece_bytes:
            return False
        if block.end < 0 and ready - block.next < self.sharing.share_while_written_bytes:
            return False
        # a free session with no more left to load than the owner: it runs dry about when the
        # owner can commit what it was handed, so it need not wait long for the table's lock
        owned = block.owner.to_load() if block.owner is not None else 0
        return any(self._free(each) and each.to_load() <= owned for each in self.loaders)

    def _free(self, loader: _Loader) -> bool:
        """Whether ``loader`` owns no open block (a COPY of its own is not in the middle)."""
        return all(block.owner is not loader for block in self.open)

    def _free_loader(self) -> _Loader | None:
        free = [each for each in self.loaders if self._free(each)]
        return min(free, key=lambda each: (each.to_load(), each.index)) if free else None

    def _with_room(self, owner: _Loader | None) -> _Loader | None:
        """The owner, or for a shared block the least busy free session, if it may be handed another piece."""
        loader = owner if owner is not None else self._free_loader()
        return loader if loader is not None and loader.to_load() < self.sharing.backlog_bytes else None

    def _row_cut(self, start: int, ready: int) -> int:
        """Where the next piece from ``start`` ends: the last row end within a piece's size, or the first after."""
        limit = start + self.sharing.piece_bytes
        if limit >= ready:
            return ready
        newline = self.script.rfind(b"\n", start, limit)
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
