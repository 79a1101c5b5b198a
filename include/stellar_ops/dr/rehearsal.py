"""The drill's point-in-time rehearsal: a recovery to a random moment, proven by the canary rows.

After the drill's logical restore, ``dr_restore_test`` (when ``dr.pitr_rehearsal`` says so)
chooses a whole second of the last ``dr.pitr_lookback_hours`` that the archive covers (from the
oldest base backup's end to the newest point surely archived, :func:`canary.safe_newest_point`),
recovers the base backup before it plus the WAL up to it into a scratch server of its own, and
checks that every canary committed at or before that second is there and none after it
(:func:`canary.verdict`). Its RTO (fetch, replay, promote) and the RPO it reached go to the
report and the metrics.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from stellar_ops.core.errors import PrerequisiteError, ScratchServerError
from stellar_ops.core.processes import stop_pid, unprivileged_user
from stellar_ops.dr.config import DrConfig
from stellar_ops.dr.verdicts import Verdict
from stellar_ops.pitr import canary, catalog, recovery
from stellar_ops.pitr.layout import BaseBackupRecord
from stellar_ops.postgres.pitr import PitrConfig
from stellar_ops.postgres.server import read_postmaster_pid
from stellar_ops.postgres.target import PgTarget
from stellar_ops.runtime import Runtime, RuntimeConfig
from stellar_ops.storage.s3 import S3Store

RESTORE_STEP = "restore_to_moment"
CHECK_STEP = "verify_canaries"
STEPS = (RESTORE_STEP, CHECK_STEP)
SCRATCH_SUFFIX = "-pitr"


class RehearsalSections(RuntimeConfig, Protocol):
    @property
    def dr(self) -> DrConfig: ...
    @property
    def pitr(self) -> PitrConfig: ...


@dataclass(frozen=True)
class Recovered:
    """What the rehearsal needs of a recovered server, whoever recovered it."""

    target: PgTarget  # the recovered copy of the source database, as its superuser
    reached: datetime | None  # pg_last_xact_replay_timestamp() once promoted
    backup_id: str
    seconds: float  # fetch + replay + promote: the RTO of the point-in-time recovery


def scratch_dir(work_dir: Path, scratch: str) -> Path:
    """The rehearsal's own directory beside the drill's scratch server (``<name>-pitr``)."""
    return Path(work_dir) / f"{scratch}{SCRATCH_SUFFIX}"


def remove_leftovers(base: Path) -> list[str]:
    """Stop any server left in ``base`` (a worker that died mid-rehearsal) and delete it."""
    removed: list[str] = []
    if not base.exists():
        return removed
    for pid_file in sorted(base.glob("**/postmaster.pid")):
        pid = read_postmaster_pid(pid_file.parent)
        if pid:
            stop_pid(pid, sig=2, timeout=30)
            removed.append(f"postgres pid {pid}")
    shutil.rmtree(base, ignore_errors=True)
    if base.exists():
        raise ScratchServerError(f"could not remove {base}")
    removed.append(str(base))
    return removed


def base_backups(store: S3Store, settings: PitrConfig) -> list[BaseBackupRecord]:
    """The complete base backups of the archive, oldest first."""
    return catalog.complete_base_backups(store, settings.prefix, settings.server_name)


def skip_reason(mode: str, backups: Sequence[object], where: str) -> str | None:
    """Why the rehearsal does not run (None: it runs); ``on`` with no base backup is an error."""
    if mode == "off":
        return "dr.pitr_rehearsal is off"
    if not backups:
        if mode == "on":
            raise PrerequisiteError(
                f"dr.pitr_rehearsal is on but {where} holds no complete base backup: run db_base_backup"
            )
        return f"no complete base backup in {where} (dr.pitr_rehearsal is auto)"
    return None


def of_this_cluster(
    backups: list[BaseBackupRecord], identifier: str | None, source: str, where: str
) -> list[BaseBackupRecord]:
    """The base backups of the drill's source cluster (all of them when its identifier is unknown);
    none of them is a configuration error: the drill would recover another server."""
    if identifier is None:
        return backups
    mine = [b for b in backups if b.system_identifier == identifier]
    if not mine:
        theirs = sorted({b.system_identifier for b in backups})
        raise PrerequisiteError(
            f"the base backups in {where} are of cluster(s) {', '.join(theirs)}, not of {source} "
            f"(system identifier {identifier}): pitr.prefix and pitr.server_name must name this "
            "database's archive"
        )
    return mine


def restore_to_moment(
    rt: Runtime[RehearsalSections],
    base: Path,
    *,
    rng: random.Random | None = None,
) -> dict[str, Any]:
    """Choose the moment, recover to it in ``base``, and check the canaries; the outcome as plain
    data (the verdict included, whatever it says: :func:`verify_canaries` judges it)."""
    settings, pitr = rt.config.dr, rt.config.pitr
    store = rt.store()
    where = store.url(f"{pitr.prefix.strip('/')}/{pitr.server_name}/base/")
    backups = base_backups(store, pitr)
    reason = skip_reason(settings.pitr_rehearsal, backups, where)
    if reason:
        rt.say(f"point-in-time rehearsal skipped: {reason}")
        return {"skipped": reason}
    source = rt.database()
    backups = of_this_cluster(backups, canary.system_identifier(source), source.describe(), where)
    safe = canary.safe_newest_point(source, wait_seconds=settings.pitr_archive_wait_seconds, say=rt.say)
    rows = canary.source_rows(source)
    low, high = canary.rehearsal_bounds(
        datetime.now(UTC),
        backups[0].stop_time,
        safe.moment,
        timedelta(hours=settings.pitr_lookback_hours),
        rows[0].committed_at if rows else None,
    )
    target = canary.choose_moment(low, high, rng)
    rt.say(
        f"point-in-time rehearsal: recovering to {target.isoformat()}, chosen at random in "
        f"[{low.isoformat()}, {high.isoformat()}]"
    )
    with recovered_server(rt, target, base) as recovered:
        present = canary.recovered_ids(recovered.target)
    seconds = recovered.seconds
    # read again: a recovery gone past its target could hold canaries newer than the first read
    rows = canary.source_rows(source)
    verdict = canary.verdict(rows, present, target, recovered.reached)
    rt.say(
        f"recovered base backup {recovered.backup_id} + WAL to {target.isoformat()} in {seconds:.1f}s "
        f"(reached {recovered.reached.isoformat() if recovered.reached else 'an unknown time'}): "
        f"{'PASS' if verdict.passed else 'FAIL'} {verdict.detail}"
    )
    return outcome(verdict, recovered.backup_id, seconds, low, high, safe.segment)


def outcome(
    verdict: canary.CanaryVerdict,
    backup_id: str,
    seconds: float,
    low: datetime,
    high: datetime,
    segment: str,
) -> dict[str, Any]:
    """The rehearsal's result, small enough for XCom: a few missing or extra canaries, not all ids."""
    return {
        "target": verdict.target.isoformat(),
        "reached": verdict.reached.isoformat() if verdict.reached else None,
        "base_backup": backup_id,
        "rto_seconds": seconds,
        "rpo_seconds": verdict.rpo_seconds,
        "window": {"from": low.isoformat(), "to": high.isoformat(), "archived_segment": segment},
        "canaries": verdict.as_dict(),
    }


