"""Every procedure's DAG and its CLI command run the same steps: same results, same messages.

Each pair below is run against the stack, once through ``dag.test()`` and once as a
``stellar-ops`` process, and what they leave behind is compared field by field, apart from what
names the run (keys under each test's own prefix, run ids, times, sizes of the dump itself).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.support.dagrun import run_dag
from tests.support.faults import api_metrics

pytestmark = pytest.mark.integration

CLI = str(Path(sys.executable).parent / "stellar-ops")
SLOT = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)
# a manifest's fields that name the run, or measure this dump rather than the database
RUN_FIELDS = {
    "key",
    "snapshot_at",
    "note",  # names the snapshot's time: compared below with the numbers taken out
    "started_at",
    "finished_at",
    "duration_seconds",
    "dag_run_id",
    "size_bytes",
    "sha256",
    "uncompressed_bytes",
    "snapshot",
    "local_copy",
    "globals_key",
    "globals_sha256",  # pg_dumpall writes a random \\restrict key each time: compared below without it
    "globals_size_bytes",
    "verification",
}


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, env=env, timeout=600)


def cli_env(stack, ops, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_")}
    env.update(stack.env())
    env = {k: v for k, v in env.items() if not k.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_"))}
    env["STELLAR_OPS_CONFIG"] = json.dumps(ops.document)
    env.update(extra)
    return env


def normalised(text: str, prefix: str) -> str:
    """A message with what names the run taken out: the test's prefix, numbers, run ids."""
    if prefix:
        text = text.replace(prefix, "<prefix>/")
    text = re.sub(r"cli-\d+|manual__\S+|scheduled__\S+", "<run>", text)
    # a duration in words: "980 ms", "1 s", "4 min 19 s" are one duration whatever their units
    text = re.sub(r"\d+(\.\d+)? ?(ms|s|min|h|days?)\b( \d+(\.\d+)? ?(ms|s|min|h)\b)?", "<duration>", text)
    return re.sub(r"\d+(\.\d+)?", "<n>", text)


def manifest_of(ops, key: str) -> dict:
    return ops.store().get_json(key + ".manifest.json")


def test_db_backup_and_stellar_ops_backup_publish_the_same_backup_and_messages(
    airflow_db, stack, ops, receiver, canary_paused
):
    outcome = run_dag("db_backup", logical_date=SLOT)
    assert outcome.state == "success", outcome.tasks
    dag_key = outcome.xcom("publish_backup")["key"]
    dag_texts = receiver.texts()
    dag_metrics = [
        m for m in api_metrics(stack.url("api"), stack.admin_key) if m["payload"].get("source") == "db_backup"
    ]

    dag_prefix = ops.prefix
    ops.update(backup={"prefix": dag_prefix + "cli/"})
    receiver.clear()
    result = run_cli("backup", "--slot", SLOT.isoformat(), env=cli_env(stack, ops))
    assert result.returncode == 0, result.stderr[-3000:]
    cli_key = json.loads(result.stdout)["key"]
    cli_texts = receiver.texts()
    cli_metrics = [
        m for m in api_metrics(stack.url("api"), stack.admin_key) if m["payload"].get("source") == "db_backup"
    ]

    from_dag, from_cli = manifest_of(ops, dag_key), manifest_of(ops, cli_key)
    for key, manifest in ((dag_key, from_dag), (cli_key, from_cli)):  # each named by its snapshot
        snapshot_at = datetime.fromisoformat(manifest["snapshot_at"])
        assert key.rsplit("/", 1)[1] == f"stellar_escrow_{snapshot_at:%Y%m%dT%H%M%SZ}.dump.zst"
    assert datetime.fromisoformat(from_dag["slot"]) == datetime.fromisoformat(from_cli["slot"]) == SLOT
    assert normalised(from_dag["note"], "") == normalised(from_cli["note"], "")
    assert "not of its slot 2026-11-24 02:00:00 UTC" in from_dag["note"]
    assert set(from_dag) == set(from_cli)
    for field in sorted(set(from_dag) - RUN_FIELDS):
        assert from_dag[field] == from_cli[field], field
    assert from_dag["verification"]["checks"] == from_cli["verification"]["checks"]
    roles = [
        re.sub(r"^\\(un)?restrict \S+$", "", ops.store().get_bytes(m["globals_key"]).decode(), flags=re.M)
        for m in (from_dag, from_cli)
    ]
    assert roles[0] == roles[1] and "CREATE ROLE stellar;" in roles[0]
    assert from_dag["dag_run_id"] == outcome.run_id and from_cli["dag_run_id"] is None

    assert len(dag_texts) == len(cli_texts) == 1
    assert normalised(dag_texts[0], dag_prefix) == normalised(cli_texts[0], dag_prefix + "cli/")
    # the same metrics, posted under the same source, names and labels
    last_dag, last_cli = dag_metrics[-1]["payload"], cli_metrics[-1]["payload"]
    assert [(m["name"], m["labels"]) for m in last_dag["metrics"]] == [
        (m["name"], m["labels"]) for m in last_cli["metrics"]
    ]


