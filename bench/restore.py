"""Restore: dr_restore_test's restore (download, pg_restore -j) against the old gunzip | psql."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

from bench.report import table, verdict
from stellar_ops import restore
from stellar_ops.backup import BackupJob, verify_upload
from stellar_ops.config import parse_config
from stellar_ops.devstack.stack import StackInfo
from stellar_ops.pg import connect, find_binaries
from stellar_ops.restore import ResolvedBackup
from stellar_ops.s3store import S3Store
from stellar_ops.scratch import LocalScratch, scratch_name

MIB = 1 << 20


def _scratch(work: Path) -> LocalScratch:
    return LocalScratch(name=scratch_name("bench"), work_dir=work, binaries=find_binaries())


def run(info: StackInfo, label: str, backup: dict[str, Any], work: Path, jobs: int = 2) -> dict[str, Any]:
    binaries = find_binaries()
    store = S3Store(info.s3_client(), "stellar-backups")
    config = parse_config({"backup": {"prefix": backup["draft"]["key"].rsplit("/", 1)[0] + "/"}})
    job = BackupJob(info.db, store, config.backup, binaries)
    manifest = job.publish(backup["draft"], verify_upload(store, backup["draft"], binaries))
    ours_backup = ResolvedBackup("s3", manifest.key, "custom", manifest.slot.isoformat(), "verified")

    fetch_dir = work / f"fetch-{label}"
    fetch_dir.mkdir()
    with _scratch(work).running() as server:
        started = time.perf_counter()
        path = restore.fetch(store, ours_backup, manifest, fetch_dir)
        result = restore.restore(server.target(), path, "custom", jobs=jobs, binaries=binaries)
        ours = time.perf_counter() - started
        with connect(server.target(restore.RESTORED_DB)) as conn:
            trades = conn.execute("SELECT count(*) FROM trades").fetchone()[0]
    path.unlink()

    old_key = f"bench/{label}/old/stellar_escrow_20260101_020000.sql.gz"
    old_file = work / f"download-{label}.sql.gz"
    with _scratch(work).running() as server:
        target = server.target()
        with connect(target) as conn:
            conn.execute("CREATE ROLE stellar NOLOGIN")
            conn.execute("CREATE DATABASE stellar_escrow")
        started = time.perf_counter()
        store.client.download_file("stellar-backups", old_key, str(old_file))
        subprocess.run(
            [
                "bash",
                "-o",
                "pipefail",
                "-c",
                f"gunzip -c {old_file} | psql -X -q -v ON_ERROR_STOP=1 -d stellar_escrow > /dev/null",
            ],
            env=target.with_dbname("stellar_escrow").client_env(),
            check=True,
        )
        old = time.perf_counter() - started
    old_file.unlink()

    table(
        f"Restore at {label} (into a fresh scratch server with the DR test's settings)",
        ["route", "RTO (download + restore)", "vs ours"],
        [
            [
                f"dr_restore_test: zstd, pg_restore -j {jobs}",
                f"{ours:.2f}s (restore {result.seconds:.2f}s)",
                "1.00x",
            ],
            ["old: gunzip | psql", f"{old:.2f}s", f"{old / ours:.2f}x"],
        ],
    )
    print(verdict("  old / ours", old / ours, ">= 1.5", old / ours >= 1.5))
    return {"ours_rto_seconds": ours, "old_seconds": old, "speedup": old / ours, "restored_trades": trades}
