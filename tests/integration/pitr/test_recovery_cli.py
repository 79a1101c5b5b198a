"""``stellar-ops restore --target-time``, both ways out, for real: a database of the cluster recovered
to a moment copied into a server named by URL (the stack's, as its restore role), and the whole
recovered cluster left in a data directory, stopped cleanly, which then starts as a server holding
exactly the rows committed before the moment."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from stellar_ops.core.processes import ManagedProcess, free_port, unprivileged_user, wait_until
from stellar_ops.pitr.recovery import WalArchive, iso
from stellar_ops.postgres.binaries import find_binaries
from stellar_ops.postgres.target import PgTarget, connect
from tests.support.pitr_recovery import TABLE, TOOLS_DIR, History, make_copies, make_history

pytestmark = pytest.mark.integration

CLI = str(Path(sys.executable).parent / "stellar-ops")
ROOT = "t/pitr-recovery-cli"


@pytest.fixture(scope="module")
def history(stack) -> History:
    return make_history(stack, ROOT)


@pytest.fixture(scope="module")
def copies(stack, history) -> Iterator[dict[str, WalArchive]]:
    yield from make_copies(stack, history)


@pytest.fixture
def pitr_ops(ops, copies):
    ops.update(pitr={"prefix": f"{ROOT}/pitr", "server_name": "whole", "tools_dir": str(TOOLS_DIR)})
    return ops


def restore(*args: str, password: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if password is not None:
        env["PGPASSWORD"] = password
    return subprocess.run(
        [CLI, "restore", *args, "--yes", "--json"], capture_output=True, text=True, env=env, timeout=900
    )


def test_a_moment_is_copied_into_a_named_server_with_exactly_the_rows_before_it(stack, history, pitr_ops):
    target_time = history.second.between(0)  # after row 5, before row 6
    url = f"postgresql://stellar_restore@127.0.0.1:{stack.ports['postgres']}/postgres"
    database = "pitr_cli_copy"
    result = restore(
        "--target-time",
        iso(target_time),
        "--target",
        url,
        "--database",
        database,
        password=stack.restore_password,
    )
    try:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        report = json.loads(result.stdout)
        assert report["success"] is True and report["kind"] == "point_in_time"
        assert report["target_time"] == iso(target_time)
        assert history.second.before[0] <= _time(report["reached"]) <= target_time
        assert report["recovery"]["base_backup_id"] == history.record.backup_id
        assert [c["check"] for c in report["checks"] if c["passed"]] == [
            "row counts",
            "schema",
            "sanity queries",
        ]
        with connect(stack.superuser.with_dbname(database)) as conn:
            assert [r[0] for r in conn.execute(f"SELECT id FROM {TABLE} ORDER BY id")] == [1, 2, 3, 4, 5]
        assert stack.restore_password not in result.stdout + result.stderr
    finally:
        with connect(stack.superuser.with_dbname("postgres")) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {database}")


def test_the_whole_cluster_is_left_in_a_data_directory_stopped_cleanly(stack, history, pitr_ops):
    target_time = history.first.between(2)  # after row 3, before row 4
    with tempfile.TemporaryDirectory(prefix="stellar-pitr-cli-") as parent:
        os.chmod(parent, 0o755)
        data_dir = Path(parent) / "recovered"
        result = restore("--target-time", iso(target_time), "--data-dir", str(data_dir))
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        report = json.loads(result.stdout)
        assert report["base_backup_id"] == history.record.backup_id
        assert history.first.before[2] <= _time(report["reached"]) <= target_time
        assert not (data_dir / "postmaster.pid").exists() and not (data_dir / "recovery.signal").exists()
        # the source's own configuration is back (its archive_command, its pg_hba.conf)
        assert "barman-cloud-wal-archive" in (data_dir / "postgresql.auto.conf").read_text()
        assert "stellar-ops" not in (data_dir / "pg_hba.conf").read_text()
        assert _rows_when_started(stack, data_dir) == [1, 2, 3]


def test_the_options_of_two_kinds_of_restore_are_refused_together(pitr_ops):
    both = restore("--backup", "latest", "--target-time", "latest", "--target", "postgresql://x@h/postgres")
    assert both.returncode != 0 and "--backup and --target-time ask for two different restores" in both.stderr
    mixed = restore(
        "--target-time", "latest", "--data-dir", "/tmp/x", "--target", "postgresql://x@h/postgres"
    )
    assert mixed.returncode != 0 and "are two ways out" in mixed.stderr
    bad = restore("--target-time", "yesterday", "--target", "postgresql://x@h/postgres")
    assert bad.returncode != 0 and "'yesterday' is neither 'latest' nor an ISO-8601 time" in bad.stderr


def _time(text: str):
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _rows_when_started(stack, data_dir: Path) -> list[int]:
    """Start the recovered directory as the database host would (its own settings; only the port,
    the socket and archiving changed on the command line, beside the stack's running server)."""
    run_as = unprivileged_user("postgres")
    sockets = Path(tempfile.mkdtemp(prefix="stellar-pitr-sock-"))
    os.chmod(sockets, 0o777)
    port = free_port()
    process = ManagedProcess(
        name="recovered",
        argv=[
            str(find_binaries().bin_dir / "postgres"),
            "-D",
            str(data_dir),
            "-c",
            f"port={port}",
            "-c",
            "listen_addresses=",
            "-c",
            f"unix_socket_directories={sockets}",
            "-c",
            "archive_mode=off",
        ],
        log_path=data_dir.parent / "started.log",
        user=run_as,
        stop_signal=signal.SIGINT,
    )
    process.start()
    target = PgTarget(str(sockets), port, "postgres", "stellar_escrow", stack.superuser_password)
    try:

        def answers() -> bool:
            try:
                with connect(target) as conn:
                    return not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
            except Exception:  # noqa: BLE001 - not up yet
                return False

        process.wait_ready(answers, timeout=60)
        with connect(target) as conn:
            return [r[0] for r in conn.execute(f"SELECT id FROM {TABLE} ORDER BY id")]
    finally:
        process.stop()
        wait_until(lambda: not process.running(), timeout=30, what="the recovered server to stop")