def test_a_failing_step_sends_the_same_alert_from_the_dag_and_the_cli(
    airflow_db, stack, ops, receiver, monkeypatch
):
    bad = json.loads(stack.env()["AIRFLOW_CONN_STELLAR_DB"]) | {"password": "Wr0ng-Pass"}
    monkeypatch.setenv("AIRFLOW_CONN_STELLAR_DB", json.dumps(bad))
    outcome = run_dag("db_backup", logical_date=SLOT)
    assert outcome.state == "failed"
    (dag_alert,) = [t for t in receiver.texts() if "BackupFailed" in t]

    receiver.clear()
    url = stack.env()["DATABASE_URL"].replace(stack.db_password, "Wr0ng-Pass")
    result = run_cli("backup", "--slot", SLOT.isoformat(), env=cli_env(stack, ops, DATABASE_URL=url))
    assert result.returncode == 2
    (cli_alert,) = [t for t in receiver.texts() if "BackupFailed" in t]

    for alert in (dag_alert, cli_alert):
        assert "Wr0ng-Pass" not in alert
        assert "check_prerequisites failed" in alert and "password authentication failed" in alert
    # The DAG's alert comes after its last retry ("Try: 3 of 3"), the CLI's after its one try;
    # only a task has a log page to link.
    dag_lines = [line for line in dag_alert.splitlines() if not line.startswith("*Log:*")]
    assert dag_alert.splitlines()[-1].startswith("*Log:*")
    assert normalised("\n".join(dag_lines), ops.prefix) == normalised(cli_alert, ops.prefix)
    assert ops.objects() == []


def test_db_maintenance_and_stellar_ops_maintenance_report_the_same_tables(airflow_db, stack, ops):
    outcome = run_dag("db_maintenance", conf={"tables": ["public.trades", "public.events"]})
    assert outcome.state in ("success",), outcome.tasks
    dag_report = outcome.xcom("report_bloat")
    result = run_cli("maintenance", "--tables", "public.trades", "public.events", env=cli_env(stack, ops))
    assert result.returncode == 0, result.stderr[-2000:]
    assert dag_report["tables"] == 2
    for table in ("public.trades", "public.events"):
        assert f"VACUUM ANALYZE {table}" in result.stderr
        assert table in result.stderr


def test_dr_restore_test_and_stellar_ops_dr_test_report_the_same_verdicts(
    airflow_db, stack, ops, receiver, backup_key
):
    receiver.clear()
    outcome = run_dag("dr_restore_test", conf={"backup": backup_key})
    assert outcome.state == "success", outcome.tasks
    from_dag = ops.store().get_json(backup_key + ".dr_report.json")
    dag_texts = receiver.texts()

    receiver.clear()
    result = run_cli("dr-test", "--backup", backup_key, "--json", env=cli_env(stack, ops))
    assert result.returncode == 0, result.stderr[-3000:]
    from_cli = json.loads(result.stdout)
    assert ops.store().get_json(backup_key + ".dr_report.json") == from_cli

    assert set(from_dag) == set(from_cli)
    for field in (
        "success",
        "format_version",
        "manifest_sha256",
        "scratch_backend",
        "warnings",
        "failed_steps",
    ):
        assert from_dag[field] == from_cli[field], field
    assert [(c["check"], c["passed"], normalised(c["detail"], "")) for c in from_dag["checks"]] == [
        (c["check"], c["passed"], normalised(c["detail"], "")) for c in from_cli["checks"]
    ]
    drop = {"reference"}
    assert {k: v for k, v in from_dag["backup"].items() if k not in drop} == {
        k: v for k, v in from_cli["backup"].items() if k not in drop
    }
    assert [normalised(t, "") for t in dag_texts] == [normalised(t, "") for t in receiver.texts()]
