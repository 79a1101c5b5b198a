"""The real recovery to a moment (``db_restore`` with ``target_time``, ``stellar-ops restore
--target-time``): one database of the recovered cluster, copied into a server the operator names.

The cluster is recovered by :mod:`stellar_ops.pitr.recovery` into a temporary server on this
machine; its database is copied out with ``pg_dump -Fc`` and restored with the logical restore's own
engine (:func:`stellar_ops.dr.engine.restore.restore_downloaded`: roles first, ``pg_restore -j``
section by section), so a managed server where no data directory can be placed takes it too. The
copy is checked against the recovered server it came from: every table's row count, the schema's
fingerprint, the sanity queries. The same safety as the logical restore holds before any write:
the target is checked (:func:`stellar_ops.dr.recovery.target_problems`), an existing database is
renamed aside only with ``replace``, and a person approves the :class:`PointInTimePlan`.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from stellar_ops.catalogue.source import ResolvedBackup
from stellar_ops.core import alerts
from stellar_ops.core.durations import humanize_duration
from stellar_ops.core.errors import ConfigError, RestoreError, StellarOpsError, TargetRefusedError
from stellar_ops.core.processes import unprivileged_user
from stellar_ops.dr import flow
from stellar_ops.dr import recovery as logical
from stellar_ops.dr.engine import restore
from stellar_ops.dr.request import RestoreRequest
from stellar_ops.dr.scratch import scratch_name
from stellar_ops.dr.verdicts import Verdict, sanity_queries
from stellar_ops.pitr import catalog, layout
from stellar_ops.pitr import recovery as pitr
from stellar_ops.postgres import catalog as pg_catalog
from stellar_ops.postgres.pitr import PitrConfig
from stellar_ops.postgres.target import PgTarget, connect
from stellar_ops.runtime import Runtime

CHECKS = ("row counts", "schema", "sanity queries")


class PitrSections(flow.DrSections, Protocol):
    """What a point-in-time restore reads: ``dr`` and ``backup`` as the logical one, and ``pitr``."""

    @property
    def pitr(self) -> PitrConfig: ...


@dataclass(frozen=True)
class PointInTimePlan:
    """What will be done, for the approval: nothing in it is a secret."""

    target_time: str  # ISO-8601 UTC, or 'latest'
    base_backup_id: str
    base_backup_stop_time: str
    window: str
    archive: str  # s3://bucket/prefix/server/
    source_database: str  # the database of the recovered cluster that is copied
    target: str  # user@host:port, without the password
    database: str
    rename_existing_to: str | None
    target_server_version: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PointInTimePlan:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def summary(self) -> str:
        lines = [
            f"Recover {self.archive} to {self.target_time} from base backup {self.base_backup_id} "
            f"(ends {self.base_backup_stop_time}; {self.window}),",
            f"then copy its database {self.source_database!r} into {self.database!r} on {self.target} "
            f"(PostgreSQL {self.target_server_version}).",
        ]
        if self.rename_existing_to:
            lines.append(
                f"The existing database {self.database!r} will be renamed to {self.rename_existing_to!r} first "
                "(its sessions are ended); it is kept, never dropped."
            )
        else:
            lines.append(f"Database {self.database!r} does not exist on the target: it will be created.")
        return "\n".join(lines)


def archive_of(rt: Runtime[PitrSections]) -> pitr.WalArchive:
    return pitr.wal_archive(rt.store(), rt.config.pitr)


def default_database(moment: datetime | None, now: datetime | None = None) -> str:
    """A new database named after the moment recovered to: ``stellar_escrow_pitr_20261207_063000``."""
    when = moment or now or datetime.now(UTC)
    return f"stellar_escrow_pitr_{when:%Y%m%d_%H%M%S}"


def source_database(rt: Runtime[PitrSections]) -> str:
    """The database of the recovered cluster to copy: the source's (``DATABASE_URL``, ``stellar_db``)."""
    try:
        return rt.resources.database().dbname
    except StellarOpsError as exc:
        raise ConfigError(
            f"which database of the recovered cluster to copy comes from the source's connection: {exc}"
        ) from None


