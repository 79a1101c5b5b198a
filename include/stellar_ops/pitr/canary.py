"""Canary rows: the proof that a point-in-time recovery reached exactly its target.

A writer (:func:`run_writer`, ``stellar-ops pitr canary``) inserts one row into
``stellar_ops_canary`` every few seconds. With ``track_commit_timestamp = on`` each row's exact
commit time is ``pg_xact_commit_timestamp(xmin)``, the very timestamp a commit record carries in
the WAL and that ``recovery_target_time`` is compared with. So, after a recovery to ``T``, every
canary committed at or before ``T`` must be in the recovered server, and none committed after it
(:func:`verdict`).

The drill's moment (:func:`choose_moment`) is a whole second between the window's start and the
newest point the archive surely covers (:func:`safe_newest_point`): a canary committed, its WAL
segment closed and seen archived, so every commit before that canary's, and the canary's own
commit record, which a recovery needs to see to stop, are in the archive.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from stellar_ops.core.errors import PrerequisiteError, StellarOpsError, VerificationError
from stellar_ops.postgres.target import PgTarget, connect

log = logging.getLogger(__name__)

TABLE = "stellar_ops_canary"
CREATE_TABLE = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} ("
    "id bigserial PRIMARY KEY, written_at timestamptz NOT NULL DEFAULT clock_timestamp())"
)
INSERT = f"INSERT INTO {TABLE} DEFAULT VALUES RETURNING id"
# commit times of canaries written before track_commit_timestamp was on are NULL: left out
SOURCE_ROWS = (
    f"SELECT id, pg_xact_commit_timestamp(xmin) FROM {TABLE} "
    "WHERE pg_xact_commit_timestamp(xmin) IS NOT NULL ORDER BY id"
)
DEFAULT_INTERVAL = 5.0
# each statement of the writer gives up after this long: a hung server never stalls the loop
STATEMENT_SECONDS = 10.0
# how many missing or extra canaries a verdict names
NAMED = 5


@dataclass(frozen=True)
class CanaryRow:
    id: int
    committed_at: datetime


# -- the writer ---------------------------------------------------------------------------------


def ensure_table(conn: Any) -> None:
    """Create the canary table if it is missing (the writer's connection owns it)."""
    conn.execute(CREATE_TABLE)


def commit_timestamps_on(conn: Any) -> bool:
    return str(conn.execute("SHOW track_commit_timestamp").fetchone()[0]) == "on"


def write_canary(conn: Any) -> int:
    """One canary, committed (the connection is in autocommit); its id."""
    return int(conn.execute(INSERT).fetchone()[0])


def run_writer(
    target: PgTarget,
    *,
    interval: float = DEFAULT_INTERVAL,
    stop: threading.Event | None = None,
    max_rows: int | None = None,
    say: Callable[[str], None] = log.info,
    warn: Callable[[str], None] = log.warning,
) -> int:
    """Insert one canary every ``interval`` seconds until ``stop`` is set (or ``max_rows`` are
    written); the number written.

    Each statement is bounded; any failure (the server restarting, a network cut) is said and the
    connection made again after ``interval``, so the writer outlives what it watches.
    """
    if interval <= 0:
        raise StellarOpsError(f"the canary interval must be positive, got {interval}")
    stop = stop or threading.Event()
    bounded = target.bounded(STATEMENT_SECONDS)
    written = 0
    failing = False
    next_at = time.monotonic()
    with contextlib.ExitStack() as session:
        conn: Any = None
        while not stop.is_set() and (max_rows is None or written < max_rows):
            try:
                if conn is None:
                    conn = session.enter_context(connect(bounded))
                    _prepare(conn, say)
                canary = write_canary(conn)
            except Exception as exc:  # noqa: BLE001 - whatever failed (psycopg's errors too): reconnect
                session.close()
                conn = None
                if not failing:
                    reason = str(exc) if isinstance(exc, StellarOpsError) else f"{type(exc).__name__}: {exc}"
                    warn(
                        f"canary not written to {target.describe()}: {reason.strip()[:300]}; "
                        f"trying again every {interval:g}s"
                    )
                failing = True
            else:
                written += 1
                if failing:
                    say(f"canaries written again (id {canary})")
                failing = False
                log.debug("canary %s written", canary)
            # a steady beat: the next canary is due ``interval`` after the previous one was due
            next_at = max(next_at + interval, time.monotonic())
            stop.wait(max(0.0, next_at - time.monotonic()))
    return written


def _prepare(conn: Any, say: Callable[[str], None]) -> None:
    ensure_table(conn)
    if not commit_timestamps_on(conn):
        say(
            "track_commit_timestamp is off: the canaries are written, but a recovery cannot be "
            "checked against their commit times until it is on (a restart)"
        )


# -- reading the canaries -----------------------------------------------------------------------


def source_rows(target: PgTarget, timeout: float = 60.0) -> list[CanaryRow]:
    """Every canary of the source with its commit time, in id order."""
    with connect(target.bounded(timeout)) as conn:
        if not _table_exists(conn):
            raise PrerequisiteError(
                f"{target.describe()} has no table {TABLE}: no canary writer has run there "
                "(`stellar-ops pitr canary`)"
            )
        if not commit_timestamps_on(conn):
            raise PrerequisiteError(
                f"track_commit_timestamp is off on {target.describe()}: the canaries' commit times are "
                "unknown (set it on and restart the server)"
            )
        return [CanaryRow(int(i), at) for i, at in conn.execute(SOURCE_ROWS).fetchall()]


def recovered_ids(target: PgTarget, timeout: float = 60.0) -> set[int]:
    """The canary ids in a recovered server (none when the table did not exist at the target)."""
    with connect(target.bounded(timeout)) as conn:
        if not _table_exists(conn):
            return set()
        return {int(row[0]) for row in conn.execute(f"SELECT id FROM {TABLE}").fetchall()}


def system_identifier(target: PgTarget, timeout: float = 30.0) -> str | None:
    """The cluster's system identifier (a base backup's ``system_identifier``); None when this user
    may not read it."""
    with connect(target.bounded(timeout)) as conn:
        try:
            return str(conn.execute("SELECT system_identifier FROM pg_control_system()").fetchone()[0])
        except Exception as exc:  # noqa: BLE001 - a permission, and only that, leaves it unknown
            if "permission denied" in str(exc):
                return None
            raise


def _table_exists(conn: Any) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (TABLE,)).fetchone()[0] is True


