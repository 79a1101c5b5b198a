"""Where a restore stages the decompressed archive it downloads: in memory when it surely fits.

The archive is written once, read by pg_restore and deleted, so on a tmpfs it costs no
filesystem work. It goes there only if it takes at most a quarter of the free space; otherwise
in the DR work directory. Each directory is named after its host and process, so a
later restore removes what a killed one left behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

from stellar_ops.core.processes import pid_alive

MEMORY_DIR = Path("/dev/shm")
PREFIX = "stellar-dr-staged-"
SHARE_OF_FREE = 4  # in memory only what takes at most 1/4 of the free space there


@contextlib.contextmanager
def staging_dir(work_dir: Path, expected_bytes: int | None, memory_dir: Path | None) -> Iterator[Path]:
    """A fresh directory for the archive, removed at the end; in ``memory_dir`` if it fits."""
    parent = memory_dir if memory_dir is not None and fits(memory_dir, expected_bytes) else work_dir
    remove_orphans(parent)
    path = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{owner()}-", dir=parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def fits(memory_dir: Path, expected_bytes: int | None) -> bool:
    """Whether ``expected_bytes`` (unknown: no) take at most a quarter of ``memory_dir``'s free space."""
    if expected_bytes is None or not os.access(memory_dir, os.W_OK | os.X_OK):
        return False
    try:
        free = shutil.disk_usage(memory_dir).free
    except OSError:
        return False
    return expected_bytes <= free // SHARE_OF_FREE


def remove_orphans(parent: Path) -> list[Path]:
    """Remove this host's staging directories whose process is gone; what was removed."""
    mine = f"{PREFIX}{_host()}-"
    removed = []
    for path in parent.glob(f"{mine}*"):
        pid = path.name[len(mine) :].split("-", 1)[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def owner(pid: int | None = None) -> str:
    """What names a staging directory's process: ``<host>-<pid>``."""
    return f"{_host()}-{os.getpid() if pid is None else pid}"


def _host() -> str:
    return "".join(c if c.isalnum() else "_" for c in socket.gethostname())[:40] or "host"
