"""The stack's PostgreSQL archives its WAL to the stack's S3 with barman-cloud: a written and closed
segment lands under the archive prefix, compressed and encrypted, with no failure; the morning
health check's ``wal_archive`` is green because of it (``pitr.required`` as the stack's config
sets it), and red, P1 WalArchiveFailing, while the S3 server is down, until archiving catches up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from stellar_ops.cli.env import runtime
from stellar_ops.health import flow
from stellar_ops.postgres.target import connect

pytestmark = pytest.mark.integration

CLI = str(Path(sys.executable).parent / "stellar-ops")
BUCKET = "stellar-backups"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def _archiver(stack) -> dict[str, object]:
    with connect(stack.superuser) as conn:
        row = conn.execute(
            "SELECT archived_count, last_archived_wal, failed_count, last_failed_wal FROM pg_stat_archiver"
        ).fetchone()
    return dict(
        zip(("archived_count", "last_archived_wal", "failed_count", "last_failed_wal"), row, strict=True)
    )


def _write_and_switch(stack) -> str:
    """Some writes, then close their segment; the segment's name. In the postgres database: a table of
    the superuser's in the application's database would fail every later backup by its role."""
    with connect(stack.superuser.with_dbname("postgres")) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS pitr_churn (n int, at timestamptz DEFAULT now())")
        conn.execute("INSERT INTO pitr_churn (n) SELECT generate_series(1, 5000)")
        conn.commit()
        return str(conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()[0])


def _wait(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:g}s for {what}")
        time.sleep(0.25)


def _archived(stack, segment: str) -> bool:
    last = _archiver(stack)["last_archived_wal"]
    return last is not None and str(last) >= segment


def _segment_key(stack, segment: str) -> str:
    # barman-cloud's layout: <prefix>/<server>/wals/<timeline + log>/<segment>.zst
    return f"{stack.wal_prefix}{segment[:16]}/{segment}.zst"


def test_a_closed_segment_lands_under_the_archive_prefix_compressed_and_encrypted(stack):
    failed_before = _archiver(stack)["failed_count"]
    segment = _write_and_switch(stack)
    client = stack.s3_client()
    key = _segment_key(stack, segment)

    def listed() -> bool:
        page = client.list_objects_v2(Bucket=BUCKET, Prefix=f"{stack.wal_prefix}{segment[:16]}/")
        return key in {o["Key"] for o in page.get("Contents", [])}

    _wait(listed, f"{key} in the bucket")
    _wait(lambda: _archived(stack, segment), f"{segment} in pg_stat_archiver")
    assert _archiver(stack)["failed_count"] == failed_before

    head = client.head_object(Bucket=BUCKET, Key=key)
    assert head["ServerSideEncryption"] == "AES256"
    body = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    assert body[:4] == ZSTD_MAGIC
    assert 0 < len(body) < 16 * 1024 * 1024  # a 16 MiB segment, compressed


def test_the_credentials_reach_barman_through_the_environment_only(stack):
    with connect(stack.superuser) as conn:
        settings = dict(
            conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN "
                "('archive_mode', 'archive_command', 'archive_timeout', 'wal_level')"
            ).fetchall()
        )
    assert settings["archive_mode"] == "on" and settings["wal_level"] == "replica"
    assert settings["archive_timeout"] == "60"
    command = settings["archive_command"]
    assert "barman-cloud-wal-archive" in command and f"--endpoint-url {stack.url('s3')}" in command
    assert "--zstd" in command and "-e AES256" in command
    assert command.endswith(f"{stack.wal_archive_url} stellar %p")
    conf = (Path(stack.data_dir) / "postgres" / "data" / "postgresql.auto.conf").read_text()
    for secret in (stack.s3_secret_key, stack.s3_access_key):
        assert secret not in command
    assert stack.s3_secret_key not in conf


def test_the_morning_check_is_green_because_archiving_works(ops, stack):
    ops.update(pitr=stack.ops_config()["pitr"])
    assert ops.config.pitr.required is True
    segment = _write_and_switch(stack)
    _wait(lambda: _archived(stack, segment), f"{segment} archived")

    result = flow.check(runtime(), "wal_archive")
    assert result.status == "ok", result.detail
    assert result.alert is None
    item = result.items[0]
    assert item["archive_mode"] == "on" and item["failing"] is False
    assert item["last_archived_wal"] >= segment

    cli = subprocess.run(
        [CLI, "health", "--check", "wal_archive", "--json"],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=300,
    )
    assert cli.returncode == 0, cli.stdout + cli.stderr
    [checked] = json.loads(cli.stdout)["checks"]
    assert (checked["name"], checked["status"]) == ("wal_archive", "ok"), checked


def test_the_morning_check_is_red_while_the_archive_is_unreachable(ops, stack, stack_handle):
    ops.update(pitr=stack.ops_config()["pitr"])
    failed_before = int(_archiver(stack)["failed_count"])
    stack_handle.stop_s3()
    try:
        segment = _write_and_switch(stack)
        _wait(lambda: int(_archiver(stack)["failed_count"]) > failed_before, "a failed archive_command")
        broken = flow.check(runtime(), "wal_archive")
    finally:
        stack_handle.start_s3()
    assert broken.status == "critical", broken.detail
    assert broken.alert is not None and (broken.alert.name, broken.alert.severity) == (
        "WalArchiveFailing",
        "P1",
    )
    assert broken.detail.startswith(f"archiving fails: {segment} failed "), broken.detail

    # the server back: the next segment wakes the archiver, which pushes what waited, in order
    following = _write_and_switch(stack)
    _wait(lambda: _archived(stack, following), f"{segment} and {following} archived", timeout=120)
    head = stack.s3_client().head_object(Bucket=BUCKET, Key=_segment_key(stack, segment))
    assert head["ContentLength"] > 0
    assert flow.check(runtime(), "wal_archive").status == "ok"