def resolve(rt: Runtime[PitrSections], request: RestoreRequest) -> dict[str, Any]:
    """The base backup a recovery to ``request.target_time`` starts from, and the window: refused
    naming the window when the moment is outside it. Plain data (it travels through XCom)."""
    archive = archive_of(rt)
    moment = request.moment()
    records = catalog.complete_base_backups(archive.store, archive.prefix, archive.server)
    newest = pitr.newest_archived(catalog.list_wal(archive.store, archive.prefix, archive.server))
    record = pitr.choose_base_backup(records, moment, newest, where=archive.where())
    rt.say(f"recovery to {pitr.describe_target(moment)} starts from base backup {record.backup_id}")
    return {
        "kind": "point_in_time",
        "target_time": pitr.describe_target(moment),
        "base_backup_id": record.backup_id,
        "base_backup_stop_time": pitr.iso(record.stop_time),
        "window": pitr.window_text(records, newest),
        "archive": archive.where(),
    }


def is_point_in_time(resolved: dict[str, Any] | None) -> bool:
    return bool(resolved) and (resolved or {}).get("kind") == "point_in_time"


def check_archive(rt: Runtime[PitrSections], resolved: dict[str, Any]) -> dict[str, Any]:
    """The base backup's object is there at its recorded size, and no WAL segment it needs up to
    the target is missing: before anyone is asked to approve."""
    archive = archive_of(rt)
    moment = (
        None if resolved["target_time"] == pitr.LATEST else pitr.parse_target_time(resolved["target_time"])
    )
    records = catalog.complete_base_backups(archive.store, archive.prefix, archive.server)
    record = next((r for r in records if r.backup_id == resolved["base_backup_id"]), None)
    if record is None:
        raise RestoreError(
            f"base backup {resolved['base_backup_id']} is no longer under {archive.where('base/')}"
        )
    key = layout.tar_key(archive.prefix, archive.server, record.backup_id)
    head = archive.store.head(key)
    if head is None or int(head.get("ContentLength", -1)) != record.stored_bytes:
        size = "missing" if head is None else f"{head.get('ContentLength')} bytes"
        raise RestoreError(
            f"{archive.store.url(key)} is {size}; its backup.json says {record.stored_bytes} bytes"
        )
    gap = pitr.first_gap(catalog.list_wal(archive.store, archive.prefix, archive.server), record, moment)
    if gap is not None:
        raise RestoreError(
            f"recovery to {resolved['target_time']} cannot succeed: WAL segment {gap[0]} is missing from "
            f"{archive.where('wals/')} (base backup {record.backup_id} needs every segment from "
            f"{record.start_wal} to {gap[1]})"
        )
    return {"base_backup": archive.store.url(key), "stored_bytes": record.stored_bytes, "archive": "complete"}


def check(
    rt: Runtime[PitrSections], request: RestoreRequest, target: PgTarget, *, source: str | None = None
) -> PointInTimePlan:
    """Everything that must hold before a write: the moment is in the window, the archive has every
    segment it needs, the target can take the copy. The plan a person approves; raises naming what fails."""
    target = rt.labelled(target)
    archive = archive_of(rt)
    moment = request.moment()
    records = catalog.complete_base_backups(archive.store, archive.prefix, archive.server)
    wals = catalog.list_wal(archive.store, archive.prefix, archive.server)
    newest = pitr.newest_archived(wals)
    record = pitr.choose_base_backup(records, moment, newest, where=archive.where())
    gap = pitr.first_gap(wals, record, moment)
    if gap is not None:
        raise RestoreError(
            f"recovery to {pitr.describe_target(moment)} cannot succeed: WAL segment {gap[0]} is missing from "
            f"{archive.where('wals/')} (base backup {record.backup_id} needs every segment from "
            f"{record.start_wal} to {gap[1]})"
        )
    name = request.database or default_database(moment)
    facts = logical.read_target(target, name)
    problems = logical.target_problems(rt, target, facts, None, database=name, replace=request.replace)
    if problems:
        raise TargetRefusedError(
            f"the target {target.describe()} cannot take this restore; nothing was written:\n"
            + "\n".join(f"- {problem}" for problem in problems)
        )
    return PointInTimePlan(
        target_time=pitr.describe_target(moment),
        base_backup_id=record.backup_id,
        base_backup_stop_time=pitr.iso(record.stop_time),
        window=pitr.window_text(records, newest),
        archive=archive.where(),
        source_database=source or source_database(rt),
        target=target.describe().rsplit("/", 1)[0],
        database=name,
        rename_existing_to=logical.aside_name(name, datetime.now(UTC)) if facts.database_owner else None,
        target_server_version=facts.version,
    )


