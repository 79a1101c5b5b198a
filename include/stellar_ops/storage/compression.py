"""Streaming compressors and decompressors for the two backup formats.

custom dumps go through zstd (``.dump.zst``, with a frame checksum); plain SQL goes through gzip
(``.sql.gz``), the old scripts' format. Both are incremental: nothing is held beyond one chunk.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Literal, Protocol, cast

from stellar_ops.core.errors import VerificationError

# custom: pg_dump's custom format through zstd; plain: plain SQL through gzip, as the old scripts
DumpFormat = Literal["custom", "plain"]
Emit = Callable[[bytes], None]


class Compressor(Protocol):
    def push(self, data: bytes | memoryview, emit: Emit) -> None: ...
    def finish(self, emit: Emit) -> None: ...


class _Zstd:
    """zstd with a frame checksum; ``push`` hands output to ``emit`` in chunks of one size.

    Same-size chunks keep the allocator reusing the same memory, so a long dump does not grow
    the process: variable-size output slowly fragments the heap.
    """

    OUT_CHUNK = 256 * 1024

    def __init__(self, level: int, threads: int) -> None:
        import zstandard

        self._frame_end = zstandard.FLUSH_FRAME
        params = zstandard.ZstdCompressionParameters.from_level(
            level, threads=threads, write_checksum=True, write_content_size=False
        )
        context = zstandard.ZstdCompressor(compression_params=params)
        self._emit: Emit | None = None
        sink = cast(IO[bytes], self)  # only write() is called on it
        self._writer = context.stream_writer(sink, write_size=self.OUT_CHUNK, closefd=False)

    def write(self, data: bytes) -> int:  # the stream writer's sink
        assert self._emit is not None
        self._emit(bytes(data))
        return len(data)

    def push(self, data: bytes | memoryview, emit: Emit) -> None:
        self._emit = emit
        self._writer.write(data)

    def finish(self, emit: Emit) -> None:
        self._emit = emit
        self._writer.flush(self._frame_end)


class _Gzip:
    def __init__(self, level: int) -> None:
        self._obj = zlib.compressobj(level, zlib.DEFLATED, 31)

    def push(self, data: bytes | memoryview, emit: Emit) -> None:
        out = self._obj.compress(data)
        if out:
            emit(out)

    def finish(self, emit: Emit) -> None:
        emit(self._obj.flush())


def compressor(dump_format: DumpFormat, level: int, threads: int = 0) -> Compressor:
    if dump_format == "custom":
        return _Zstd(level, threads)
    return _Gzip(level)


def compression_name(dump_format: DumpFormat) -> str:
    return "zstd" if dump_format == "custom" else "gzip"


def decompress(chunks: Iterable[bytes], dump_format: DumpFormat, *, source: str) -> Iterator[bytes]:
    """Decompressed chunks; a corrupt or truncated stream raises :class:`VerificationError`."""
    if dump_format == "custom":
        yield from _unzstd(chunks, source)
    else:
        yield from _gunzip(chunks, source)


def _unzstd(chunks: Iterable[bytes], source: str) -> Iterator[bytes]:
    import zstandard

    obj = zstandard.ZstdDecompressor().decompressobj()
    try:
        for chunk in chunks:
            out = obj.decompress(chunk)
            if out:
                yield out
    except zstandard.ZstdError as exc:
        raise VerificationError(f"{source} is not a valid zstd stream: {exc}") from None
    if not obj.eof:
        raise VerificationError(f"{source} is truncated: the zstd frame does not end")


def _gunzip(chunks: Iterable[bytes], source: str) -> Iterator[bytes]:
    obj = zlib.decompressobj(31)
    try:
        for chunk in chunks:
            out = obj.decompress(chunk)
            if out:
                yield out
            while obj.unused_data:  # concatenated gzip members (gzip -c a b, pigz)
                rest = obj.unused_data
                obj = zlib.decompressobj(31)
                out = obj.decompress(rest)
                if out:
                    yield out
        tail = obj.flush()
        if tail:
            yield tail
    except zlib.error as exc:
        raise VerificationError(f"{source} is not a valid gzip stream: {exc}") from None
    if not obj.eof:
        raise VerificationError(f"{source} is truncated: the gzip stream does not end")
