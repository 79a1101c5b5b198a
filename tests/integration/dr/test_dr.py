"""dr_restore_test against the stack: a real restore into a scratch server, and every fault."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import psutil
import pytest

from stellar_ops.catalogue import source as backup_source
from stellar_ops.core.errors import BackupNotFoundError, VerificationError
from stellar_ops.dr.engine import restore, staging
from stellar_ops.postgres.binaries import find_binaries
from tests.support.dagrun import run_dag
from tests.support.faults import gauge

pytestmark = pytest.mark.integration


def scratch_leftovers(stack) -> tuple[list[str], list[int]]:
    """Scratch directories (and this process's archives staged in memory), and scratch servers."""
    work = Path(stack.data_dir) / "scratch"
    dirs = sorted(p.name for p in work.iterdir()) if work.exists() else []
    dirs += sorted(p.name for p in staging.MEMORY_DIR.glob(f"{staging.PREFIX}{staging.owner()}-*"))
    procs = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        # this stack's scratch servers only: their data directories are under its work dir
        if proc.info["name"] == "postgres" and "stellar-dr-" in cmdline and str(work) in cmdline:
            procs.append(proc.pid)
    return dirs, procs


def test_dr_test_restores_and_verifies_the_latest_backup(stack, ops, receiver, backup_key):
    receiver.clear()
    outcome = run_dag("dr_restore_test")
    assert outcome.state == "success", outcome.tasks
    assert set(outcome.tasks.values()) == {"success"}
    assert outcome.xcom("resolve_backup")["location"] == backup_key
    restored = outcome.xcom("restore_backup")
    manifest = ops.store().get_json(backup_key + ".manifest.json")
    # the observation waited in the bucket for the checks (XCom has where), and went with the report
    assert "observation" not in restored and restored["tables"] == len(manifest["row_counts"])
    assert restored["observation_at"].startswith(ops.prefix + ".incoming/")
    assert not ops.store().exists(restored["observation_at"])
    assert restored["rto_seconds"] > 0
    assert outcome.xcom("verify_row_counts")["passed"] is True
    assert outcome.xcom("verify_row_counts")["detail"].startswith(
        f"match: {len(manifest['row_counts'])} tables"
    )
    assert outcome.xcom("verify_schema")["detail"].endswith("fingerprint matches the manifest")

    report = ops.store().get_json(backup_key + ".dr_report.json")
    assert report["success"] is True
    assert report["rto_seconds"] == restored["rto_seconds"]
    assert [c["check"] for c in report["checks"]] == ["row counts", "schema", "sanity queries"]
    assert report["rpo_seconds"] > 0
    labels = {"job": "stellar_ops", "procedure": "dr_restore_test"}
    pushgateway = stack.url("pushgateway")
    assert gauge(pushgateway, "stellar_dr_test_success", **labels) == 1.0
    assert gauge(pushgateway, "stellar_dr_restore_seconds", **labels) == pytest.approx(
        restored["rto_seconds"]
    )
    assert gauge(pushgateway, "stellar_dr_backup_age_seconds", **labels) == pytest.approx(
        report["rpo_seconds"]
    )
    (summary,) = [t for t in receiver.texts() if "DR test" in t]
    assert summary.startswith(":white_check_mark: DR test passed")
    assert backup_key in summary
    assert scratch_leftovers(stack) == ([], [])


def flip_one_byte(store, key: str, where: float = 0.5) -> None:
    data = bytearray(store.get_bytes(key))
    data[int(len(data) * where)] ^= 0x01
    store.put_bytes(key, bytes(data))


def test_one_flipped_byte_fails_with_checksum_mismatch_before_any_restore(stack, ops, receiver, backup_key):
    flip_one_byte(ops.store(), backup_key)
    receiver.clear()
    outcome = run_dag("dr_restore_test")
    assert outcome.state == "failed"
    assert outcome.tasks["check_backup"] == "failed"
    assert outcome.tries["check_backup"] == 1, "a corrupt backup is not retried"
    assert outcome.tasks["create_scratch"] == "upstream_failed"
    assert outcome.tasks["restore_backup"] == "upstream_failed"
    (alert,) = [t for t in receiver.texts() if "DisasterRecoveryTestFailed" in t]
    assert "dr_restore_test.check_backup failed" in alert
    assert "checksum mismatch" in alert
    report = ops.store().get_json(backup_key + ".dr_report.json")
    assert report["success"] is False
    assert "check_backup" in report["failed_steps"]
    assert (
        gauge(
            stack.url("pushgateway"),
            "stellar_dr_test_success",
            job="stellar_ops",
            procedure="dr_restore_test",
        )
        == 0.0
    )


def test_a_truncated_object_fails(ops, backup_key):
    store = ops.store()
    data = store.get_bytes(backup_key)
    store.put_bytes(backup_key, data[: len(data) // 2])
    outcome = run_dag("dr_restore_test", conf={"backup": backup_key})
    assert outcome.state == "failed"
    assert outcome.tasks["check_backup"] == "failed"
    backup = backup_source.resolve(
        store, ops.prefix, backup_key, reference=datetime.now(UTC), month_scoped=False
    )
    with pytest.raises(VerificationError, match="size mismatch"):
        backup_source.check_backup(store, backup, backup_source.load_manifest(store, backup), find_binaries())


def test_a_manifest_row_count_that_differs_fails_naming_the_table_and_both_counts(
    stack, ops, receiver, backup_key
):
    store = ops.store()
    manifest = store.get_json(backup_key + ".manifest.json")
    real = manifest["row_counts"]["public.trades"]
    manifest["row_counts"]["public.trades"] = real + 7
    store.put_json(backup_key + ".manifest.json", manifest)
    receiver.clear()
    outcome = run_dag("dr_restore_test")
    assert outcome.state == "failed"
    assert outcome.tasks["verify_row_counts"] == "failed"
    assert outcome.tasks["verify_schema"] == "success"
    assert outcome.tasks["drop_scratch"] == "success"
    (alert,) = [t for t in receiver.texts() if "DisasterRecoveryTestFailed" in t]
    assert "verify_row_counts" in alert
    assert f"public.trades: restored {real} rows, manifest says {real + 7}" in alert
    assert scratch_leftovers(stack) == ([], [])


def test_a_nonexistent_key_lists_the_nearest_keys(ops, backup_key):
    missing = ops.prefix + "stellar_escrow_20261122T030000Z.dump.zst"
    with pytest.raises(BackupNotFoundError) as error:
        backup_source.resolve(
            ops.store(), ops.prefix, missing, reference=datetime.now(UTC), month_scoped=False
        )
    assert f"backup {missing!r} does not exist (looked for {missing}" in str(error.value)
    assert f"; nearest: {backup_key}" in str(error.value)
    outcome = run_dag("dr_restore_test", conf={"backup": missing})
    assert outcome.state == "failed"
    assert outcome.tasks["resolve_backup"] == "failed"
    assert outcome.tries["resolve_backup"] == 1


def test_a_scratch_server_that_cannot_start_is_still_torn_down(stack, ops, backup_key):
    ops.update(dr={"scratch_settings": {"no_such_setting": "1"}})
    outcome = run_dag("dr_restore_test")
    assert outcome.state == "failed"
    assert outcome.tasks["restore_backup"] == "failed"
    assert outcome.tasks["drop_scratch"] == "success", "the teardown ran"
    assert outcome.tasks["publish_report"] == "success"
    assert scratch_leftovers(stack) == ([], []), "no directory and no process left behind"


def test_a_legacy_pg_dump_gzip_backup_restores_and_passes(stack, ops, tmp_path, airflow_db):
    legacy = tmp_path / "legacy.sql.gz"
    # exactly what the old cron script ran
    subprocess.run(
        f'pg_dump "$DATABASE_URL" | gzip > {legacy}',
        shell=True,
        check=True,
        env={"DATABASE_URL": stack.env()["DATABASE_URL"], "PATH": "/usr/bin:/bin"},
    )
    key = ops.prefix + "stellar_escrow_20250301_020000.sql.gz"
    ops.store().put_bytes(key, legacy.read_bytes())
    outcome = run_dag("dr_restore_test", conf={"backup": key})
    assert outcome.state == "success", outcome.tasks
    assert outcome.xcom("resolve_backup")["state"] == "legacy"
    assert "exact verification is impossible" in outcome.xcom("check_backup")["warnings"][0]
    assert "legacy backup" in outcome.xcom("verify_row_counts")["detail"]
    report = ops.store().get_json(key + ".dr_report.json")
    assert report["success"] is True
    assert report["warnings"]


def test_a_legacy_backup_whose_pg_dump_died_is_caught(stack, ops):
    body = gzip.compress(
        b"--\n-- PostgreSQL database dump\n--\nCREATE TABLE trades (id int);\nCOPY trades (id) FROM stdin;\n1\n"
    )
    key = ops.prefix + "stellar_escrow_20250302_020000.sql.gz"
    ops.store().put_bytes(key, body)
    backup = backup_source.resolve(
        ops.store(), ops.prefix, key, reference=datetime.now(UTC), month_scoped=False
    )
    with pytest.raises(VerificationError, match="completion trailer is missing"):
        backup_source.check_backup(ops.store(), backup, None, find_binaries())


def test_a_local_backup_path_is_tested_and_reported_beside_it(stack, ops, backup_key):
    local = ops.local_dir / backup_key.rsplit("/", 1)[-1]
    (ops.local_dir / (local.name + ".manifest.json")).write_text(
        json.dumps(ops.store().get_json(backup_key + ".manifest.json"))
    )
    outcome = run_dag("dr_restore_test", conf={"backup": str(local)})
    assert outcome.state == "success", outcome.tasks
    assert outcome.xcom("resolve_backup")["source"] == "local"
    assert json.loads((ops.local_dir / (local.name + ".dr_report.json")).read_text())["success"] is True


def seed_backup(store, prefix: str, stamp: str) -> str:
    key = f"{prefix}stellar_escrow_{stamp}.dump.zst"
    store.put_bytes(key, b"x")
    store.put_json(key + ".manifest.json", {"key": key})
    return key


def test_latest_for_a_month_is_the_newest_backup_before_the_months_end(ops):
    store = ops.store()
    jan = seed_backup(store, ops.prefix, "20260115T020000Z")
    jan_end = seed_backup(store, ops.prefix, "20260131T020000Z")
    feb = seed_backup(store, ops.prefix, "20260201T020000Z")
    store.put_bytes(ops.prefix + "stellar_escrow_20260131T230000Z.dump.zst", b"unverified: no manifest")

    def pick(reference: datetime, scoped: bool = True) -> str:
        return backup_source.resolve(
            store, ops.prefix, "latest", reference=reference, month_scoped=scoped
        ).location

    assert pick(datetime(2026, 1, 1, 4, tzinfo=UTC)) == jan_end
    assert pick(datetime(2026, 2, 1, 4, tzinfo=UTC)) == feb
    assert pick(datetime(2026, 1, 20, tzinfo=UTC), scoped=False) == feb
    with pytest.raises(BackupNotFoundError, match="no restorable backup taken before 2026-01-01"):
        pick(datetime(2025, 12, 1, 4, tzinfo=UTC))
    assert jan


@pytest.mark.parametrize("where", [0.1, 0.5, 0.9])
def test_the_restore_rechecks_the_object_it_restores(stack, ops, backup_key, server_dir, where):
    """check_backup gates the DAG; the restore's own download is checked again, end to end."""
    from stellar_ops.core.processes import unprivileged_user
    from stellar_ops.postgres.server import LocalPgServer

    store = ops.store()
    backup = backup_source.resolve(
        store, ops.prefix, backup_key, reference=datetime.now(UTC), month_scoped=False
    )
    manifest = backup_source.load_manifest(store, backup)
    flip_one_byte(store, backup_key, where)
    server = LocalPgServer(server_dir / "pg", run_as=unprivileged_user("postgres"))
    server.init()
    server.start()
    try:
        # whatever the garbled byte does downstream, the report is the root cause
        with pytest.raises(VerificationError, match="checksum mismatch"):
            restore.recover(
                restore.RestoreJob(backup, store, manifest, server.target(), find_binaries()), server_dir
            )
        assert scratch_leftovers(stack)[0] == [], "the staged archive is removed after a failure"
    finally:
        server.remove()


def test_a_failing_statement_fails_the_restore_and_is_quoted(airflow_db, stack, ops):
    dump = subprocess.run(
        ["pg_dump", "--format=plain"], capture_output=True, env=stack.db.client_env(), check=True
    ).stdout
    broken = dump.replace(
        b"CREATE TABLE public.trades (",
        b"CREATE TABLE public.trades (no_such_type_here pg_nonexistent_type, ",
        1,
    )
    assert broken != dump
    key = ops.prefix + "stellar_escrow_20250303_020000.sql.gz"
    ops.store().put_bytes(key, gzip.compress(broken))
    outcome = run_dag("dr_restore_test", conf={"backup": key})
    assert outcome.state == "failed"
    assert outcome.tasks["check_backup"] == "success"
    assert outcome.tasks["restore_backup"] == "failed"
    assert outcome.tasks["drop_scratch"] == "success"
    backup = backup_source.resolve(
        ops.store(), ops.prefix, key, reference=datetime.now(UTC), month_scoped=False
    )
    from stellar_ops.core.errors import RestoreError
    from stellar_ops.core.processes import unprivileged_user
    from stellar_ops.postgres.server import LocalPgServer

    tmp = Path(tempfile.mkdtemp(prefix="stellar-test-restore-"))
    tmp.chmod(0o755)
    server = LocalPgServer(tmp / "pg", run_as=unprivileged_user("postgres"))
    server.init()
    server.start()
    try:
        with pytest.raises(RestoreError) as error:
            restore.recover(
                restore.RestoreJob(backup, ops.store(), None, server.target(), find_binaries()), tmp
            )
    finally:
        server.remove()
        shutil.rmtree(tmp, ignore_errors=True)
    message = str(error.value)
    assert "psql stopped at the first failing statement" in message
    assert 'type "pg_nonexistent_type" does not exist' in message
    assert "CREATE TABLE public.trades" in message
