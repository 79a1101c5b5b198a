"""The canary writer against real servers: a row every interval, each with its exact commit time,
through a server restart; the stack's own writer; the newest point surely archived."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from stellar_ops.core.processes import unprivileged_user
from stellar_ops.pitr import canary
from stellar_ops.postgres.server import LocalPgServer
from stellar_ops.postgres.target import connect
from tests.support.fixtures import reachable_dir

pytestmark = pytest.mark.integration

CLI = str(Path(sys.executable).parent / "stellar-ops")


@pytest.fixture(scope="module")
def server() -> Iterator[LocalPgServer]:
    """A server of its own (restarted by a test), with commit timestamps tracked."""
    with reachable_dir() as base:
        pg = LocalPgServer(
            base / "pg", run_as=unprivileged_user("postgres"), settings={"track_commit_timestamp": "on"}
        )
        pg.init()
        pg.start()
        try:
            yield pg
        finally:
            pg.remove()


def _count(target) -> int:
    with connect(target) as conn:
        exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (canary.TABLE,)).fetchone()[0]
        return int(conn.execute(f"SELECT count(*) FROM {canary.TABLE}").fetchone()[0]) if exists else 0


def _wait(condition, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:g}s for {what}")
        time.sleep(0.1)


def _drop(target) -> None:
    with connect(target) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {canary.TABLE}")


def test_the_writer_commits_a_row_every_interval_until_stopped(server):
    target = server.target()
    _drop(target)
    stop = threading.Event()
    said: list[str] = []
    written: list[int] = []
    writer = threading.Thread(
        target=lambda: written.append(canary.run_writer(target, interval=0.3, stop=stop, say=said.append))
    )
    writer.start()
    try:
        _wait(lambda: _count(target) >= 6, "six canaries")
    finally:
        stop.set()
        writer.join(timeout=10)
    assert not writer.is_alive(), "the writer did not stop on its event"
    rows = canary.source_rows(target)
    assert [r.id for r in rows] == list(range(1, len(rows) + 1)) and written == [len(rows)]
    gaps = [(b.committed_at - a.committed_at).total_seconds() for a, b in zip(rows, rows[1:], strict=False)]
    assert all(0.2 < gap < 1.0 for gap in gaps), gaps
    assert said == []  # track_commit_timestamp is on: nothing to say
    time.sleep(0.8)
    assert _count(target) == len(rows), "a canary was written after the stop"
    assert canary.recovered_ids(target) == {r.id for r in rows}


def test_the_writer_outlives_a_restart_of_its_server(server):
    target = server.target()
    _drop(target)
    stop = threading.Event()
    warned: list[str] = []
    said: list[str] = []
    writer = threading.Thread(
        target=canary.run_writer,
        args=(target,),
        kwargs={"interval": 0.3, "stop": stop, "warn": warned.append, "say": said.append},
    )
    writer.start()
    try:
        _wait(lambda: _count(target) >= 2, "the first canaries")
        server.stop()
        time.sleep(1.5)
        server.start()
        before = _count(target)
        _wait(lambda: _count(target) >= before + 3, "canaries after the restart")
    finally:
        stop.set()
        writer.join(timeout=15)
    assert not writer.is_alive()
    assert len(warned) == 1, warned  # said once, not once a beat
    assert f"canary not written to {target.describe()}" in warned[0]
    assert server.password not in warned[0]
    assert any(line.startswith("canaries written again (id ") for line in said), said


def test_without_commit_timestamps_the_source_cannot_be_read(server):
    with reachable_dir() as base:
        plain = LocalPgServer(base / "pg", run_as=unprivileged_user("postgres"))
        plain.init()
        plain.start()
        try:
            said: list[str] = []
            assert canary.run_writer(plain.target(), interval=0.1, max_rows=2, say=said.append) == 2
            assert said and "track_commit_timestamp is off" in said[0]
            with pytest.raises(Exception, match="track_commit_timestamp is off on"):
                canary.source_rows(plain.target())
        finally:
            plain.remove()


def test_a_server_without_the_table_has_no_canaries(server):
    _drop(server.target())
    assert canary.recovered_ids(server.target()) == set()
    with pytest.raises(Exception, match=f"has no table {canary.TABLE}: no canary writer has run there"):
        canary.source_rows(server.target())


# -- the stack ----------------------------------------------------------------------------------


def test_the_stack_writes_a_canary_every_few_seconds(stack):
    with connect(stack.db) as conn:
        assert conn.execute("SHOW track_commit_timestamp").fetchone()[0] == "on"
    first = canary.source_rows(stack.db)
    _wait(lambda: len(canary.source_rows(stack.db)) >= len(first) + 3, "three more canaries", timeout=30)
    rows = canary.source_rows(stack.db)[-4:]
    gaps = [(b.committed_at - a.committed_at).total_seconds() for a, b in zip(rows, rows[1:], strict=False)]
    assert all(2.0 < gap < 6.0 for gap in gaps), gaps
    assert "canary" in stack.pids


def test_the_newest_safe_point_is_archived_with_a_commit_after_it(stack):
    with connect(stack.db.with_dbname("postgres")) as conn:
        assert conn.execute("SELECT has_function_privilege('pg_switch_wal()', 'EXECUTE')").fetchone()[0]
    with connect(stack.db) as conn:  # not in the application's database: its dumps stay restorable
        assert not conn.execute("SELECT has_function_privilege('pg_switch_wal()', 'EXECUTE')").fetchone()[0]
    said: list[str] = []
    safe = canary.safe_newest_point(stack.db, wait_seconds=120, say=said.append)

    assert safe.switched
    with connect(stack.superuser) as conn:
        last = str(conn.execute("SELECT last_archived_wal FROM pg_stat_archiver").fetchone()[0])
        committed = conn.execute(
            f"SELECT pg_xact_commit_timestamp(xmin) FROM {canary.TABLE} WHERE id = %s", (safe.canary_id,)
        ).fetchone()[0]
    assert last[:24] >= safe.segment
    assert safe.moment == committed - timedelta(microseconds=1)
    assert said == [
        f"WAL up to canary {safe.canary_id} (committed {canary._iso(committed)}) is archived in {safe.segment}"
    ]


def test_the_canary_command_writes_until_it_is_told_to_stop(server):
    target = server.target()
    _drop(target)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["DATABASE_URL"] = f"postgresql://postgres:{server.password}@127.0.0.1:{server.port}/postgres"
    process = subprocess.Popen(
        [CLI, "pitr", "canary", "--interval", "0.3"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait(lambda: _count(target) >= 3, "canaries from the command")
        assert server.password not in " ".join(process.args)
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=20)
    assert process.returncode == 0, err
    assert server.password not in out + err
    assert "canary writer stopped after" in err