# -- the verdict --------------------------------------------------------------------------------


@dataclass
class CanaryVerdict:
    passed: bool
    target: datetime
    detail: str
    expected: int  # canaries committed at or before the target
    recovered: int  # of those, present after the recovery
    missing: list[dict[str, Any]] = field(default_factory=list)  # the first few, with commit times
    extra: list[dict[str, Any]] = field(default_factory=list)  # committed after the target, yet there
    missing_count: int = 0
    extra_count: int = 0
    unknown_ids: list[int] = field(default_factory=list)  # recovered ids the source does not know
    newest_recovered: datetime | None = None  # commit time of the newest recovered canary
    reached: datetime | None = None  # the recovered server's last replayed commit
    rpo_seconds: float | None = None
    problems: list[str] = field(default_factory=list)

    check = "point-in-time canaries"

    def as_dict(self) -> dict[str, Any]:
        document = asdict(self)
        for key in ("target", "newest_recovered", "reached"):
            moment = document[key]
            document[key] = moment.isoformat() if moment is not None else None
        for row in document["missing"] + document["extra"]:
            row["committed_at"] = row["committed_at"].isoformat()
        return {"check": self.check, **document}

    def raise_if_failed(self) -> None:
        if not self.passed:
            raise VerificationError(f"{self.check} failed: {self.detail}")


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _named(rows: Sequence[CanaryRow]) -> list[dict[str, Any]]:
    return [{"id": r.id, "committed_at": r.committed_at} for r in rows[:NAMED]]


def _listed(rows: Sequence[CanaryRow]) -> str:
    shown = ", ".join(f"{r.id} ({_iso(r.committed_at)})" for r in rows[:NAMED])
    return shown + (f" and {len(rows) - NAMED} more" if len(rows) > NAMED else "")


