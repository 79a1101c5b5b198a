"""The real recovery: a backup into a second server, verified, and every refusal that keeps data safe.

The second server runs on another port with another superuser, whose password has URL-special
characters: it must appear in no output and in no process's argv.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from stellar_ops.core.processes import unprivileged_user
from stellar_ops.postgres.server import LocalPgServer
from stellar_ops.postgres.target import connect
from tests.support.faults import PgDumpKiller, gauge
from tests.support.fixtures import reachable_dir

pytestmark = pytest.mark.integration

CLI = str(Path(sys.executable).parent / "stellar-ops")
PASSWORD = "p@ss:w/rd?#%&'x y"


def database_named_after(key: str) -> str:
    """The database a restore creates by default: named after the backup's snapshot time."""
    name = key.rsplit("/", 1)[1]  # stellar_escrow_20261206T173502Z.dump.zst
    stamp = name.removeprefix("stellar_escrow_").split(".", 1)[0]
    return f"stellar_escrow_{stamp[:8]}_{stamp[9:15]}"


@pytest.fixture(scope="module")
def second_server():
    with reachable_dir() as base:
        yield from _serve(base)


def _serve(base):
    server = LocalPgServer(
        base / "pg", run_as=unprivileged_user("postgres"), superuser="dba", password=PASSWORD
    )
    server.init()
    server.start()
    server.psql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements", "postgres")
    try:
        yield server
    finally:
        server.remove()


class ArgvWatch:
    """Samples every process's argv while running, looking for a secret."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.seen: list[str] = []
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ArgvWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            for proc in psutil.process_iter(["cmdline"]):
                line = " ".join(proc.info["cmdline"] or [])
                self.samples += 1
                if self.secret in line:
                    self.seen.append(line)
            time.sleep(0.01)


def restore(stack, ops, server, *args: str, env_extra: dict | None = None, killer=None, user: str = "dba"):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "PG"))}
    env.update(
        {
            "DATABASE_URL": stack.env()["DATABASE_URL"],
            "S3_BUCKET": "stellar-backups",
            "STELLAR_OPS_CONFIG": json.dumps(ops.document),
            "PUSHGATEWAY_URL": stack.url("pushgateway"),
            "BACKUP_ALERT_WEBHOOK": stack.webhook_url,
            "PGPASSWORD": PASSWORD,
            **(env_extra or {}),
        }
    )
    target = f"postgresql://{user}@127.0.0.1:{server.port}/postgres"
    return subprocess.run(
        [CLI, "restore", "--target", target, "--yes", "--json", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def counts(server, database: str) -> dict[str, int]:
    with connect(server.target(database)) as conn:
        return {
            t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("trades", "events", "escrows")
        }


def test_a_backup_restores_into_a_second_server_verified_and_reported(
    stack, ops, second_server, backup_key, receiver
):
    database = database_named_after(backup_key)
    with ArgvWatch(PASSWORD) as watch:
        result = restore(stack, ops, second_server, "--backup", backup_key)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["success"] is True and report["rto_kind"] == "recovery"
    assert [c["check"] for c in report["checks"]] == ["row counts", "schema", "sanity queries"]
    assert report["target"]["database"] == database and report["target"]["rename_existing_to"] is None
    assert ops.store().get_json(backup_key + ".restore_report.json") == report
    manifest = ops.store().get_json(backup_key + ".manifest.json")
    assert counts(second_server, database) == {
        t: manifest["row_counts"][f"public.{t}"] for t in ("trades", "events", "escrows")
    }
    assert gauge(
        stack.url("pushgateway"), "stellar_restore_seconds", job="stellar_ops", procedure="db_restore"
    ) == pytest.approx(report["rto_seconds"])
    assert any("Restore done" in text and database in text for text in receiver.texts())
    assert watch.samples > 0 and watch.seen == [], "the target's password was in a process's argv"
    assert PASSWORD not in result.stdout + result.stderr

    again = restore(stack, ops, second_server, "--backup", backup_key)
    assert again.returncode == 2
    assert f"database {database!r} already exists" in again.stderr and "set replace" in again.stderr


def test_a_password_in_the_target_url_is_refused(stack, ops, second_server, backup_key):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_")}
    url = f"postgresql://dba:secret@127.0.0.1:{second_server.port}/postgres"
    result = subprocess.run(
        [CLI, "restore", "--backup", backup_key, "--target", url, "--yes"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 2 and "--target must not carry a password" in result.stderr


def test_with_replace_a_restore_that_fails_half_way_keeps_the_old_database(
    stack, ops, second_server, backup_key
):
    assert restore(stack, ops, second_server, "--backup", backup_key, "--database", "kept").returncode == 0
    before = counts(second_server, "kept")
    with PgDumpKiller(
        program="pg_restore", after_bytes=256 << 10, times=1, sparing="--file=/dev/null", counter="rchar"
    ) as killer:
        failed = restore(stack, ops, second_server, "--backup", backup_key, "--database", "kept", "--replace")
    assert killer.killed, "pg_restore was never killed"
    assert failed.returncode == 2
    assert "the previous database is intact as 'kept_before_" in failed.stderr
    with connect(second_server.target()) as conn:
        names = [
            r[0]
            for r in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'kept%' ORDER BY 1")
        ]
    (aside,) = [n for n in names if n.startswith("kept_before_")]
    assert counts(second_server, aside) == before, "the renamed-aside database lost rows"


def test_the_backups_own_source_is_refused_without_replace(stack, ops, backup_key):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "PG"))}
    env.update(
        {
            "STELLAR_OPS_CONFIG": json.dumps(ops.document),
            "S3_BUCKET": "stellar-backups",
            "PGPASSWORD": stack.superuser_password,
        }
    )
    target = f"postgresql://postgres@127.0.0.1:{stack.ports['postgres']}/postgres"
    result = subprocess.run(
        [CLI, "restore", "--backup", backup_key, "--target", target, "--database", "stellar_escrow", "--yes"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 2
    assert "database 'stellar_escrow' is the backup's own source" in result.stderr


def test_an_older_server_or_a_missing_extension_is_refused_naming_it(stack, ops, second_server, backup_key):
    store = ops.store()
    manifest = store.get_json(backup_key + ".manifest.json")
    newer = {**manifest, "pg_dump_version": "pg_dump (PostgreSQL) 17.2 (Debian 17.2-1)"}
    store.put_json(backup_key + ".manifest.json", newer)
    result = restore(stack, ops, second_server, "--backup", backup_key, "--database", "never")
    assert result.returncode == 2
    assert "server version: PostgreSQL 15." in result.stderr
    assert "older than the backup's pg_dump 17" in result.stderr and "nothing was written" in result.stderr

    schema = {**manifest["schema"], "extensions": {**manifest["schema"]["extensions"], "postgis": "public"}}
    store.put_json(backup_key + ".manifest.json", {**manifest, "schema": schema})
    result = restore(stack, ops, second_server, "--backup", backup_key, "--database", "never")
    assert result.returncode == 2 and "extensions: the server lacks postgis" in result.stderr
    with connect(second_server.target()) as conn:
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datname = 'never'").fetchone()[0] == 0


@pytest.fixture
def fresh_server():
    """A server that has none of the backup's roles yet."""
    with reachable_dir() as base:
        yield from _serve(base)


