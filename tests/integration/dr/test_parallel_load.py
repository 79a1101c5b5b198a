"""The parallel data loader against a real scratch server (``wal_level=minimal``, as the DR test's)."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import zstandard

from stellar_ops.catalogue.source import ResolvedBackup
from stellar_ops.core.errors import RestoreError
from stellar_ops.dr.engine import parallel_load, restore
from stellar_ops.postgres.binaries import find_binaries
from stellar_ops.postgres.target import PgTarget, connect

pytestmark = pytest.mark.integration

SCHEMA = """
CREATE TABLE public.small (id int PRIMARY KEY, day date NOT NULL);
CREATE TABLE public.big (id int PRIMARY KEY, n int NOT NULL, note text, day date);
CREATE TABLE public.empty (id int);
CREATE TABLE public."Odd Name" (id int, day date);
CREATE TABLE public.second (id int PRIMARY KEY, n int NOT NULL, note text, day date);
CREATE SEQUENCE public.big_id_seq;
"""


@pytest.fixture
def db(scratch: PgTarget, request: pytest.FixtureRequest) -> Iterator[PgTarget]:
    name = "load_" + request.node.name.lower().replace("[", "_").replace("]", "")[:40]
    with connect(scratch.with_dbname("postgres")) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    target = scratch.with_dbname(name)
    with connect(target) as conn:
        conn.execute(SCHEMA)
    yield target
    with connect(scratch.with_dbname("postgres")) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def big_rows(count: int, bad_at: int | None = None) -> bytes:
    lines = []
    for i in range(1, count + 1):
        n = "x7" if i == bad_at else str(i * 3)
        lines.append(f"{i}\t{n}\tnote with a tab\\there and a newline\\nthere {i}\t03/04/2026\n")
    return "".join(lines).encode()


def script(big: bytes, *, end: bool = True) -> bytes:
    """What ``pg_restore --section=data -f -`` writes, in its shape."""
    head = (
        b"--\n-- PostgreSQL database dump\n--\n\n\\restrict abc123\n\n"
        b"SET statement_timeout = 0;\nSET client_encoding = 'UTF8';\n"
        b"SET datestyle = 'ISO, DMY';\n"
        b"SELECT pg_catalog.set_config('search_path', '', false);\n\n"
        b"--\n-- Data for Name: small; Type: TABLE DATA; Schema: public; Owner: -\n--\n\n"
        b"COPY public.small (id, day) FROM stdin;\n1\t03/04/2026\n2\t05/06/2026\n\\.\n\n\n"
        b"COPY public.big (id, n, note, day) FROM stdin;\n"
    )
    tail = (
        b"\\.\n\n\n"
        b'COPY public."Odd Name" (id, day) FROM stdin;\n7\t03/04/2026\n\\.\n\n\n'
        b"COPY public.empty (id) FROM stdin;\n\\.\n\n\n"
        b"SELECT pg_catalog.setval('public.big_id_seq', 4242,\n true);\n\n"
        b"\\unrestrict abc123\n\n--\n-- PostgreSQL database dump complete\n--\n\n"
    )
    return head + big + (tail if end else b"")


def load(tmp_path: Path, text: bytes, db: PgTarget, **options):
    path = tmp_path / "data.sql"
    path.write_bytes(text)
    script = parallel_load.ScriptFile(path, writing=lambda: False)
    try:
        return parallel_load.load(script, db, connections=2, **options)
    finally:
        script.close()


def test_every_table_loads_exactly_over_two_sessions_with_the_scripts_settings(db, tmp_path):
    big = big_rows(200_000)
    stats = load(tmp_path, script(big), db)
    with connect(db) as conn:
        assert conn.execute("SELECT count(*), sum(n) FROM big").fetchone() == (
            200_000,
            3 * 200_000 * 200_001 // 2,
        )
        assert conn.execute("SELECT count(*) FROM big WHERE day = '2026-04-03'").fetchone()[0] == 200_000
        note = conn.execute("SELECT note FROM big WHERE id = 9").fetchone()[0]
        assert note == "note with a tab\there and a newline\nthere 9"
        # DMY reached every session (the dated tables were loaded by both: see below)
        assert [str(d) for (d,) in conn.execute("SELECT day FROM small ORDER BY id")] == [
            "2026-04-03",
            "2026-06-05",
        ]
        assert str(conn.execute('SELECT day FROM "Odd Name"').fetchone()[0]) == "2026-04-03"
        assert conn.execute("SELECT count(*) FROM empty").fetchone()[0] == 0
        assert conn.execute("SELECT last_value FROM big_id_seq").fetchone()[0] == 4242
    assert stats.rows == {"public.small": 2, "public.big": 200_000, 'public."Odd Name"': 1, "public.empty": 0}
    dated = ("public.small", "public.big", 'public."Odd Name"')
    assert {index for table in dated for index in stats.sessions[table]} == {0, 1}


def test_a_table_loaded_by_one_session_skips_the_wal_on_a_minimal_wal_server(db, tmp_path):
    big = big_rows(200_000)
    with connect(db) as conn:
        before = conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
    load(tmp_path, script(big), db)
    with connect(db) as conn:
        written = conn.execute("SELECT pg_current_wal_lsn() - %s::pg_lsn", (before,)).fetchone()[0]
        size = conn.execute("SELECT pg_relation_size('big')").fetchone()[0]
    assert size > 10 << 20
    assert written < size / 10, f"{written} bytes of WAL for a {size}-byte table"


def test_each_table_is_reported_loaded_once_all_its_rows_are_committed(db, tmp_path):
    heard = []

    def on_loaded(table):
        with connect(db) as conn:  # committed: visible to any other session
            count = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        heard.append((table, count))

    load(tmp_path, script(big_rows(50_000)), db, on_loaded=on_loaded)
    assert sorted(heard) == sorted(
        [("public.small", 2), ("public.big", 50_000), ('public."Odd Name"', 1), ("public.empty", 0)]
    )


def test_a_big_table_is_shared_out_once_the_other_session_falls_idle(db, tmp_path, monkeypatch):
    share(monkeypatch, piece_bytes=256 << 10, backlog_bytes=512 << 10, share_after_bytes=1 << 20)
    heard = []

    def on_loaded(table):
        with connect(db) as conn:
            heard.append((table, conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]))

    stats = load(tmp_path, script(big_rows(200_000)), db, on_loaded=on_loaded)
    assert sorted(stats.sessions["public.big"]) == [0, 1]
    assert stats.rows["public.big"] == 200_000
    with connect(db) as conn:
        assert conn.execute("SELECT count(*), count(DISTINCT id), sum(n) FROM big").fetchone() == (
            200_000,
            200_000,
            3 * 200_000 * 200_001 // 2,
        )
    assert ("public.big", 200_000) in heard  # reported once, after its last piece
    assert [table for table, _ in heard].count("public.big") == 1


def share(monkeypatch, **thresholds: int) -> None:
    """Load with these sharing thresholds (the defaults, sized for big restores, never share here)."""
    monkeypatch.setattr(parallel_load, "SHARING", parallel_load.Sharing(**thresholds))


def test_unsafe_sharing_thresholds_are_refused():
    with pytest.raises(
        ValueError, match=r"share_after_bytes \(3145728\) must exceed backlog_bytes \+ piece_bytes"
    ):
        parallel_load.Sharing(piece_bytes=1 << 20, backlog_bytes=2 << 20, share_after_bytes=3 << 20)
    with pytest.raises(ValueError, match="must be positive"):
        parallel_load.Sharing(piece_bytes=0)
    assert parallel_load.Sharing() == parallel_load.SHARING  # the defaults are safe


def load_while_written(path: Path, db: PgTarget, write: Callable[[], None]) -> parallel_load.LoadStats:
    """Load the script at ``path`` while ``write``, in a thread of its own, still adds to it."""
    writer = threading.Thread(target=write)
    writer.start()
    script_file = parallel_load.ScriptFile(path, writing=writer.is_alive)
    try:
        return parallel_load.load(script_file, db, connections=2)
    finally:
        script_file.close()
        writer.join()


def two_big_tables(first: bytes, second: bytes, between: bytes = b"") -> bytes:
    return (
        b"SET datestyle = 'ISO, DMY';\n\n"
        b"COPY public.big (id, n, note, day) FROM stdin;\n"
        + first
        + b"\\.\n\n\n"
        + between
        + b"COPY public.second (id, n, note, day) FROM stdin;\n"
        + second
        + b"\\.\n\n"
    )


def wal_since(db: PgTarget, before: str) -> int:
    with connect(db) as conn:
        return conn.execute("SELECT pg_current_wal_lsn() - %s::pg_lsn", (before,)).fetchone()[0]


def wal_now(db: PgTarget) -> str:
    with connect(db) as conn:
        return conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]


def test_the_table_after_a_big_one_loads_beside_it_each_skipping_the_wal(db, tmp_path, monkeypatch):
    """The big table's session is held at its start: the table after it loads all the same."""
    # no sharing: one session each
    share(monkeypatch, piece_bytes=128 << 10, backlog_bytes=256 << 10, share_after_bytes=1 << 30)
    second_loaded = threading.Event()
    loaded: dict = {}

    def on_loaded(table: str) -> None:
        if table == "public.second":
            second_loaded.set()

    def run() -> None:
        text = two_big_tables(big_rows(300_000), big_rows(30_000))
        loaded["stats"] = load(tmp_path, text, db, on_loaded=on_loaded)

    before = wal_now(db)
    with connect(db, autocommit=False) as holder:
        holder.execute("LOCK TABLE big IN ACCESS SHARE MODE")  # big's session waits at its TRUNCATE
        loading = threading.Thread(target=run)
        loading.start()
        beside = second_loaded.wait(30)
        holder.rollback()
    loading.join()
    assert beside, "the table after the big one waited for it"
    stats = loaded["stats"]
    written = wal_since(db, before)
    assert stats.rows == {"public.big": 300_000, "public.second": 30_000}
    assert len(stats.sessions["public.big"]) == len(stats.sessions["public.second"]) == 1
    assert stats.sessions["public.big"] != stats.sessions["public.second"]
    with connect(db) as conn:
        size = conn.execute("SELECT pg_relation_size('big') + pg_relation_size('second')").fetchone()[0]
        assert conn.execute("SELECT count(*), sum(n) FROM second").fetchone() == (
            30_000,
            3 * 30_000 * 30_001 // 2,
        )
    assert written < size / 10, f"{written} bytes of WAL for {size} bytes of tables"


