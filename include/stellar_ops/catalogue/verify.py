"""Read a backup end to end and check it: size, sha256, compression frames and the archive itself.

One streaming pass over the object, or over the compressed stream while it is uploaded
(:class:`InFlightScan`): the same checks, without downloading what was just sent. For custom-format dumps the decompressed stream feeds
``pg_restore --list`` (the table of contents) and ``pg_restore --file=/dev/null`` (every data
block is read), so a backup that passes can be restored. For plain SQL the gzip stream is fully
decompressed and must end with pg_dump's completion trailer, which catches a ``pg_dump | gzip``
whose pg_dump died half-way.
"""

from __future__ import annotations

import contextlib
import hashlib
import queue
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

from stellar_ops.catalogue.keys import DumpFormat
from stellar_ops.core.errors import VerificationError
from stellar_ops.postgres.binaries import PgBinaries
from stellar_ops.storage.compression import decompress

PLAIN_TRAILER = b"-- PostgreSQL database dump complete"


@dataclass
class ScanResult:
    size: int = 0
    sha256: str = ""
    uncompressed_bytes: int = 0
    archive_entries: int | None = None
    problems: list[str] = field(default_factory=list)


class _ArchiveCheck:
    """Feeds a custom-format archive to pg_restore twice over, from one stream."""

    def __init__(self, binaries: PgBinaries) -> None:
        self._toc = tempfile.TemporaryFile()  # noqa: SIM115 - closed in finish()
        self._errors = tempfile.TemporaryFile()  # noqa: SIM115
        self._list_errors = tempfile.TemporaryFile()  # noqa: SIM115
        self.lister = subprocess.Popen(
            [binaries.path("pg_restore"), "--list"],
            stdin=subprocess.PIPE,
            stdout=self._toc,
            stderr=self._list_errors,
        )
        self.reader = subprocess.Popen(
            [binaries.path("pg_restore"), "--file=/dev/null"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=self._errors,
        )
        self._reader_open = True
        self._lister_open = True

    def feed(self, data: bytes) -> None:
        if self._lister_open:
            try:
                assert self.lister.stdin is not None
                self.lister.stdin.write(data)
            except BrokenPipeError:  # it has read the table of contents and left
                self._close_lister_input()
        if self._reader_open:
            try:
                assert self.reader.stdin is not None
                self.reader.stdin.write(data)
            except BrokenPipeError:
                self._reader_open = False

    def _close_lister_input(self) -> None:
        self._lister_open = False
        if self.lister is not None and self.lister.stdin is not None and not self.lister.stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                self.lister.stdin.close()

    def finish(self) -> tuple[int | None, list[str]]:
        problems: list[str] = []
        self._close_lister_input()
        try:
            assert self.reader.stdin is not None
            self.reader.stdin.close()
        except BrokenPipeError:
            pass
        entries = None
        if self.lister.wait(timeout=600) == 0:
            self._toc.seek(0)
            entries = sum(1 for line in self._toc if line.strip() and not line.startswith(b";"))
        else:
            problems.append(f"pg_restore --list cannot read the archive: {_read(self._list_errors)}")
        if self.reader.wait(timeout=3600) != 0:
            problems.append(f"pg_restore cannot read the archive's data: {_read(self._errors)}")
        for handle in (self._toc, self._errors, self._list_errors):
            handle.close()
        return entries, problems

    def kill(self) -> None:
        for process in (self.lister, self.reader):
            if process.poll() is None:
                process.kill()
                process.wait()


def _read(handle: IO[bytes]) -> str:
    handle.seek(0)
    lines = handle.read().decode(errors="replace").strip().splitlines()
    return " | ".join(lines[-3:]) or "no error output"


def scan(
    chunks: Iterable[bytes],
    dump_format: DumpFormat,
    *,
    source: str,
    binaries: PgBinaries | None = None,
    check_archive: bool = True,
    compressed_sink: IO[bytes] | None = None,
    decompressed_sink: IO[bytes] | None = None,
) -> ScanResult:
    """Hash and decompress ``chunks``, optionally copying either side to a file.

    Problems are collected, not raised, so the caller can report the root cause first: a
    checksum mismatch explains a broken frame, not the other way round.
    """
    result = ScanResult()
    digest = hashlib.sha256()
    archive = _ArchiveCheck(binaries) if check_archive and dump_format == "custom" and binaries else None
    tail = b""

    def hashed() -> Iterator[bytes]:
        for chunk in chunks:
            digest.update(chunk)
            result.size += len(chunk)
            if compressed_sink is not None:
                compressed_sink.write(chunk)
            yield chunk

    stream = hashed()
    try:
        for data in decompress(stream, dump_format, source=source):
            result.uncompressed_bytes += len(data)
            if archive is not None:
                archive.feed(data)
            if decompressed_sink is not None:
                decompressed_sink.write(data)
            if dump_format == "plain":
                tail = (tail + data)[-4096:]
    except VerificationError as exc:
        result.problems.append(str(exc))
        for _ in stream:  # keep hashing: the checksum tells whether the object itself changed
            pass
    except BaseException:
        if archive is not None:
            archive.kill()
        raise
    result.sha256 = digest.hexdigest()
    if archive is not None:
        if result.problems:
            archive.kill()
        else:
            result.archive_entries, problems = archive.finish()
            result.problems.extend(problems)
    if dump_format == "plain" and not result.problems and PLAIN_TRAILER not in tail:
        result.problems.append(f"{source} is an incomplete SQL dump: pg_dump's completion trailer is missing")
    return result


def judge(
    result: ScanResult,
    *,
    source: str,
    expected_size: int | None,
    expected_sha256: str | None,
) -> None:
    """Raise for the first thing wrong, the object's identity before its contents."""
    if expected_size is not None and result.size != expected_size:
        raise VerificationError(
            f"size mismatch for {source}: manifest says {expected_size} bytes, object has {result.size}"
        )
    if expected_sha256 is not None and result.sha256 != expected_sha256:
        raise VerificationError(
            f"checksum mismatch for {source}: manifest says sha256 {expected_sha256}, object has {result.sha256}"
        )
    if result.problems:
        raise VerificationError("; ".join(result.problems))


class InFlightScan:
    """:func:`scan` over a stream while it is being written: the compressed chunks an upload sends
    are handed to :meth:`feed`, and a thread decompresses them into ``pg_restore --list`` and
    ``pg_restore --file=/dev/null`` (or checks the SQL's trailer), as a read-back would.

    At most ``max_chunks`` chunks wait for the thread, so memory stays flat; a writer that outruns
    it waits.
    """

    def __init__(
        self, dump_format: DumpFormat, *, source: str, binaries: PgBinaries, max_chunks: int = 32
    ) -> None:
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=max_chunks)
        self._result: ScanResult | None = None
        self._error: BaseException | None = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(dump_format, source, binaries), name="in-flight-scan", daemon=True
        )
        self._thread.start()

    def _chunks(self) -> Iterator[bytes]:
        while (chunk := self._queue.get()) is not None:
            yield chunk

    def _run(self, dump_format: DumpFormat, source: str, binaries: PgBinaries) -> None:
        try:
            self._result = scan(self._chunks(), dump_format, source=source, binaries=binaries)
        except BaseException as exc:  # raised again by feed() or finish()
            self._error = exc
        finally:
            self._stopped.set()

    def _put(self, item: bytes | None) -> None:
        while not self._stopped.is_set():
            try:
                self._queue.put(item, timeout=0.5)
                return
            except queue.Full:
                continue
        if self._error is not None:
            raise VerificationError(f"the in-flight check stopped: {self._error}") from None

    def feed(self, chunk: bytes) -> None:
        self._put(chunk)

    def finish(self) -> ScanResult:
        """End the stream and wait for the checks' result."""
        self._put(None)
        self._thread.join()
        if self._error is not None:
            raise VerificationError(f"the in-flight check failed: {self._error}") from None
        assert self._result is not None
        return self._result

    def abort(self) -> None:
        """Stop the checks (the stream failed): the thread ends, pg_restore is killed."""
        with contextlib.suppress(queue.Empty):
            while True:
                self._queue.get_nowait()
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)
        self._thread.join(timeout=60)


def verification_record(
    result: ScanResult, dump_format: DumpFormat, *, method: str = "read-back"
) -> dict[str, Any]:
    checks = ["part Content-MD5", "part list"] if method == "in-flight" else []
    checks += ["size", "sha256", "zstd frame" if dump_format == "custom" else "gzip stream"]
    checks += ["pg_restore --list", "pg_restore full read"] if dump_format == "custom" else ["dump trailer"]
    return {
        "verified_at": datetime.now(UTC).isoformat(),
        "checks": checks,
        "method": method,
        "archive_entries": result.archive_entries,
        "uncompressed_bytes": result.uncompressed_bytes,
    }
