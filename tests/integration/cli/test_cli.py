"""``stellar-ops``: the procedures without Airflow, driven like the old cron scripts were."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.support.faults import gauge

pytestmark = pytest.mark.integration

CLI = str(Path(sys.executable).parent / "stellar-ops")
DEV_CLI = str(Path(sys.executable).parent / "stellar-dev")
REPO = Path(__file__).resolve().parents[3]


def cli(
    *args: str, env: dict[str, str] | None = None, check: bool = False, program: str = CLI
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [program, *args], capture_output=True, text=True, env=env or dict(os.environ), timeout=600
    )
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def old_script_env(stack, ops, **extra: str) -> dict[str, str]:
    """What the cron scripts exported, plus the prefix that keeps this test to itself."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_")}
    env.update(
        {
            "DATABASE_URL": stack.env()["DATABASE_URL"],
            "S3_BUCKET": "stellar-backups",
            "RETENTION_DAYS": "14",
            "BACKUP_ALERT_WEBHOOK": stack.webhook_url,
            "PUSHGATEWAY_URL": stack.url("pushgateway"),
            # the old scripts knew no point-in-time recovery: the drill's rehearsal of it stays off
            # (tests/integration/pitr/test_canary_rehearsal.py runs it from the CLI)
            "STELLAR_OPS_CONFIG": json.dumps(
                {"backup": {"prefix": ops.prefix}, "dr": {"pitr_rehearsal": "off"}}
            ),
        }
    )
    env.update(extra)
    return env


def test_backup_list_verify_and_dr_test_from_the_old_scripts_environment(stack, ops, receiver):
    env = old_script_env(stack, ops)
    result = cli("backup", "--slot", "2026-11-23T02:00:00Z", env=env, check=True)
    key = json.loads(result.stdout)["key"]
    manifest = ops.store().get_json(key + ".manifest.json")
    assert manifest["slot"] == "2026-11-23T02:00:00Z"
    snapshot_at = datetime.fromisoformat(manifest["snapshot_at"])
    assert key == ops.prefix + f"stellar_escrow_{snapshot_at:%Y%m%dT%H%M%SZ}.dump.zst"  # not the slot
    assert abs((datetime.now(UTC) - snapshot_at).total_seconds()) < 120
    assert "published s3://stellar-backups/" in result.stderr
    assert any(text.startswith(":white_check_mark: Backup OK") and key in text for text in receiver.texts())
    assert (
        gauge(stack.url("pushgateway"), "stellar_backup_success", job="stellar_ops", procedure="db_backup")
        == 1.0
    )

    listing = json.loads(cli("backups", "list", "--json", env=env, check=True).stdout)
    assert [(row["key"], row["state"], row["format"]) for row in listing] == [(key, "verified", "custom")]
    table = cli("backups", "list", env=env, check=True).stdout
    assert key in table and "verified" in table

    verified = json.loads(cli("backups", "verify", key, env=env, check=True).stdout)
    assert verified["verified"] is True and verified["state"] == "verified"

    report = json.loads(cli("dr-test", "--backup", key, "--json", env=env, check=True).stdout)
    assert report["success"] is True
    assert [c["check"] for c in report["checks"]] == ["row counts", "schema", "sanity queries"]
    assert any("DR test passed" in text for text in receiver.texts())

    again = cli("backup", "--slot", "2026-11-23T02:00:00Z", env=env, check=True)
    assert f"a verified backup covers slot 2026-11-23T02:00:00+00:00: {key}" in again.stderr
    assert "use --force" in again.stderr
    assert [row["key"] for row in json.loads(cli("backups", "list", "--json", env=env).stdout)] == [key]

    store = ops.store()
    data = bytearray(store.get_bytes(key))
    data[100] ^= 0xFF
    store.put_bytes(key, bytes(data))
    broken = cli("backups", "verify", key, env=env)
    assert broken.returncode == 2
    assert broken.stderr.startswith("stellar-ops: error: checksum mismatch")
    assert "Traceback" not in broken.stderr


def test_a_failed_backup_is_one_clear_line_and_an_alert_without_the_password(stack, ops, receiver):
    url = stack.env()["DATABASE_URL"].replace(stack.db_password, "N0t-The-Password")
    result = cli("backup", env=old_script_env(stack, ops, DATABASE_URL=url))
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if "stellar-ops: error:" in line]
    assert len(lines) == 1 and "password authentication failed" in lines[0]
    assert "Traceback" not in result.stderr
    assert "N0t-The-Password" not in result.stderr + result.stdout
    (alert,) = [t for t in receiver.texts() if "BackupFailed" in t]
    assert "N0t-The-Password" not in alert
    assert ops.objects() == []


def test_missing_database_url_says_how_to_set_it(stack, ops):
    env = old_script_env(stack, ops)
    del env["DATABASE_URL"]
    result = cli("backup", env=env)
    assert result.returncode == 2
    assert "DATABASE_URL is not set: export DATABASE_URL=postgresql://" in result.stderr


def test_dr_test_of_a_legacy_local_file(stack, ops, tmp_path):
    legacy = tmp_path / "stellar_escrow_20250101_020000.sql.gz"
    subprocess.run(
        f'pg_dump "$DATABASE_URL" | gzip > {legacy}',
        shell=True,
        check=True,
        env={**os.environ, "DATABASE_URL": stack.env()["DATABASE_URL"]},
    )
    result = cli("dr-test", "--backup", str(legacy), "--json", env=old_script_env(stack, ops), check=True)
    report = json.loads(result.stdout)
    assert report["success"] is True and report["backup"]["state"] == "legacy"
    assert "WARNING" in result.stderr and "exact verification is impossible" in result.stderr


def test_config_validate_names_the_bad_field(tmp_path):
    bad = tmp_path / "config.json"
    bad.write_text(json.dumps({"dr": {"restore_jobs": 0}}))
    result = cli("config", "validate", str(bad))
    assert result.returncode == 2
    assert "dr.restore_jobs: Input should be greater than or equal to 1" in result.stderr


def test_the_configuration_reference_is_current():
    generated = cli("config", "reference", check=True).stdout
    assert (REPO / "docs" / "configuration.md").read_text() == generated, "run `make docs`"


def test_airflow_settings_expand_the_stacks_environment(stack, tmp_path):
    env = {
        **os.environ,
        **stack.env(),
        "AIRFLOW__API__PORT": "8080",
        "STELLAR_OPS_USER_ADMIN_PASSWORD": "admin",
    }
    cli(
        "airflow-settings",
        str(REPO / "airflow_settings.yaml"),
        "--out",
        str(tmp_path),
        env=env,
        check=True,
        program=DEV_CLI,
    )
    connections = json.loads((tmp_path / "connections.json").read_text())
    assert connections["stellar_db"]["port"] == stack.ports["postgres"]
    assert connections["stellar_db"]["password"] == stack.db_password
    assert json.loads(connections["stellar_s3"]["extra"])["endpoint_url"] == stack.url("s3")
    assert connections["slack_alerts"]["password"] == stack.webhook_url
    assert connections["airflow_api"]["port"] == 8080 and connections["airflow_api"]["password"] == "admin"
    assert connections["stellar_pg_admin"]["password"] == stack.superuser_password
    assert set(json.loads((tmp_path / "pools.json").read_text())) == {"stellar_db_heavy"}
    config = json.loads(json.loads((tmp_path / "variables.json").read_text())["stellar_ops_config"])
    assert config["backup"]["local_dir"] == f"{stack.data_dir}/local-backups"
    assert oct((tmp_path / "connections.json").stat().st_mode & 0o777) == "0o600"
