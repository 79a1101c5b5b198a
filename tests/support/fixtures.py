"""Pytest fixtures: one local stack of real servers per session, and per-test isolation on it."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from stellar_ops.dr.scratch import LocalScratch, scratch_name
from stellar_ops.postgres.binaries import find_binaries
from stellar_ops.postgres.target import PgTarget, connect
from stellar_ops.registry import parse_config
from stellar_ops.storage.s3 import S3Store
from stellar_ops_dev.stack import Stack, StackInfo
from tests.support.alertmanager import resolve_firing_alerts

REPO = Path(__file__).resolve().parents[2]
DEMO_ROWS = int(os.environ.get("STELLAR_TEST_DEMO_ROWS", "30000"))


@pytest.fixture(scope="session")
def stack_handle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The servers themselves (to stop or restart one in a fault test)."""
    stack = Stack(tmp_path_factory.mktemp("stack"), demo_rows=DEMO_ROWS)
    stack.up()
    try:
        yield stack
    finally:
        stack.down()


@pytest.fixture(scope="session")
def stack(stack_handle: Stack) -> StackInfo:
    """Where the servers are; the session's environment points Airflow and the CLI at them."""
    assert stack_handle.info is not None
    info = stack_handle.info
    os.environ.update(info.env())
    return info


@pytest.fixture(scope="session")
def migrated_airflow_db() -> Path:
    """A migrated metadata DB in the session's AIRFLOW_HOME (no server of the stack needed)."""
    home = Path(os.environ["AIRFLOW_HOME"])
    result = subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return home


@pytest.fixture(scope="session")
def airflow_db(stack: StackInfo, migrated_airflow_db: Path) -> Path:
    """A migrated metadata DB in the session's AIRFLOW_HOME, for ``dag.test()`` against the stack."""
    return migrated_airflow_db


class Receiver:
    """The webhook receiver of the stack (the stand-in for Slack)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def clear(self) -> None:
        requests.delete(f"{self.base_url}/_received", timeout=5).raise_for_status()

    def messages(self) -> list[dict[str, Any]]:
        response = requests.get(f"{self.base_url}/_received", timeout=5)
        response.raise_for_status()
        return list(response.json())

    def texts(self) -> list[str]:
        return [m["json"]["text"] for m in self.messages() if m.get("json") and "text" in m["json"]]


@pytest.fixture
def receiver(stack: StackInfo) -> Receiver:
    hook = Receiver(stack.url("receiver"))
    hook.clear()
    return hook


class OpsConfig:
    """The ``stellar_ops_config`` of one test: its own S3 prefix and local directory."""

    def __init__(self, stack: StackInfo, name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.stack = stack
        self.monkeypatch = monkeypatch
        self.prefix = f"t/{name}/"
        self.local_dir = tmp_path / "local-backups"
        self.document: dict[str, Any] = {
            "backup": {"bucket": "stellar-backups", "prefix": self.prefix, "local_dir": str(self.local_dir)},
            # the drill's point-in-time rehearsal is tested by tests/integration/pitr/test_canary_rehearsal.py;
            # off here, so no other drill test depends on which base backups the session made before it
            "dr": {"work_dir": str(Path(stack.data_dir) / "scratch"), "pitr_rehearsal": "off"},
        }
        self.apply()

    def update(self, **sections: dict[str, Any]) -> None:
        for section, values in sections.items():
            self.document.setdefault(section, {}).update(values)
        self.apply()

    def apply(self) -> None:
        text = json.dumps(self.document)
        parse_config(text)  # a test must not hand the DAGs an invalid config by accident
        self.monkeypatch.setenv("AIRFLOW_VAR_STELLAR_OPS_CONFIG", text)
        self.monkeypatch.setenv("STELLAR_OPS_CONFIG", text)

    @property
    def config(self) -> Any:
        return parse_config(self.document)

    def store(self) -> S3Store:
        return S3Store(self.stack.s3_client(), "stellar-backups", encryption="AES256")

    def objects(self) -> list[str]:
        return sorted(o.key for o in self.store().list_objects(self.prefix))


@pytest.fixture
def ops(
    stack: StackInfo, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> OpsConfig:
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")
    if len(name) > 60:  # keep parametrized cases apart: a shortened name ends with a digest of the whole
        name = f"{name[:51]}-{hashlib.sha256(request.node.name.encode()).hexdigest()[:8]}"
    return OpsConfig(stack, name, tmp_path, monkeypatch)


@contextlib.contextmanager
def reachable_dir() -> Iterator[Path]:
    """A directory a PostgreSQL server running as an unprivileged user can reach."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="stellar-test-pg-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def local_pg_server(settings: dict[str, str] | None = None) -> Iterator[Any]:
    """A PostgreSQL server of the test's own (initdb, started as an unprivileged user), removed after."""
    from stellar_ops.core.processes import unprivileged_user
    from stellar_ops.postgres.server import LocalPgServer

    with reachable_dir() as root:
        server = LocalPgServer(root / "pg", run_as=unprivileged_user("postgres"), settings=settings or {})
        server.init()
        server.start()
        try:
            yield server
        finally:
            server.remove()


@pytest.fixture
def no_alert_firing(stack: StackInfo) -> list[str]:
    """No alert firing in the stack's Alertmanager when the test starts: a red run of an earlier
    test keeps its DAG's alert firing until that DAG succeeds, which a health check reports."""
    return resolve_firing_alerts(stack.url("alertmanager"))


@pytest.fixture
def canary_paused(stack: StackInfo) -> Iterator[None]:
    """The stack's canary writer stopped (SIGSTOP) for one test, resumed after: for a test that
    compares two backups of the application database taken at different moments."""
    pid = stack.pids["canary"]
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


@pytest.fixture
def server_dir() -> Iterator[Path]:
    """A directory a PostgreSQL server running as an unprivileged user can reach."""
    with reachable_dir() as path:
        yield path


@pytest.fixture
def backup_key(airflow_db, ops) -> str:
    """A fresh, verified backup under the test's prefix, taken by the db_backup DAG."""
    from datetime import UTC, datetime

    from tests.support.dagrun import run_dag

    outcome = run_dag("db_backup", logical_date=datetime(2026, 11, 22, 2, 0, tzinfo=UTC))
    assert outcome.state == "success", outcome.tasks
    return str(outcome.xcom("publish_backup")["key"])


@pytest.fixture(scope="module")
def scratch() -> Iterator[PgTarget]:
    """A scratch server tuned as the DR test's (``wal_level=minimal``), for one test module."""
    with (
        reachable_dir() as work,
        LocalScratch(name=scratch_name("test"), work_dir=work, binaries=find_binaries()).running() as server,
    ):
        yield server.target()


RICH_SQL = Path(__file__).resolve().parent / "sql" / "rich_database.sql"


@pytest.fixture(scope="session")
def rich_database(stack: StackInfo) -> PgTarget:
    """A database like a production one in the stack's server (see sql/rich_database.sql), owned by
    the stack's application role; its roles stay in the cluster for the session."""
    owner = stack.db
    with connect(stack.superuser.with_dbname("postgres")) as conn:
        conn.execute("DROP DATABASE IF EXISTS rich")
        conn.execute(f'CREATE DATABASE rich OWNER "{owner.user}"')
    result = subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", f"owner={owner.user}", "-f", str(RICH_SQL)],
        capture_output=True,
        text=True,
        env=stack.superuser.with_dbname("rich").client_env(),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return owner.with_dbname("rich")


def published(key: str) -> list[str]:
    """The objects of one published backup, in listing order: the dump, its roles, its manifest."""
    return sorted([key, key + ".globals.sql", key + ".manifest.json"])
