"""Point-in-time recovery, end to end, on the stack's database at one size:

- the base backup (``stellar-ops pitr base-backup``, the whole command) against its floor,
  ``pg_basebackup -Ft -D - -X none > /dev/null`` over the same replication connection;
- one hour of a steady write workload (50 transactions a second: 180,000 single-row commits of
  ``pgbench``, written as fast as the server takes them, because replay depends on the WAL, not on
  the hour it took), with the archive lag sampled all along: the recovery point actually reached;
- the recovery of that base backup plus the workload's WAL into a new data directory
  (``stellar-ops restore --target-time latest --data-dir``, the whole command) against the logical
  restore of the same database measured by bench/restore.py in the same run (without the
  workload's rows, a few MiB: the comparison flatters the logical route, if anything).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from bench import end_to_end
from bench.report import table
from stellar_ops.postgres.target import PgTarget, connect
from stellar_ops_dev.stack import StackInfo

BIN = end_to_end.BIN
TRANSACTIONS_PER_SECOND = 50
WORKLOAD_SECONDS = 3600
WORKLOAD_SQL = (
    "\\set account random(1, 100000)\n"
    "INSERT INTO bench_pitr_writes (account, amount) VALUES (:account, random() * 1000);\n"
)


def _cli_env(info: StackInfo, prefix: str) -> dict[str, str]:
    env = {k: v for k, v in {**os.environ, **info.env()}.items() if not k.startswith("AIRFLOW_")}
    config = info.ops_config()
    config["backup"] = {**config["backup"], "prefix": prefix, "notify_on_success": False}
    # pitr.prefix stays the archive's: a base backup reads its stop point from the archived WAL
    env["STELLAR_OPS_CONFIG"] = json.dumps(config)
    return env


def _timed(argv: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=3 * 3600)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:3])} failed: {done.stderr[-3000:]}")
    return seconds, done.stdout


def _floor(superuser: PgTarget) -> float:
    started = time.perf_counter()
    subprocess.run(
        ["bash", "-o", "pipefail", "-c", "pg_basebackup -Ft -D - -X none -c fast > /dev/null"],
        env={**os.environ, **superuser.with_dbname("postgres").client_env()},
        check=True,
        timeout=3600,
    )
    return time.perf_counter() - started


class _LagSampler:
    """Every half second: how old the oldest WAL not yet archived is (its segment's first sight)."""

    def __init__(self, superuser: PgTarget) -> None:
        self.superuser = superuser
        self.samples: list[float] = []
        self.first_seen: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="archive-lag", daemon=True)

    def __enter__(self) -> _LagSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        with connect(self.superuser) as conn:
            conn.autocommit = True
            while not self._stop.wait(0.5):
                current, archived = conn.execute(
                    "SELECT pg_walfile_name(pg_current_wal_lsn()), last_archived_wal FROM pg_stat_archiver"
                ).fetchone()
                now = time.monotonic()
                self.first_seen.setdefault(current, now)
                waiting = [
                    seen for name, seen in self.first_seen.items() if archived is None or name > archived
                ]
                # the oldest segment not archived began when it was first seen: its data is at risk
                self.samples.append(now - min(waiting) if waiting else 0.0)


def run(info: StackInfo, label: str, work: Path, logical_rto: float) -> dict[str, Any]:
    prefix = f"bench/{label}/pitr/"
    env = _cli_env(info, prefix)
    superuser = info.superuser

    floors, ours = [], []
    for _ in range(2):  # alternating, each keeps its best run
        floors.append(_floor(superuser))
        seconds, _ = _timed([str(BIN / "stellar-ops"), "pitr", "base-backup"], env)
        ours.append(seconds)

    with connect(info.db) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS bench_pitr_writes (id bigserial PRIMARY KEY, account int NOT NULL,"
            " amount numeric(12, 2) NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())"
        )
        conn.commit()
    script = work / "pitr-workload.sql"
    script.write_text(WORKLOAD_SQL)
    transactions = TRANSACTIONS_PER_SECOND * WORKLOAD_SECONDS
    wal_before = _wal_lsn(superuser)
    with _LagSampler(superuser) as lag:
        workload_seconds, _ = _timed(
            ["pgbench", "-n", "-c", "4", "-j", "2", "-t", str(transactions // 4), "-f", str(script)],
            {**os.environ, **info.db.client_env()},
        )
        _switch_and_wait(superuser)
    wal_bytes = _wal_lsn(superuser) - wal_before

    data_dir = work / f"pitr-{label}"
    shutil.rmtree(data_dir, ignore_errors=True)
    pitr_seconds, out = _timed(
        [
            str(BIN / "stellar-ops"),
            "restore",
            "--target-time",
            "latest",
            "--data-dir",
            str(data_dir),
            "--yes",
            "--json",
        ],
        env,
    )
    report = json.loads(out)
    shutil.rmtree(data_dir, ignore_errors=True)

    table(
        f"Point-in-time recovery at {label}",
        ["what", "time", "vs"],
        [
            ["pg_basebackup -Ft -D - > /dev/null (floor), best of 2", f"{min(floors):.2f}s", "1.00x"],
            [
                "stellar-ops pitr base-backup (to S3, verified, retention), best of 2",
                f"{min(ours):.2f}s",
                f"{min(ours) / min(floors):.2f}x the floor",
            ],
            [
                f"workload: {transactions} commits ({WORKLOAD_SECONDS // 60} min at "
                f"{TRANSACTIONS_PER_SECOND}/s), {wal_bytes / 2**20:.0f} MiB of WAL",
                f"{workload_seconds:.2f}s",
                "",
            ],
            [
                "stellar-ops restore --target-time latest --data-dir (base backup + that WAL)",
                f"{pitr_seconds:.2f}s",
                "1.00x",
            ],
            [
                "logical restore of the same database (bench/restore.py, this run)",
                f"{logical_rto:.2f}s",
                f"{logical_rto / pitr_seconds:.2f}x the recovery",
            ],
        ],
    )
    worst = max(lag.samples, default=0.0)
    print(
        f"  archive lag under the workload (the RPO reached): median "
        f"{statistics.median(lag.samples or [0.0]):.1f}s, worst {worst:.1f}s over {len(lag.samples)} samples;"
        f" recovery replayed {report.get('wal_segments_replayed')} segments"
        f" (fetch {report.get('fetch_seconds', 0):.1f}s, replay {report.get('replay_seconds', 0):.1f}s)"
    )
    return {
        "base_backup_floor_seconds": min(floors),
        "base_backup_seconds": min(ours),
        "base_backup_vs_floor": min(ours) / min(floors),
        "workload_transactions": transactions,
        "workload_wal_bytes": wal_bytes,
        "pitr_seconds": pitr_seconds,
        "pitr_report": report,
        "logical_restore_seconds": logical_rto,
        "logical_vs_pitr": logical_rto / pitr_seconds,
        "archive_lag_median_seconds": statistics.median(lag.samples or [0.0]),
        "archive_lag_worst_seconds": worst,
    }


def _wal_lsn(superuser: PgTarget) -> int:
    with connect(superuser) as conn:
        return int(conn.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()[0])


def _switch_and_wait(superuser: PgTarget, timeout: float = 600) -> None:
    with connect(superuser) as conn:
        conn.autocommit = True
        segment = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()[0]
        deadline = time.monotonic() + timeout
        while True:
            archived = conn.execute("SELECT last_archived_wal FROM pg_stat_archiver").fetchone()[0]
            if archived is not None and archived >= segment:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"WAL segment {segment} was not archived within {timeout:g}s")
            time.sleep(0.5)
