"""Recovery to a moment, for real: a base backup of the stack's PostgreSQL, rows written with their
commit times, WAL archived by barman-cloud; recovered to a moment between two rows, exactly the rows
before it are there; ``latest`` has them all; a missing segment fails naming it.

Each test reads its own copy of the archive (under ``t/<module>/``): the stack's real archive is
never changed, and a hole is made by deleting one object from a copy only.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from stellar_ops.core.errors import ConfigError, RestoreError
from stellar_ops.core.processes import unprivileged_user
from stellar_ops.pitr.recovery import WalArchive, recovered
from stellar_ops.postgres.binaries import find_binaries
from stellar_ops.postgres.target import connect
from tests.support.fixtures import reachable_dir
from tests.support.pitr_recovery import TABLE, History, make_copies, make_history

pytestmark = pytest.mark.integration


ROOT = "t/pitr-recovery"


@pytest.fixture(scope="module")
def history(stack) -> History:
    return make_history(stack, ROOT)


@pytest.fixture(scope="module")
def copies(stack, history) -> Iterator[dict[str, WalArchive]]:
    yield from make_copies(stack, history)


def _ids(server) -> list[int]:
    with connect(server.target("stellar_escrow")) as conn:
        return [row[0] for row in conn.execute(f"SELECT id FROM {TABLE} ORDER BY id")]


@pytest.fixture
def work() -> Iterator[Path]:
    with reachable_dir() as path:
        yield path


def test_recovery_to_a_moment_between_two_rows_has_exactly_the_rows_before_it(history, copies, work):
    target = history.second.between(1)  # after row 6, before row 7
    with recovered(
        copies["whole"],
        target,
        work,
        "moment",
        binaries=find_binaries(),
        run_as=unprivileged_user("postgres"),
    ) as server:
        assert _ids(server) == [1, 2, 3, 4, 5, 6]
        report = server.report
        with connect(server.target()) as conn:
            assert conn.execute("SELECT pg_is_in_recovery()").fetchone()[0] is False
    assert report.base_backup_id == history.record.backup_id
    assert report.target == target.isoformat().replace("+00:00", "Z")
    reached = datetime.fromisoformat(report.reached.replace("Z", "+00:00"))
    # the last commit replayed: row 6's or a later one of the server's own (autovacuum...), before the target
    assert history.second.before[1] <= reached <= target
    assert report.stop_reason and "recovery stopping before commit" in report.stop_reason
    assert report.wal_segments_replayed >= 2 and report.first_segment == history.record.start_wal
    assert report.timeline == history.record.timeline + 1
    assert not (work / "moment").exists()


def test_recovery_to_latest_has_every_archived_row(history, copies, work):
    with recovered(
        copies["whole"], None, work, "latest", binaries=find_binaries(), run_as=unprivileged_user("postgres")
    ) as server:
        assert _ids(server) == list(range(1, 9))
        assert server.report.target == "latest"


def _attempt(archive: WalArchive, target: datetime | None, work: Path, name: str) -> None:
    with recovered(
        archive, target, work, name, binaries=find_binaries(), run_as=unprivileged_user("postgres")
    ):
        pass


def test_a_target_outside_the_window_is_refused_naming_it(history, copies, work):
    too_early = history.record.stop_time - timedelta(minutes=5)
    with pytest.raises(ConfigError, match="before the oldest base backup ends .* the recoverable window is"):
        _attempt(copies["whole"], too_early, work, "early")
    too_late = datetime.now(UTC) + timedelta(hours=1)
    with pytest.raises(ConfigError, match="after the newest archived WAL .* the recoverable window is"):
        _attempt(copies["whole"], too_late, work, "late")


def test_a_missing_segment_fails_the_recovery_naming_it(history, copies, work):
    missing = history.middle_segment
    target = history.second.between(2)
    # PostgreSQL finds it: "recovery ended before configured recovery target was reached"
    with pytest.raises(RestoreError, match=f"WAL segment {missing} .*is missing") as caught:
        _attempt(copies["holed"], target, work, "holed")
    assert "stopped before the target" in str(caught.value)
    assert not (work / "holed").exists()
    # latest: found in the listing before anything is downloaded
    with pytest.raises(RestoreError, match=f"WAL segment {missing} is missing"):
        _attempt(copies["holed"], None, work, "holed-latest")