def test_a_statement_between_tables_waits_for_the_rows_before_it(db, tmp_path):
    """A setting between two blocks reaches the second one only: it is not run in the middle of the first."""
    text = two_big_tables(big_rows(100_000), big_rows(50_000), between=b"SET datestyle = 'ISO, MDY';\n\n")
    load(tmp_path, text, db)
    with connect(db) as conn:
        assert conn.execute("SELECT DISTINCT day::text FROM big").fetchall() == [("2026-04-03",)]
        assert conn.execute("SELECT DISTINCT day::text FROM second").fetchall() == [("2026-03-04",)]


@pytest.mark.parametrize("far_ahead", [False, True])
def test_a_big_table_still_being_written_is_shared_only_if_the_writer_is_far_ahead(
    db, tmp_path, monkeypatch, far_ahead
):
    """The other session idles while the writer pauses inside the big table: with the writer far
    ahead it shares the table; otherwise it waits for what comes after (here, one small table)."""
    share(
        monkeypatch,
        piece_bytes=1 << 20,
        backlog_bytes=2 << 20,
        share_after_bytes=(3 << 20) + 1,
        share_while_written_bytes=(1 << 20) if far_ahead else 1 << 30,
    )
    text = script(big_rows(200_000))
    paused_at = text.index(b"\\.\n", text.index(b"COPY public.big")) - (256 << 10)
    path = tmp_path / "data.sql"
    path.write_bytes(text[:paused_at])
    resume = threading.Event()

    def write_the_rest() -> None:
        resume.wait(30)
        with open(path, "ab") as out:
            out.write(text[paused_at:])

    timer = threading.Timer(1.5, resume.set)  # long enough for the other session to fall idle
    timer.start()
    try:
        stats = load_while_written(path, db, write_the_rest)
    finally:
        timer.cancel()
        resume.set()
    assert stats.rows["public.big"] == 200_000
    assert len(stats.sessions["public.big"]) == (2 if far_ahead else 1)


