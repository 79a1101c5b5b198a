"""Where a restore stages the archive it downloads: in memory when it fits, and never left behind."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from stellar_ops.dr.engine import staging


def test_an_archive_that_takes_at_most_a_quarter_of_the_free_space_fits(tmp_path):
    free = shutil.disk_usage(tmp_path).free
    assert staging.fits(tmp_path, free // 4)
    assert not staging.fits(tmp_path, free // 4 + 1)
    assert not staging.fits(tmp_path, None)  # no manifest: its size is unknown
    assert not staging.fits(tmp_path / "missing", 1)


def test_the_archive_goes_to_memory_when_it_fits_else_to_the_work_dir_and_is_removed(tmp_path):
    memory, work = tmp_path / "memory", tmp_path / "work"
    memory.mkdir()
    work.mkdir()
    with staging.staging_dir(work, 1 << 20, memory) as path:
        assert path.parent == memory and path.name.startswith(f"{staging.PREFIX}{staging.owner()}-")
        (path / "data.sql").write_bytes(b"x")
    assert list(memory.iterdir()) == []
    with staging.staging_dir(work, shutil.disk_usage(memory).free, memory) as path:
        assert path.parent == work
    with staging.staging_dir(work, 1 << 20, None) as path:
        assert path.parent == work

    def failing_load() -> None:
        with staging.staging_dir(work, 1, memory) as path:
            (path / "data.sql").write_bytes(b"x")
            raise RuntimeError("the load failed")

    with pytest.raises(RuntimeError):
        failing_load()
    assert list(memory.iterdir()) == [] and list(work.iterdir()) == []


def test_a_killed_restores_archive_is_removed_by_the_next_one_on_the_same_host(tmp_path):
    gone = subprocess.Popen(["true"])
    gone.wait()
    orphan = tmp_path / f"{staging.PREFIX}{staging.owner(gone.pid)}-abc"
    live = tmp_path / f"{staging.PREFIX}{staging.owner(os.getppid())}-def"
    elsewhere = tmp_path / f"{staging.PREFIX}otherhost-{gone.pid}-ghi"
    for each in (orphan, live, elsewhere):
        each.mkdir()
        (each / "data.sql").write_bytes(b"x")
    with staging.staging_dir(tmp_path, 1, tmp_path):
        pass
    assert not orphan.exists()
    assert live.exists() and elsewhere.exists()
