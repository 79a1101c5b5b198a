"""``stellar-ops migrate``, ``stellar-ops config-change`` and ``stellar-ops changes list`` run as an
operator would when Airflow is down, against the stack (``--yes`` gives the approvals): a migration
from local files backed up, rehearsed, applied and listed; one that fails in the rehearsal exits
non-zero with production untouched; a config change that holds exits 0, one that makes the API
unhealthy is reverted and exits 1.

Production's schema and the API's env file are put back in ``finally``, as in the DAG tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from stellar_ops.changes.apply import schema_fingerprint
from stellar_ops.postgres.target import connect

pytestmark = pytest.mark.integration

CLI = str(Path(sys.executable).parent / "stellar-ops")


def cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    # the stack's environment, and the test's config (STELLAR_OPS_CONFIG, set by the ops fixture)
    return subprocess.run([CLI, *args], capture_output=True, text=True, env=dict(os.environ), timeout=timeout)


@pytest.fixture
def cli_ops(ops):
    ops.update(
        rotation={"restart": "http_reload"},
        changes={
            "log_prefix": f"{ops.prefix}changes",  # no trailing slash: a sibling prefix is not the log's
            "lock_timeout": "1s",
            "services": ["api"],
            "health_settle_seconds": 0,
            "healthy_timeout_seconds": 5,
        },
    )
    return ops


@pytest.fixture
def schema_kept(stack) -> Iterator[tuple[str, str]]:
    """A column and an index name for this test; production's schema put back after it."""
    column, index = f"chg_cli_{os.getpid()}", f"chg_cli_{os.getpid()}_idx"
    before = schema_fingerprint(stack.db)[0]
    try:
        yield column, index
    finally:
        with connect(stack.db) as conn:
            conn.execute(f"DROP INDEX IF EXISTS {index}")
            conn.execute(f"ALTER TABLE trades DROP COLUMN IF EXISTS {column}")
        assert schema_fingerprint(stack.db)[0] == before


def listed(change: str) -> dict[str, Any]:
    done = cli("changes", "list", "--json")
    assert done.returncode == 0, done.stderr
    rows = {row["change_id"]: row for row in json.loads(done.stdout)}
    assert change in rows, rows
    return rows[change]


def test_migrate_applies_a_rehearsed_migration_and_refuses_one_that_fails_its_rehearsal(
    airflow_db, stack, cli_ops, schema_kept, tmp_path
):
    column, index = schema_kept
    decoy = f"{cli_ops.prefix}changes-old/migration-20260101T000000Z-abcdef/record.json"
    cli_ops.store().put_json(decoy, {"change_id": "migration-20260101T000000Z-abcdef", "status": "old"})
    before = schema_fingerprint(stack.db)[0]
    migration = tmp_path / "0042_note.sql"
    migration.write_text(
        f"ALTER TABLE trades ADD COLUMN {column} text DEFAULT 'n/a';\n"
        f"CREATE INDEX CONCURRENTLY {index} ON trades ({column});\n"
    )
    rollback = tmp_path / "0042_note.rollback.sql"
    rollback.write_text(
        f"DROP INDEX CONCURRENTLY IF EXISTS {index};\nALTER TABLE trades DROP COLUMN IF EXISTS {column};\n"
    )
    done = cli(
        "migrate", str(migration), "--rollback", str(rollback), "--reason", "OPS-60", "--yes", "--json"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads(done.stdout)
    assert record["status"] == "verified" and record["result"] == "done", record
    assert record["rehearsal"]["rollback"]["restores_schema"] is True
    assert record["approval"]["chosen"] == "Approve" and "--yes" in record["approval"]["by"]
    assert record["requested_by"].endswith("(terminal)") and record["reason"] == "OPS-60"
    assert cli_ops.store().exists(record["pre_change_backup"])
    after = schema_fingerprint(stack.db)[0]
    assert after != before and after == record["rehearsal"]["fingerprint_after"]
    row = listed(record["change_id"])
    assert row["status"] == "verified" and row["kind"] == "migration" and "--yes" in row["approved_by"]

    # the next one read from a reviewed revision of a git checkout (changes.git_dir)
    checkout = tmp_path / "checkout"
    (checkout / "migrations").mkdir(parents=True)
    (checkout / "migrations" / "0043_bad.sql").write_text(f"UPDATE trades SET {column} = no_such_column;\n")
    for argv in (["init", "-q"], ["add", "."], ["commit", "-q", "-m", "0043"]):
        git = ["git", "-C", str(checkout), "-c", "user.name=t", "-c", "user.email=t@example.com", *argv]
        subprocess.run(git, check=True, capture_output=True, timeout=60)
    cli_ops.update(changes={"git_dir": str(checkout)})
    done = cli("migrate", "git:HEAD:migrations/0043_bad.sql", "--yes", "--json")
    assert done.returncode == 1, done.stderr[-3000:]
    assert "failed in the rehearsal" in done.stderr and "no_such_column" in done.stderr, done.stderr[-3000:]
    assert schema_fingerprint(stack.db)[0] == after
    [bad] = [
        r
        for r in json.loads(cli("changes", "list", "--json").stdout)
        if r["change_id"] != record["change_id"]
    ]
    assert bad["status"] == "rehearsal failed" and bad["approved_by"] is None
    assert "git:HEAD:migrations/0043_bad.sql" in bad["what"]


def health(stack) -> dict[str, Any]:
    answer = requests.get(stack.url("api") + "/health", headers={"X-API-Key": stack.api_key}, timeout=5)
    return {"code": answer.status_code, **answer.json()}


def test_config_change_holds_or_is_reverted(airflow_db, stack, cli_ops):
    path = stack.api_env_file
    original = path.read_bytes()
    try:
        done = cli("config-change", "--set", "INDEXER_LAG_SECONDS=3", "--reason", "test", "--yes", "--json")
        assert done.returncode == 0, done.stderr[-3000:]
        record = json.loads(done.stdout)
        assert record["status"] == "healthy" and record["result"] == "done", record
        assert health(stack)["indexer_lag_seconds"] == 3
        assert listed(record["change_id"])["status"] == "healthy"

        before = path.read_bytes()
        done = cli("config-change", "--set", "HEALTH_STATUS=degraded", "--reason", "test", "--yes", "--json")
        assert done.returncode == 1, done.stderr[-3000:]
        record = json.loads(done.stdout)
        assert record["status"] == "reverted", record
        assert record["result"] == "failed at restart_services; reverted"
        assert path.read_bytes() == before
        answer = health(stack)
        assert answer["code"] == 200 and answer["status"] == "ok" and answer["indexer_lag_seconds"] == 3

        # an API already unhealthy: the revert cannot bring it back, and says so in the record
        path.write_bytes(before + b"HEALTH_STATUS=degraded\n")
        requests.post(
            stack.url("api") + "/_reload", headers={"X-API-Key": stack.admin_key}, timeout=5
        ).raise_for_status()
        done = cli("config-change", "--set", "INDEXER_LAG_SECONDS=5", "--reason", "test", "--yes", "--json")
        assert done.returncode == 1, done.stderr[-3000:]
        record = json.loads(done.stdout)
        assert record["status"] == "revert unhealthy", record
        assert record["result"] == "failed at restart_services, revert_change", record
        assert "still not healthy" in done.stderr
    finally:
        path.write_bytes(original)
        requests.post(
            stack.url("api") + "/_reload", headers={"X-API-Key": stack.admin_key}, timeout=5
        ).raise_for_status()
        assert health(stack)["code"] == 200