def verify_canaries(recovered: dict[str, Any]) -> Verdict | None:
    """The rehearsal's verdict as the drill's other checks give theirs; None when it was skipped."""
    if not recovered or "skipped" in recovered:
        return None
    found = recovered["canaries"]
    return Verdict(
        canary.CanaryVerdict.check, bool(found["passed"]), found["detail"], list(found["problems"])
    )


@contextmanager
def recovered_server(rt: Runtime[RehearsalSections], target: datetime, base: Path) -> Iterator[Recovered]:
    """The source's database recovered to ``target`` in ``base``, removed on the way out (the
    server's log is quoted by the error when recovery fails, so nothing is kept).

    The one place the drill calls :mod:`stellar_ops.pitr.recovery`.
    """
    with recovery.recovered(
        recovery.wal_archive(rt.store(), rt.config.pitr),
        target,
        base.parent,
        base.name,
        binaries=rt.binaries,
        run_as=unprivileged_user(rt.config.dr.run_as_user),
        say=rt.say,
    ) as server:
        report = server.report
        reached = datetime.fromisoformat(report.reached.replace("Z", "+00:00")) if report.reached else None
        yield Recovered(
            rt.labelled(server.target(rt.database().dbname)),
            reached,
            report.base_backup_id,
            round(report.total_seconds, 1),
        )