def test_a_script_still_being_written_is_read_to_its_end(db, tmp_path):
    text = script(big_rows(100_000))
    path = tmp_path / "data.sql"
    path.write_bytes(b"")

    def write_slowly() -> None:
        with open(path, "ab") as out:
            for start in range(0, len(text), 512 << 10):
                out.write(text[start : start + (512 << 10)])
                out.flush()
                time.sleep(0.02)

    stats = load_while_written(path, db, write_slowly)
    assert stats.bytes == len(text)
    assert stats.rows["public.big"] == 100_000


def test_a_bad_row_names_the_table_line_and_column_and_stops_the_producer(db, tmp_path):
    stopped = []
    with pytest.raises(RestoreError) as error:
        load(tmp_path, script(big_rows(60_000, bad_at=45_001)), db, stop=lambda: stopped.append(1))
    message = str(error.value)
    assert 'invalid input syntax for type integer: "x7"' in message
    assert "COPY big, line 45001, column n" in message
    assert stopped


def test_a_failing_statement_is_quoted(db, tmp_path):
    broken = script(big_rows(10)).replace(b"public.big_id_seq", b"public.no_such_seq")
    with pytest.raises(RestoreError, match="no_such_seq"):
        load(tmp_path, broken, db)


def test_a_script_cut_inside_a_copy_block_fails(db, tmp_path):
    with pytest.raises(RestoreError, match="ends inside the COPY block of public.big"):
        load(tmp_path, script(big_rows(1000), end=False), db)