def test_a_role_that_may_not_create_is_refused_before_any_write_naming_each_privilege(
    stack, ops, fresh_server, backup_key
):
    """Everything missing is named at once, before the approval: not a permission error mid-restore."""
    second_server = fresh_server
    second_server.psql("DROP ROLE IF EXISTS restorer")
    second_server.psql("CREATE ROLE restorer LOGIN PASSWORD 'restorer-pw'")

    def as_restorer():
        return restore(
            stack,
            ops,
            second_server,
            "--backup",
            backup_key,
            "--database",
            "by_restorer",
            env_extra={"PGPASSWORD": "restorer-pw"},
            user="restorer",
        )

    try:
        result = as_restorer()
        assert result.returncode == 2, result.stdout[-2000:]
        assert "cannot take this restore; nothing was written" in result.stderr
        assert "privilege: role 'restorer' may not create databases (it needs CREATEDB" in result.stderr
        assert "may not create them (it needs CREATEROLE" in result.stderr
        # stellar takes the base backups of point-in-time recovery over a replication connection
        assert (
            "the backup's roles postgres (SUPERUSER, REPLICATION, BYPASSRLS); stellar (REPLICATION)"
            in result.stderr
        )
        assert "only a superuser may create the extensions pg_stat_statements" in result.stderr
        with connect(second_server.target()) as conn:
            assert (
                conn.execute("SELECT count(*) FROM pg_database WHERE datname = 'by_restorer'").fetchone()[0]
                == 0
            )

        second_server.psql("ALTER ROLE restorer CREATEDB CREATEROLE")
        second_server.psql("CREATE ROLE postgres SUPERUSER")  # what only a superuser may create
        second_server.psql(
            "DO $$BEGIN CREATE ROLE stellar REPLICATION; EXCEPTION WHEN duplicate_object THEN ALTER ROLE stellar REPLICATION; END$$"
        )
        second_server.psql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements", "template1")
        granted = as_restorer()
        assert granted.returncode == 0, granted.stderr[-3000:]
        assert counts(second_server, "by_restorer")["trades"] > 0
    finally:
        second_server.psql("DROP DATABASE IF EXISTS by_restorer")


def test_stellar_ops_restore_gives_back_a_production_like_database_exactly(
    stack, ops, second_server, rich_database
):
    """The whole command on the rich database (roles and grants, large objects, partitions,
    triggers, views, sequences): the restored copy is the source, schema and content."""
    from tests.integration.dr.test_fidelity import back_up, content, schema_dump

    _, manifest = back_up(rich_database, ops)
    document = {
        **ops.document,
        "dr": {
            **ops.document.get("dr", {}),
            "key_tables": ["ledger.customers", "ledger.bulk"],
            "sanity_queries": ["SELECT count(*) FROM ledger.bulk"],
        },
    }
    result = restore(
        stack,
        ops,
        second_server,
        "--backup",
        manifest.key,
        "--database",
        "rich_copy",
        env_extra={"STELLAR_OPS_CONFIG": json.dumps(document)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["success"] is True, report["checks"]
    restored = second_server.target("rich_copy")
    assert schema_dump(restored) == schema_dump(rich_database)
    assert content(restored) == content(rich_database)
