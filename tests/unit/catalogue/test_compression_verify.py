"""stellar_ops.compression and verify.scan/judge: streams, truncation, corruption, dump trailers."""

from __future__ import annotations

import gzip
import hashlib
import io
import random
from collections.abc import Iterator

import pytest
import zstandard

from stellar_ops.catalogue.keys import DumpFormat
from stellar_ops.catalogue.verify import PLAIN_TRAILER, ScanResult, judge, scan, verification_record
from stellar_ops.core.errors import VerificationError
from stellar_ops.storage.compression import compression_name, compressor, decompress

SOURCE = "s3://stellar-backups/backups/stellar_escrow_20250301T020000Z.dump.zst"
TRAILER = b"\n--\n-- PostgreSQL database dump complete\n--\n\n"


def _payload(seed: int = 7, size: int = 300_000) -> bytes:
    """Random bytes (incompressible) mixed with repetitive SQL (very compressible)."""
    rng = random.Random(seed)
    parts = []
    for index in range(30):
        parts.append(rng.randbytes(size // 60))
        parts.append(f"INSERT INTO trades VALUES ({index}, 'GABC', 12.5);\n".encode() * (size // 60 // 45))
    return b"".join(parts)


def _sql_dump(body_size: int = 50_000) -> bytes:
    header = b"--\n-- PostgreSQL database dump\n--\n\nSET statement_timeout = 0;\n"
    rows = b"".join(f"{i}\tGABC{i:06d}\t{i * 1.5}\n".encode() for i in range(body_size // 20))
    return header + b"COPY public.trades (id, account, amount) FROM stdin;\n" + rows + b"\\.\n" + TRAILER


def _compress(data: bytes, dump_format: DumpFormat, *, level: int = 3, piece: int = 65_536) -> bytes:
    comp = compressor(dump_format, level)
    out: list[bytes] = []
    for i in range(0, len(data), piece):
        comp.push(data[i : i + piece], out.append)
    comp.finish(out.append)
    return b"".join(out)


def _chunks(data: bytes, size: int = 8192) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def _flip(data: bytes, position: int) -> bytes:
    return data[:position] + bytes([data[position] ^ 0xFF]) + data[position + 1 :]


# -- compression ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dump_format", ["custom", "plain"])
@pytest.mark.parametrize("chunk_size", [1, 4096, 1 << 20])
def test_round_trip(dump_format: DumpFormat, chunk_size: int) -> None:
    data = _payload()
    compressed = _compress(data, dump_format)

    restored = b"".join(decompress(_chunks(compressed, chunk_size), dump_format, source=SOURCE))

    assert restored == data
    assert len(compressed) < len(data)  # the repetitive half did compress


def test_round_trip_of_empty_input() -> None:
    for dump_format in ("custom", "plain"):
        compressed = _compress(b"", dump_format)  # type: ignore[arg-type]
        assert compressed  # a valid, empty frame / member
        assert b"".join(decompress([compressed], dump_format, source=SOURCE)) == b""  # type: ignore[arg-type]


def test_zstd_output_is_a_standard_frame_with_checksum() -> None:
    data = _payload(size=60_000)
    compressed = _compress(data, "custom", level=1)

    params = zstandard.get_frame_parameters(compressed)

    assert params.has_checksum
    assert zstandard.ZstdDecompressor().decompress(compressed, max_output_size=len(data)) == data


def test_zstd_with_threads_round_trips() -> None:
    data = _payload(size=120_000)
    comp = compressor("custom", 3, threads=2)
    out: list[bytes] = []
    comp.push(data, out.append)
    comp.finish(out.append)
    compressed = b"".join(out)
    assert b"".join(decompress([compressed], "custom", source=SOURCE)) == data


def test_gzip_output_is_readable_by_the_gzip_module() -> None:
    data = _sql_dump()
    assert gzip.decompress(_compress(data, "plain", level=9)) == data


def test_gzip_level_changes_the_output() -> None:
    data = _payload(size=60_000)
    assert len(_compress(data, "plain", level=1)) > len(_compress(data, "plain", level=9))


def test_compression_name() -> None:
    assert compression_name("custom") == "zstd"
    assert compression_name("plain") == "gzip"


@pytest.mark.parametrize("dump_format", ["custom", "plain"])
@pytest.mark.parametrize("keep", [0.5, 0.99])
def test_truncated_stream_is_reported(dump_format: DumpFormat, keep: float) -> None:
    compressed = _compress(_payload(), dump_format)
    truncated = compressed[: int(len(compressed) * keep)]

    with pytest.raises(VerificationError, match="truncated") as info:
        b"".join(decompress(_chunks(truncated), dump_format, source=SOURCE))

    assert str(info.value).startswith(f"{SOURCE} is truncated")
    assert compression_name(dump_format) in str(info.value)


@pytest.mark.parametrize(("dump_format", "name"), [("custom", "zstd"), ("plain", "gzip")])
def test_garbage_is_not_a_valid_stream(dump_format: DumpFormat, name: str) -> None:
    with pytest.raises(VerificationError, match=f"is not a valid {name} stream"):
        b"".join(decompress([b"this is not compressed at all" * 10], dump_format, source=SOURCE))


def test_concatenated_gzip_members_decompress_fully() -> None:
    first, second, third = b"first member\n" * 1000, _payload(size=30_000), b"third\n"
    joined = gzip.compress(first) + _compress(second, "plain") + gzip.compress(third)

    for chunk_size in (5, 333, len(joined)):
        restored = b"".join(decompress(_chunks(joined, chunk_size), "plain", source=SOURCE))
        assert restored == first + second + third, chunk_size


def test_concatenated_gzip_with_truncated_last_member_is_truncated() -> None:
    joined = gzip.compress(b"a" * 1000) + gzip.compress(_payload(size=30_000))
    with pytest.raises(VerificationError, match="truncated"):
        b"".join(decompress(_chunks(joined[:-20], 1000), "plain", source=SOURCE))


# -- verify.scan ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dump_format", ["custom", "plain"])
def test_scan_of_a_good_stream(dump_format: DumpFormat) -> None:
    data = _sql_dump() if dump_format == "plain" else _payload()
    compressed = _compress(data, dump_format)
    compressed_sink, decompressed_sink = io.BytesIO(), io.BytesIO()

    result = scan(
        _chunks(compressed),
        dump_format,
        source=SOURCE,
        binaries=None,
        compressed_sink=compressed_sink,
        decompressed_sink=decompressed_sink,
    )

    assert result.problems == []
    assert result.size == len(compressed)
    assert result.sha256 == hashlib.sha256(compressed).hexdigest()
    assert result.uncompressed_bytes == len(data)
    assert result.archive_entries is None  # no pg_restore asked for
    assert compressed_sink.getvalue() == compressed
    assert decompressed_sink.getvalue() == data
    judge(result, source=SOURCE, expected_size=len(compressed), expected_sha256=result.sha256)


@pytest.mark.parametrize("dump_format", ["custom", "plain"])
def test_scan_of_a_truncated_stream(dump_format: DumpFormat) -> None:
    data = _sql_dump() if dump_format == "plain" else _payload()
    compressed = _compress(data, dump_format)
    truncated = compressed[: len(compressed) * 2 // 3]

    result = scan(_chunks(truncated), dump_format, source=SOURCE, check_archive=False)

    assert len(result.problems) == 1
    assert "truncated" in result.problems[0]
    assert result.size == len(truncated)
    assert result.sha256 == hashlib.sha256(truncated).hexdigest()
    # The truncation, not a missing trailer, is the one reported problem.
    assert "trailer" not in result.problems[0]
    with pytest.raises(VerificationError, match="truncated"):
        judge(result, source=SOURCE, expected_size=None, expected_sha256=None)


@pytest.mark.parametrize("dump_format", ["custom", "plain"])
def test_flipped_byte_is_a_checksum_mismatch(dump_format: DumpFormat) -> None:
    data = _sql_dump() if dump_format == "plain" else _payload()
    original = _compress(data, dump_format)
    expected = hashlib.sha256(original).hexdigest()
    corrupt = _flip(original, len(original) // 2)

    result = scan(_chunks(corrupt), dump_format, source=SOURCE, check_archive=False)

    assert result.size == len(original)  # every byte was still hashed after the frame broke
    assert result.sha256 == hashlib.sha256(corrupt).hexdigest()
    assert result.sha256 != expected
    with pytest.raises(VerificationError, match="checksum mismatch") as info:
        judge(result, source=SOURCE, expected_size=len(original), expected_sha256=expected)
    message = str(info.value)
    assert message == (
        f"checksum mismatch for {SOURCE}: manifest says sha256 {expected}, object has {result.sha256}"
    )


@pytest.mark.parametrize("dump_format", ["custom", "plain"])
def test_early_corruption_still_hashes_the_whole_object(dump_format: DumpFormat) -> None:
    # A broken header fails on the first chunk; the rest must still be hashed, so the checksum
    # tells whether the object itself changed.
    corrupt = _flip(_compress(_payload(), dump_format), 0)

    result = scan(_chunks(corrupt, 1000), dump_format, source=SOURCE, check_archive=False)

    assert len(result.problems) == 1
    assert f"is not a valid {compression_name(dump_format)} stream" in result.problems[0]
    assert result.size == len(corrupt)
    assert result.sha256 == hashlib.sha256(corrupt).hexdigest()
    assert result.uncompressed_bytes == 0


def test_flipped_byte_alone_breaks_the_zstd_frame() -> None:
    original = _compress(_payload(), "custom")
    result = scan(_chunks(_flip(original, len(original) // 2)), "custom", source=SOURCE, check_archive=False)
    assert result.problems
    assert f"{SOURCE} is not a valid zstd stream" in result.problems[0]


def test_size_mismatch_is_reported_first() -> None:
    compressed = _compress(_payload(size=30_000), "custom")
    result = scan(_chunks(compressed + b"extra"), "custom", source=SOURCE, check_archive=False)

    with pytest.raises(VerificationError) as info:
        judge(result, source=SOURCE, expected_size=len(compressed), expected_sha256="0" * 64)

    assert str(info.value) == (
        f"size mismatch for {SOURCE}: manifest says {len(compressed)} bytes, object has {len(compressed) + 5}"
    )


def test_judge_passes_with_no_expectations_and_no_problems() -> None:
    judge(ScanResult(size=3, sha256="abc"), source=SOURCE, expected_size=None, expected_sha256=None)


def test_judge_joins_every_problem() -> None:
    result = ScanResult(size=3, sha256="abc", problems=["first problem", "second problem"])
    with pytest.raises(VerificationError, match="^first problem; second problem$"):
        judge(result, source=SOURCE, expected_size=3, expected_sha256="abc")


def test_plain_dump_without_trailer_is_incomplete() -> None:
    dump = _sql_dump()
    cut = dump[: dump.index(b"-- PostgreSQL database dump complete")]
    compressed = _compress(cut, "plain")

    result = scan(_chunks(compressed), "plain", source=SOURCE, check_archive=False)

    assert result.problems == [f"{SOURCE} is an incomplete SQL dump: pg_dump's completion trailer is missing"]
    assert result.uncompressed_bytes == len(cut)
    with pytest.raises(VerificationError, match="incomplete SQL dump"):
        judge(result, source=SOURCE, expected_size=len(compressed), expected_sha256=result.sha256)


def test_plain_dump_with_trailer_passes() -> None:
    dump = _sql_dump()
    assert PLAIN_TRAILER in dump

    result = scan(_chunks(_compress(dump, "plain")), "plain", source=SOURCE, binaries=None)

    assert result.problems == []


def test_plain_trailer_split_across_chunks_is_found() -> None:
    dump = _sql_dump(body_size=200)
    # Tiny compressed chunks make the decompressor emit the trailer in several pieces.
    compressed = _compress(dump, "plain", level=1)
    result = scan(_chunks(compressed, 3), "plain", source=SOURCE, check_archive=False)
    assert result.problems == []


def test_plain_trailer_must_be_at_the_end() -> None:
    # A trailer followed by a lot more SQL is not the end of a complete dump.
    dump = _sql_dump() + b"SELECT 1;\n" * 1000
    result = scan(_chunks(_compress(dump, "plain")), "plain", source=SOURCE, check_archive=False)
    assert any("incomplete SQL dump" in problem for problem in result.problems)


def test_custom_format_needs_no_trailer() -> None:
    result = scan(
        _chunks(_compress(b"PGDMP-not-really", "custom")), "custom", source=SOURCE, check_archive=True
    )
    assert result.problems == []  # no binaries: the archive itself is not checked


def test_concatenated_gzip_members_scan_fully() -> None:
    dump = _sql_dump()
    half = len(dump) // 2
    joined = gzip.compress(dump[:half]) + gzip.compress(dump[half:])
    sink = io.BytesIO()

    result = scan(_chunks(joined, 1000), "plain", source=SOURCE, check_archive=False, decompressed_sink=sink)

    assert result.problems == []
    assert result.uncompressed_bytes == len(dump)
    assert sink.getvalue() == dump


@pytest.mark.parametrize(
    ("dump_format", "checks"),
    [
        ("custom", ["size", "sha256", "zstd frame", "pg_restore --list", "pg_restore full read"]),
        ("plain", ["size", "sha256", "gzip stream", "dump trailer"]),
    ],
)
def test_verification_record(dump_format: DumpFormat, checks: list[str]) -> None:
    record = verification_record(ScanResult(uncompressed_bytes=99, archive_entries=7), dump_format)

    assert record["checks"] == checks
    assert record["uncompressed_bytes"] == 99
    assert record["archive_entries"] == 7
    assert record["verified_at"].endswith("+00:00")