def verdict(
    rows: Iterable[CanaryRow],
    present: Iterable[int],
    target: datetime,
    reached: datetime | None = None,
) -> CanaryVerdict:
    """Whether a recovery to ``target`` holds exactly the canaries committed at or before it.

    ``rows`` are the source's canaries with their commit times, ``present`` the ids found in the
    recovered server, ``reached`` its last replayed commit (``pg_last_xact_replay_timestamp()``)
    when known. The RPO reached is ``target`` minus the newest commit known recovered (``reached``,
    else the newest recovered canary's): how much before the asked moment the recovered data ends.
    A recovery with no canary committed at or before the target proves nothing, and fails.
    """
    if target.tzinfo is None:
        raise ValueError(f"the target {target} has no time zone")
    ordered = sorted(rows, key=lambda r: r.id)
    found = set(present)
    known = {r.id for r in ordered}
    before = [r for r in ordered if r.committed_at <= target]
    after = [r for r in ordered if r.committed_at > target]
    missing = [r for r in before if r.id not in found]
    extra = [r for r in after if r.id in found]
    # an id the source lacks, above its oldest one, was never committed there: nothing explains it
    oldest = min(known) if known else None
    unknown = sorted(i for i in found - known if oldest is not None and i > oldest)
    recovered_rows = [r for r in before if r.id in found]
    newest = max((r.committed_at for r in recovered_rows), default=None)
    problems: list[str] = []
    if not before:
        problems.append(
            f"no canary was committed at or before the target {_iso(target)} (the oldest known "
            f"{'is ' + _iso(ordered[0].committed_at) if ordered else 'does not exist'}): the recovery "
            "cannot be checked; is the canary writer running?"
        )
    if missing:
        problems.append(
            f"{len(missing)} canary row(s) committed at or before the target are missing, first "
            f"{_listed(missing)}: the recovery stopped short of the target"
        )
    if extra:
        problems.append(
            f"{len(extra)} canary row(s) committed after the target are present, first "
            f"{_listed(extra)}: the recovery went past the target"
        )
    if unknown:
        problems.append(
            f"{len(unknown)} canary id(s) in the recovered server were never committed in the source, "
            f"first {', '.join(map(str, unknown[:NAMED]))}: it was not recovered from this server's archive"
        )
    if reached is not None and reached > target:
        problems.append(f"the recovered server replayed a commit of {_iso(reached)}, after the target")
    end = reached if reached is not None else newest
    rpo = round(max(0.0, (target - end).total_seconds()), 3) if end is not None else None
    if problems:
        detail = "; ".join(problems)
    else:
        detail = (
            f"all {len(before)} canaries committed at or before {_iso(target)} are there, none of the "
            f"{len(after)} after it; newest recovered canary committed {_iso(newest)}"  # type: ignore[arg-type]
            + (f", last replayed commit {_iso(reached)}" if reached else "")
            + (f"; RPO reached {rpo:g}s" if rpo is not None else "")
        )
    return CanaryVerdict(
        passed=not problems,
        target=target,
        detail=detail,
        expected=len(before),
        recovered=len(recovered_rows),
        missing=_named(missing),
        extra=_named(extra),
        missing_count=len(missing),
        extra_count=len(extra),
        unknown_ids=unknown[:NAMED],
        newest_recovered=newest,
        reached=reached,
        rpo_seconds=rpo,
        problems=problems,
    )


# -- the drill's moment -------------------------------------------------------------------------


def choose_moment(low: datetime, high: datetime, rng: random.Random | None = None) -> datetime:
    """A whole second, uniformly at random, in ``[low, high]`` (both rounded inwards)."""
    start = _ceil_second(low)
    end = high.astimezone(UTC).replace(microsecond=0)
    if end < start:
        raise PrerequisiteError(
            f"no whole second to recover to between {_iso(low)} and {_iso(high)}: the recoverable "
            "window is empty (no base backup older than the newest archived WAL?)"
        )
    span = int((end - start).total_seconds())
    return start + timedelta(seconds=(rng or random.SystemRandom()).randint(0, span))


def _ceil_second(moment: datetime) -> datetime:
    moment = moment.astimezone(UTC)
    whole = moment.replace(microsecond=0)
    return whole if whole == moment else whole + timedelta(seconds=1)


def rehearsal_bounds(
    now: datetime,
    window_start: datetime,
    safe_newest: datetime,
    lookback: timedelta,
    first_canary: datetime | None = None,
) -> tuple[datetime, datetime]:
    """``[max(now - lookback, window start, first canary), safe newest point]``: where the drill's
    moment lies (before the first canary no recovery can be checked)."""
    low = max(now - lookback, window_start)
    return (max(low, first_canary) if first_canary else low), safe_newest