def _as_logical_plan(plan: PointInTimePlan) -> logical.RestorePlan:
    return logical.RestorePlan(
        backup=f"base backup {plan.base_backup_id} to {plan.target_time}",
        backup_taken_at=plan.base_backup_stop_time,
        backup_age_hours=0.0,
        backup_size_bytes=None,
        target=plan.target,
        database=plan.database,
        rename_existing_to=plan.rename_existing_to,
        target_server_version=plan.target_server_version,
    )


def _run(argv: list[str], target: PgTarget, what: str, **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
    with target.client_session() as env:
        result = subprocess.run(argv, capture_output=True, env=env, timeout=24 * 3600, **kwargs)
    if result.returncode != 0:
        detail = " | ".join(result.stderr.decode(errors="replace").strip().splitlines()[-3:])
        raise RestoreError(f"{what} of the recovered server failed (exit {result.returncode}): {detail}")
    return result


def dump_recovered(
    server: pitr.RecoveredServer, database: str, dest: Path, rt: Runtime[PitrSections]
) -> bytes:
    """``pg_dump -Fc`` of ``database`` into ``dest``; its roles (``pg_dumpall --globals-only``)."""
    source = server.target(database)
    with connect(server.target()) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone() is None:
            names = [
                row[0] for row in conn.execute("SELECT datname FROM pg_database WHERE NOT datistemplate")
            ]
            raise ConfigError(
                f"the recovered cluster has no database {database!r} (it has {', '.join(sorted(names))})"
            )
    binaries = rt.binaries
    _run([binaries.path("pg_dump"), "-Fc", "-Z", "0", "--no-password", f"--file={dest}"], source, "pg_dump")
    roles = _run(
        [binaries.path("pg_dumpall"), "--globals-only", "--no-role-passwords", "--no-password"],
        server.target(),
        "pg_dumpall --globals-only",
    )
    return bytes(roles.stdout)


def compare(recovered: dict[str, Any], copied: dict[str, Any]) -> list[Verdict]:
    """The copy against the recovered server it came from: row counts, schema, sanity queries."""
    problems = []
    for table, expected in sorted(recovered["row_counts"].items()):
        got = copied["row_counts"].get(table)
        if got != expected:
            problems.append(f"{table}: copied {got if got is not None else 'no'} rows, recovered {expected}")
    problems += [
        f"{t}: not in the recovered database"
        for t in sorted(set(copied["row_counts"]) - set(recovered["row_counts"]))
    ]
    rows = (
        Verdict("row counts", False, f"{len(problems)} table(s) differ: " + "; ".join(problems), problems)
        if problems
        else Verdict(
            "row counts",
            True,
            f"match the recovered server: {len(recovered['row_counts'])} tables, "
            f"{sum(recovered['row_counts'].values()):,} rows",
        )
    )
    if recovered["schema_fingerprint"] == copied["schema_fingerprint"]:
        schema = Verdict(
            "schema", True, f"fingerprint matches the recovered server's ({len(copied['tables'])} tables)"
        )
    else:
        differences = pg_catalog.schema_differences(recovered["schema"], copied["schema"]) or [
            f"fingerprint {copied['schema_fingerprint']} differs from {recovered['schema_fingerprint']}"
        ]
        schema = Verdict("schema", False, "; ".join(differences), differences)
    return [rows, schema, sanity_queries(copied["sanity"])]


def restore_to_moment(
    rt: Runtime[PitrSections],
    plan: PointInTimePlan,
    target: PgTarget,
    *,
    timeout: float = pitr.DEFAULT_TIMEOUT,
) -> dict[str, Any]:
    """Rename the old database aside if asked, recover, copy the database into the target, compare.
    Returns the recovery's report, the restore's and the verdicts (small: it travels through XCom)."""
    target = rt.labelled(target)
    settings = rt.config.dr
    moment = None if plan.target_time == pitr.LATEST else pitr.parse_target_time(plan.target_time)
    started = time.monotonic()
    work = flow.work_dir(rt)
    logical.rename_aside(rt, target, _as_logical_plan(plan))
    with tempfile.TemporaryDirectory(prefix="stellar-pitr-copy-", dir=work) as staging:
        dump = Path(staging) / "recovered.dump"
        with pitr.recovered(
            archive_of(rt),
            moment,
            work,
            scratch_name(f"pitr-{plan.database}"),
            binaries=rt.binaries,
            run_as=unprivileged_user(settings.run_as_user),
            timeout=rt.config.pitr.recovery_timeout_seconds,
            say=rt.say,
        ) as server:
            report = server.report
            if plan.target_time != pitr.LATEST and report.base_backup_id != plan.base_backup_id:
                rt.say(f"base backup {report.base_backup_id} was used ({plan.base_backup_id} was planned)")
            globals_sql = dump_recovered(server, plan.source_database, dump, rt)
            recovered_view = restore.observe(
                server.target(), list(settings.sanity_queries), database=plan.source_database
            )
        job = restore.RestoreJob(
            backup=ResolvedBackup("local", str(dump), "custom", report.reached or report.target, "pitr"),
            store=None,
            manifest=None,
            server=target,
            binaries=rt.binaries,
            jobs=settings.restore_jobs,
            database=restore.NewDatabase(plan.database, drop_existing=False),
            globals_sql=globals_sql,
            alter_existing_roles=False,  # the target's own roles are the operator's
        )
        try:
            result = restore.restore_downloaded(job, dump, rt.say)
        except StellarOpsError as exc:
            raise type(exc)(f"{exc} ({logical.what_was_written(target, _as_logical_plan(plan))})") from None
    copied = restore.observe(target, list(settings.sanity_queries), database=plan.database)
    verdicts = compare(recovered_view, copied)
    seconds = round(time.monotonic() - started, 3)
    rt.say(
        f"recovered to {plan.target_time} (reached {report.reached or 'the base backup'}) and copied "
        f"{plan.source_database!r} into {plan.database!r} on {plan.target} in {seconds:.1f}s"
    )
    return {
        "rto_seconds": seconds,
        "recovery": report.as_dict(),
        "roles_created": result.roles_created,
        "warnings": result.warnings,
        "restore": {"engine": "pitr+pg_restore", "jobs": settings.restore_jobs, "server": plan.target},
        "checks": [v.as_dict() for v in verdicts],
    }


def publish_report(
    rt: Runtime[PitrSections],
    *,
    plan: PointInTimePlan | None,
    restored: dict[str, Any],
    failed_steps: list[str],
    run_id: str | None,
    approvals: dict[str, dict[str, Any] | None] | None = None,
) -> dict[str, Any]:
    """``<prefix>/<server>/restores/<time>.restore_report.json``, the metrics, the outcome message."""
    checks = list(restored.get("checks") or [])
    success = not failed_steps and bool(checks) and all(c["passed"] for c in checks)
    finished = datetime.now(UTC)
    recovery = restored.get("recovery") or {}
    document = {
        "format_version": 1,
        "kind": "point_in_time",
        "success": success,
        "plan": plan.as_dict() if plan else None,
        "target_time": plan.target_time if plan else None,
        "reached": recovery.get("reached"),
        "recovery": recovery,
        "checks": checks,
        "failed_steps": failed_steps,
        "rto_seconds": restored.get("rto_seconds"),
        "rto_kind": "recovery",
        "restore": restored.get("restore") or {},
        "warnings": list(restored.get("warnings", [])),
        "dag_run_id": run_id,
        "approvals": approvals or {},
        "finished_at": finished.isoformat(),
    }
    archive = archive_of(rt)
    key = (
        f"{archive.prefix.strip('/')}/{archive.server}/restores/{finished:%Y%m%dT%H%M%SZ}.restore_report.json"
    )
    archive.store.put_json(key, document)
    rt.publish_metrics(logical.DAG_ID, logical.restore_metrics(document))
    where = f"{plan.database!r} on {plan.target}" if plan else "the target"
    if success:
        text = (
            f":white_check_mark: Point-in-time restore done: {plan.target_time if plan else '?'} (reached "
            f"{recovery.get('reached')}) into {where} in "
            f"{humanize_duration(float(restored.get('rto_seconds') or 0))} (RTO), {len(checks)} checks passed"
        )
        rt.notify(alerts.info_message(text))
    else:
        failing = [c["check"] for c in checks if not c["passed"]] + failed_steps
        text = (
            f":red_circle: Point-in-time restore into {where} FAILED: {', '.join(failing) or 'no check ran'}"
        )
    rt.say(text)
    document["report_key"] = archive.store.url(key)
    return document
