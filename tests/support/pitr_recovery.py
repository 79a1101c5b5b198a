"""Helpers of the point-in-time recovery tests: a base backup of the stack's PostgreSQL taken by the
package itself (:func:`stellar_ops.pitr.base_backup.take_base_backup`), closing and awaiting a WAL
segment, and a copy of the archive and that base backup under another prefix and server name (so a
test may damage its copy, never the stack's real archive)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from stellar_ops.pitr import layout
from stellar_ops.pitr.base_backup import take_base_backup
from stellar_ops.pitr.layout import BaseBackupRecord
from stellar_ops.pitr.recovery import WalArchive, s3_access
from stellar_ops.postgres.pitr import PitrConfig
from stellar_ops.postgres.target import connect
from stellar_ops.storage.s3 import S3Store


def wait_archived(stack, timeout: float = 120.0) -> str:
    """Close the current WAL segment and wait until it is archived; its name."""
    with connect(stack.superuser) as conn:
        segment = str(conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()[0])
        deadline = time.monotonic() + timeout
        while True:
            last = conn.execute("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver").fetchone()[0]
            if str(last) >= segment:
                return segment
            assert time.monotonic() < deadline, f"{segment} not archived within {timeout:g}s"
            time.sleep(0.25)


def archive_copy(
    stack, store: S3Store, record: BaseBackupRecord, base_prefix: str, prefix: str, server: str
) -> None:
    """The stack's archive (from the base backup's first segment on) and ``record``'s base backup
    copied to ``<prefix>/<server>/``."""
    source = f"{stack.wal_prefix}"
    start = layout.parse_segment(record.start_wal).position
    for item in store.list_objects(source):
        wal = layout.parse_wal_key(item.key)
        if wal is None or (wal.position is not None and wal.position < start):
            continue
        store.copy(item.key, layout.wal_root(prefix, server) + item.key[len(source) :])
    for name in (layout.TAR_NAME, layout.RECORD_NAME):
        store.copy(
            f"{layout.base_root(base_prefix, record.server)}{record.backup_id}/{name}",
            f"{layout.base_root(prefix, server)}{record.backup_id}/{name}",
        )


# -- what a test module's fixtures make (each module under its own prefix) --------------------------

REPO = Path(__file__).resolve().parents[2]
BUCKET = "stellar-backups"
TABLE = "pitr_recovery_rows"
TOOLS_DIR = REPO / ".pitr-venv" / "bin"


@dataclass(frozen=True)
class Written:
    """Rows committed one by one; ``before[i]``/``after[i]`` bracket row i's commit."""

    ids: list[int]
    before: list[datetime]
    after: list[datetime]

    def between(self, k: int) -> datetime:
        """A moment after row ``k`` committed and before row ``k + 1`` did."""
        return self.after[k] + (self.before[k + 1] - self.after[k]) / 2


def write_rows(stack, first: int, count: int) -> Written:
    """As the application's role, into the application database, each row its own transaction."""
    ids, before, after = [], [], []
    with connect(stack.db) as conn:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (id int PRIMARY KEY)")
        for n in range(first, first + count):
            before.append(conn.execute("SELECT clock_timestamp()").fetchone()[0])
            conn.execute(f"INSERT INTO {TABLE} VALUES (%s)", (n,))  # autocommit: committed here
            after.append(conn.execute("SELECT clock_timestamp()").fetchone()[0])
            ids.append(n)
            time.sleep(0.3)
    return Written(ids, before, after)


@dataclass(frozen=True)
class History:
    record: BaseBackupRecord
    first: Written  # in the segment after the base backup's
    second: Written  # in the segment after that
    middle_segment: str  # the segment that holds ``first``
    root: str  # the module's prefix: <root>/pitr/<server>/ are its archive copies


def make_history(stack, pitr_root: str) -> History:
    """A base backup beside the stack's archive (removed again by :func:`make_copies`, once copied),
    then rows in two segments, each archived."""
    store = S3Store(stack.s3_client(), BUCKET, encryption="AES256")
    with connect(stack.db) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
    record = take_base_backup(stack.superuser, store, PitrConfig())
    first = write_rows(stack, 1, 4)
    middle = wait_archived(stack)
    second = write_rows(stack, 5, 4)
    wait_archived(stack)
    return History(record, first, second, middle, pitr_root)


def wal_archive_of(store: S3Store, prefix: str, server: str) -> WalArchive:
    endpoint, environment = s3_access(store.client)
    return WalArchive(
        store,
        prefix,
        server,
        restore_program=str(TOOLS_DIR / "barman-cloud-wal-restore"),
        endpoint_url=endpoint,
        environment=environment,
    )


def make_copies(stack, history: History) -> Iterator[dict[str, WalArchive]]:
    """``whole``: the archive as it is; ``holed``: without the segment that holds ``first``."""
    store = S3Store(stack.s3_client(), BUCKET, encryption="AES256")
    root = history.root
    made = {}
    source = PitrConfig()
    for server in ("whole", "holed"):
        archive_copy(stack, store, history.record, source.prefix, f"{root}/pitr", server)
        made[server] = wal_archive_of(store, f"{root}/pitr", server)
    # the original leaves the stack's archive: later tests see only the base backups they take
    for name in (layout.RECORD_NAME, layout.TAR_NAME):
        store.delete(
            f"{layout.base_root(source.prefix, source.server_name)}{history.record.backup_id}/{name}"
        )
    middle = history.middle_segment
    store.delete(f"{root}/pitr/holed/wals/{middle[:16]}/{middle}.zst")
    yield made
    for item in list(store.list_objects(f"{root}/")):
        store.delete(item.key)