@dataclass(frozen=True)
class SafePoint:
    moment: datetime  # every commit up to here is archived, with a commit after it
    canary_id: int
    segment: str  # the WAL segment closed and seen archived
    switched: bool  # closed by pg_switch_wal(); False: waited for archive_timeout to close it


def safe_newest_point(
    target: PgTarget,
    *,
    wait_seconds: float = 180.0,
    poll: float = 0.5,
    say: Callable[[str], None] = log.info,
) -> SafePoint:
    """The newest moment a recovery can surely reach now, from the archive alone.

    A canary is committed (its commit record ends the recoverable past: a recovery to a moment
    before it sees it and stops), its segment is closed with ``pg_switch_wal()`` (when this user
    may; else ``archive_timeout`` closes it) and ``pg_stat_archiver`` is watched until it shows
    that segment archived, for at most ``wait_seconds``. The moment is one microsecond before the
    canary's commit.
    """
    with connect(target.bounded(max(wait_seconds, STATEMENT_SECONDS))) as conn:
        mode = str(conn.execute("SHOW archive_mode").fetchone()[0])
        if mode == "off":
            raise PrerequisiteError(
                f"archive_mode is off on {target.describe()}: its WAL is not archived, so no recovery of "
                "it to a moment can be rehearsed (are the base backups of another server?)"
            )
        ensure_table(conn)
        canary = write_canary(conn)
        committed = conn.execute(
            f"SELECT pg_xact_commit_timestamp(xmin) FROM {TABLE} WHERE id = %s", (canary,)
        ).fetchone()[0]
        if committed is None:
            raise PrerequisiteError(
                f"track_commit_timestamp is off on {target.describe()}: the canaries' commit times are "
                "unknown (set it on and restart the server)"
            )
        closed = _close_segment(target)
        switched = closed is not None
        if closed is None:
            closed = str(conn.execute("SELECT pg_walfile_name(pg_current_wal_lsn())").fetchone()[0])
            say(
                f"{target.user} may not run pg_switch_wal() in the postgres database: waiting for "
                f"archive_timeout to close {closed} (GRANT EXECUTE ON FUNCTION pg_switch_wal() TO "
                f"{target.user}, run in the postgres database, makes this quick)"
            )
        segment = closed
        deadline = time.monotonic() + wait_seconds
        while True:
            last, failed, failed_wal = conn.execute(
                "SELECT coalesce(last_archived_wal, ''), failed_count, coalesce(last_failed_wal, '') "
                "FROM pg_stat_archiver"
            ).fetchone()
            # names of one timeline sort in the order of their segments; a .partial or .backup
            # file of the same segment sorts after it
            if str(last)[:24] >= segment:
                break
            if time.monotonic() > deadline:
                failure = f"; {failed} failure(s), the last {failed_wal}" if failed else ""
                raise PrerequisiteError(
                    f"WAL segment {segment} was not archived within {wait_seconds:.0f}s (last archived: "
                    f"{last or 'none'}{failure}): the archive does not reach the present"
                )
            time.sleep(poll)
    say(f"WAL up to canary {canary} (committed {_iso(committed)}) is archived in {segment}")
    return SafePoint(committed - timedelta(microseconds=1), canary, segment, switched)


def _close_segment(target: PgTarget) -> str | None:
    """``pg_switch_wal()`` over a session on the ``postgres`` database: the closed segment's name, or
    None when this role may not (connect there, or run it).

    A function's privileges are its database's. The grant belongs in ``postgres``: made in the
    application's database, pg_dump would carry it in every backup, and a restore by a role that
    is not a superuser would fail on it."""
    try:
        with connect(target.with_dbname("postgres").bounded(STATEMENT_SECONDS)) as conn:
            return str(conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()[0])
    except Exception as exc:  # noqa: BLE001 - not permitted: archive_timeout closes the segment
        text = str(exc)
        if "permission denied" in text or "no pg_hba.conf entry" in text:
            return None
        raise StellarOpsError(
            f"pg_switch_wal() failed on {target.with_dbname('postgres').describe()}: {text}"
        ) from None
