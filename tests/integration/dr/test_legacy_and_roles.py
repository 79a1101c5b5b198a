"""The old scripts' backups where they really are, and grants to application roles, end to end.

The old ``backup.sh`` ran ``pg_dump | gzip`` and ``aws s3 cp`` to ``s3://<bucket>/stellar_escrow_<TS>.sql.gz``,
at the bucket root. Every real database grants to application roles. Both must go through
``stellar-ops backups list``, ``stellar-ops dr-test`` and ``dr_restore_test`` as they are.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stellar_ops.postgres.target import connect
from tests.support.dagrun import run_dag

pytestmark = pytest.mark.integration

CLI = str(Path(sys.executable).parent / "stellar-ops")
LEGACY_NAME = "stellar_escrow_20250101_020000.sql.gz"


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, env=env, timeout=600)


def old_script_env(stack, ops, **config: dict) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_")}
    env.update(
        {
            "DATABASE_URL": stack.env()["DATABASE_URL"],
            "S3_BUCKET": "stellar-backups",
            "BACKUP_ALERT_WEBHOOK": stack.webhook_url,
            "STELLAR_OPS_CONFIG": json.dumps({**ops.document, **config}),
        }
    )
    return env


@pytest.fixture
def legacy_at_the_root(stack, tmp_path):
    """A backup made and uploaded exactly as the old backup.sh did, at the bucket root."""
    dump = tmp_path / LEGACY_NAME
    subprocess.run(
        f'pg_dump "$DATABASE_URL" | gzip > {dump}',
        shell=True,
        check=True,
        env={**os.environ, "DATABASE_URL": stack.env()["DATABASE_URL"]},
    )
    client = stack.s3_client()
    client.upload_file(str(dump), "stellar-backups", LEGACY_NAME)  # what `aws s3 cp` does
    try:
        yield LEGACY_NAME
    finally:
        client.delete_object(Bucket="stellar-backups", Key=LEGACY_NAME)
        client.delete_object(Bucket="stellar-backups", Key=LEGACY_NAME + ".dr_report.json")


def test_a_legacy_backup_at_the_bucket_root_is_listed_kept_and_restorable(
    stack, ops, legacy_at_the_root, receiver
):
    env = old_script_env(stack, ops, backup={**ops.document["backup"], "legacy_prefix": ""})
    listed = json.loads(cli("backups", "list", "--json", env=env).stdout)
    assert [(row["key"], row["state"], row["format"]) for row in listed] == [(LEGACY_NAME, "legacy", "plain")]

    tested = cli("dr-test", "--backup", LEGACY_NAME, "--json", env=env)
    assert tested.returncode == 0, tested.stderr[-3000:]
    report = json.loads(tested.stdout)
    assert report["success"] is True and report["backup"]["location"] == LEGACY_NAME
    assert report["backup"]["state"] == "legacy"

    # a backup of today, then retention of a week: the 2025 legacy object is older, and stays
    backed = cli("backup", env={**env, "RETENTION_DAYS": "7"})
    assert backed.returncode == 0, backed.stderr[-3000:]
    assert f"deleting s3://stellar-backups/{LEGACY_NAME}" not in backed.stderr
    keys = {
        o["Key"]
        for o in stack.s3_client().list_objects_v2(Bucket="stellar-backups", Prefix="st").get("Contents", [])
    }
    assert LEGACY_NAME in keys

    missing = cli("dr-test", "--backup", "stellar_escrow_20250102_020000.sql.gz", env=env)
    assert missing.returncode == 2
    assert "looked for stellar_escrow_20250102_020000.sql.gz" in missing.stderr
    assert f"nearest: {LEGACY_NAME}" in missing.stderr or LEGACY_NAME in missing.stderr


def test_dr_restore_test_tests_a_root_legacy_backup_named_by_its_exact_key(
    airflow_db, ops, legacy_at_the_root
):
    ops.update(backup={"legacy_prefix": ""})
    outcome = run_dag("dr_restore_test", conf={"backup": LEGACY_NAME})
    assert outcome.state == "success", outcome.tasks
    assert outcome.xcom("resolve_backup")["location"] == LEGACY_NAME
    assert outcome.xcom("resolve_backup")["state"] == "legacy"


@pytest.fixture
def an_application_role(stack):
    """``CREATE ROLE app_reader_demo NOLOGIN; GRANT SELECT ON trades TO app_reader_demo`` on the demo DB."""
    with connect(stack.superuser) as conn:
        conn.execute("DROP ROLE IF EXISTS app_reader_demo")
        conn.execute("CREATE ROLE app_reader_demo NOLOGIN")
        conn.execute("GRANT SELECT ON trades TO app_reader_demo")
    try:
        yield "app_reader_demo"
    finally:
        with connect(stack.superuser) as conn:
            conn.execute("REVOKE SELECT ON trades FROM app_reader_demo")
            conn.execute("DROP ROLE app_reader_demo")


def test_a_grant_to_an_application_role_passes_the_drill(stack, ops, an_application_role):
    env = old_script_env(stack, ops)
    backed = cli("backup", "--slot", "2026-11-26T02:00:00Z", env=env)
    assert backed.returncode == 0, backed.stderr[-3000:]
    key = json.loads(backed.stdout)["key"]
    manifest = ops.store().get_json(key + ".manifest.json")
    assert manifest["format_version"] == 3 and manifest["globals_key"] == key + ".globals.sql"
    assert f"CREATE ROLE {an_application_role};" in ops.store().get_bytes(manifest["globals_key"]).decode()
    acl = manifest["schema"]["acls"]["public.trades"]
    assert any(entry.startswith(f"{an_application_role}=r/") for entry in acl[2])

    tested = cli("dr-test", "--backup", key, "--json", env=env)
    assert tested.returncode == 0, tested.stderr[-3000:]
    report = json.loads(tested.stdout)
    assert report["success"] is True, report["checks"]
    assert report["warnings"] == []
    assert report["rto_kind"] == "drill"
    assert report["restore"]["engine"] == "pg_restore"
    assert report["restore"]["server_settings"]["fsync"] == "off"
    assert "not" in report["restore"]["meaning"] or "longer" in report["restore"]["meaning"]