def test_an_unknown_meta_command_fails(db, tmp_path):
    odd = script(big_rows(10)).replace(b"\\restrict abc123", b"\\connect other")
    with pytest.raises(RestoreError, match=r"unexpected psql meta-command.*connect other"):
        load(tmp_path, odd, db)


def test_a_bad_row_in_a_custom_archive_fails_the_streaming_restore_naming_it(scratch, tmp_path, db):
    """The whole path: archive -> pg_restore --section=data -f - -> loaders, on a real pg_dump."""
    with connect(db) as conn:
        conn.execute("INSERT INTO big SELECT g, g * 3, 'n', '2026-01-01' FROM generate_series(1, 5000) g")
    archive = subprocess.run(
        ["pg_dump", "-Fc", "-Z0", "-d", db.dbname], capture_output=True, env=db.client_env(), check=True
    ).stdout
    garbled = archive.replace(b"4000\t12000\tn\t", b"4000\t12x00\tn\t", 1)
    assert garbled != archive
    path = tmp_path / "stellar_escrow_20260101_020000.dump.zst"
    path.write_bytes(zstandard.ZstdCompressor().compress(garbled))
    backup = ResolvedBackup("local", str(path), "custom", "2026-01-01T02:00:00+00:00", "unverified")
    tmp_path.chmod(0o755)
    with pytest.raises(RestoreError) as error:
        restore.restore_streaming(scratch, None, backup, None, tmp_path, jobs=2, binaries=find_binaries())
    message = str(error.value)
    assert 'invalid input syntax for type integer: "12x00"' in message
    assert "COPY big, line 4000, column n" in message
