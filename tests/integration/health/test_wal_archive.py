"""The WAL archive check against real PostgreSQL servers, each made with initdb and its own
archive_command: archiving that works, a command that fails, archiving that stops (an empty
command: WAL waits, nothing fails), and archive_mode off, not required and required."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stellar_ops.cli.env import runtime
from stellar_ops.core.processes import chown_tree, unprivileged_user
from stellar_ops.health import flow
from stellar_ops.postgres.server import LocalPgServer
from stellar_ops.runtime import Runtime
from tests.support.faults import gauge
from tests.support.fixtures import reachable_dir

pytestmark = pytest.mark.integration


def _server(base: Path, **settings: str) -> LocalPgServer:
    server = LocalPgServer(base / "pg", run_as=unprivileged_user("postgres"), settings=settings)
    server.init()
    server.start()
    return server


@pytest.fixture(scope="module")
def archiving() -> Iterator[tuple[LocalPgServer, Path]]:
    """archive_mode on, archive_command a cp into a directory of the test's."""
    with reachable_dir() as base:
        archive = base / "archive"
        archive.mkdir()
        chown_tree(archive, unprivileged_user("postgres"))
        server = _server(base, archive_mode="on", archive_command=f"'cp %p {archive}/%f'")
        try:
            yield server, archive
        finally:
            server.remove()


@pytest.fixture(scope="module")
def failing() -> Iterator[LocalPgServer]:
    with reachable_dir() as base:
        server = _server(base, archive_mode="on", archive_command="'false'")
        try:
            yield server
        finally:
            server.remove()


@pytest.fixture(scope="module")
def not_archiving() -> Iterator[LocalPgServer]:
    with reachable_dir() as base:
        server = _server(base)  # archive_mode off: initdb's default
        try:
            yield server
        finally:
            server.remove()


def _on(rt: Runtime, server: LocalPgServer, monkeypatch: pytest.MonkeyPatch) -> Runtime:
    monkeypatch.setattr(rt.resources, "database", server.target)
    return rt


def _switch(server: LocalPgServer) -> str:
    """Write some WAL, then close its segment; the name of the segment closed."""
    server.psql("CREATE TABLE IF NOT EXISTS churn (n int); INSERT INTO churn SELECT generate_series(1, 1000)")
    return server.psql("SELECT pg_walfile_name(pg_switch_wal())").strip()


def _archiver(server: LocalPgServer) -> dict[str, str]:
    row = server.psql(
        "SELECT archived_count, coalesce(last_archived_wal, ''), failed_count, coalesce(last_failed_wal, '') "
        "FROM pg_stat_archiver"
    ).strip()
    keys = ("archived_count", "last_archived_wal", "failed_count", "last_failed_wal")
    return dict(zip(keys, row.split("|"), strict=True))


def _wait(condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:g}s for {what}")
        time.sleep(0.2)


def _set_command(server: LocalPgServer, command: str) -> None:
    server.psql(f"ALTER SYSTEM SET archive_command = '{command}'")
    server.psql("SELECT pg_reload_conf()")


def test_archiving_that_works_is_ok_then_lags_when_it_stops_and_recovers(ops, archiving, monkeypatch):
    server, archive = archiving
    closed = _switch(server)
    _wait(lambda: _archiver(server)["last_archived_wal"] == closed, f"{closed} archived")
    assert (archive / closed).is_file()
    ops.update(pitr={"max_archive_lag_seconds": 1})
    rt = _on(runtime(), server, monkeypatch)

    ok = flow.check(rt, "wal_archive")
    assert ok.status == "ok", ok.detail
    assert ok.detail.startswith(f"nothing waiting to be archived; last archived {closed} "), ok.detail
    item = ok.items[0]
    assert (item["segments_waiting"], item["lag_seconds"], item["failing"]) == (0, 0.0, False)

    # idle past the limit, nothing complete to archive: not lagging, however old the last success
    time.sleep(1.5)
    idle = flow.check(rt, "wal_archive")
    assert idle.status == "ok", idle.detail

    # archiving stops without failing (an empty archive_command): complete segments wait
    _set_command(server, "")
    waiting = _switch(server)
    time.sleep(1.5)
    lagging = flow.check(rt, "wal_archive")
    assert lagging.status == "critical", lagging.detail
    assert lagging.alert is not None and (lagging.alert.name, lagging.alert.severity) == (
        "WalArchiveLagging",
        "P2",
    )
    assert lagging.detail.startswith("archiving lags: 1 complete segment(s) waiting, nothing archived for ")
    assert f"last archived {closed}" in lagging.detail and "P2 WalArchiveLagging" in lagging.detail
    assert lagging.items[0]["lag_seconds"] > 1
    assert _archiver(server)["failed_count"] == "0"

    _set_command(server, f"cp %p {archive}/%f")
    _wait(lambda: _archiver(server)["last_archived_wal"] == waiting, f"{waiting} archived")
    assert flow.check(rt, "wal_archive").status == "ok"


def test_a_failing_archive_command_is_p1_naming_the_wal_file(ops, failing, monkeypatch, stack):
    closed = _switch(failing)
    _wait(lambda: _archiver(failing)["failed_count"] != "0", "a failed archive_command")
    rt = _on(runtime(), failing, monkeypatch)
    result = flow.check(rt, "wal_archive")
    assert result.status == "critical", result.detail
    assert result.alert is not None and (result.alert.name, result.alert.severity) == (
        "WalArchiveFailing",
        "P1",
    )
    assert result.runbook == "PITR-ARCHIVE"
    assert result.detail.startswith(f"archiving fails: {closed} failed "), result.detail
    assert "never archived successfully: P1 WalArchiveFailing" in result.detail

    # pushed with the health metrics: the summary's metrics carry the archive's
    flow.summarize(rt, [result], run="test_wal_archive")
    url = stack.url("pushgateway")
    assert gauge(url, "stellar_pitr_archive_failing", procedure="morning_health_check") == 1
    assert gauge(url, "stellar_health_check_status", check="wal_archive") == 2

    # the command fixed: the next success is newer than the last failure
    with reachable_dir() as archive:
        chown_tree(archive, unprivileged_user("postgres"))
        _set_command(failing, f"cp %p {archive}/%f")
        _wait(lambda: _archiver(failing)["last_archived_wal"] == closed, f"{closed} archived")
        fixed = flow.check(rt, "wal_archive")
        _set_command(failing, "false")
    assert fixed.status == "ok", fixed.detail
    flow.summarize(rt, [fixed], run="test_wal_archive")
    assert gauge(url, "stellar_pitr_archive_failing", procedure="morning_health_check") == 0
    assert gauge(url, "stellar_pitr_archive_lag_seconds", procedure="morning_health_check") == 0


def test_archive_mode_off_is_ok_unless_required(ops, not_archiving, monkeypatch):
    rt = _on(runtime(), not_archiving, monkeypatch)
    relaxed = flow.check(rt, "wal_archive")
    assert relaxed.status == "ok", relaxed.detail
    assert relaxed.detail.startswith("archive_mode is off: WAL is not archived")
    assert relaxed.alert is None

    ops.update(pitr={"required": True})
    rt = _on(runtime(), not_archiving, monkeypatch)
    required = flow.check(rt, "wal_archive")
    assert required.status == "critical", required.detail
    assert "archive_mode is off, but pitr.required is true" in required.detail
    assert required.alert is not None and (required.alert.name, required.alert.severity) == (
        "WalArchiveDisabled",
        "P2",
    )
