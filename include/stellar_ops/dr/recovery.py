"""The real recovery (``db_restore``): a backup into a server the operator names, verified.

It rehearses nothing: the drill (:mod:`stellar_ops.dr.flow`) rehearses this. Both resolve and
check the backup the same way, restore with the same engine (:func:`stellar_ops.dr.engine.restore.recover`)
and judge the result with the same verdicts. What this adds is safety before any write:

- the backup is checked (size, sha256, archive) before the target is touched;
- the target must be new enough for the dump and have the extensions it needs;
- the target must not be the backup's own source database, and an existing target database is
  refused, unless ``replace`` is set: then it is renamed aside (``<name>_before_<ts>``), never
  dropped, so a failed restore loses nothing;
- a person approves the :class:`RestorePlan` (in the Airflow UI or on the terminal) first.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from stellar_ops.backups.keys import RESTORE_REPORT_SUFFIX
from stellar_ops.backups.manifest import Manifest
from stellar_ops.backups.source import load_globals
from stellar_ops.core import alerts
from stellar_ops.core.errors import PrerequisiteError, StellarOpsError
from stellar_ops.core.metrics import Metric
from stellar_ops.dr import flow
from stellar_ops.dr.engine import restore, staging
from stellar_ops.dr.flow import Resolved
from stellar_ops.postgres.target import PgTarget, connect, major_of, quote_ident, server_version_num
from stellar_ops.runtime import Runtime

DAG_ID = "db_restore"
CHECK_STEPS = flow.CHECK_STEPS
STEPS = ("resolve_backup", "check_backup", "check_target", "approve_restore", "restore_backup", *CHECK_STEPS)
_PG_DUMP_MAJOR = re.compile(r"\(PostgreSQL\)\s+(\d+)")
MAX_IDENTIFIER = 63


@dataclass(frozen=True)
class RestorePlan:
    """What will be done, for the approval: nothing in it is a secret."""

    backup: str
    backup_taken_at: str
    backup_age_hours: float
    backup_size_bytes: int | None
    target: str  # user@host:port, without the password
    database: str
    rename_existing_to: str | None
    target_server_version: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RestorePlan:
        return cls(**data)

    def summary(self) -> str:
        size = (
            alerts.human_bytes(self.backup_size_bytes)
            if self.backup_size_bytes is not None
            else "unknown size"
        )
        lines = [
            f"Restore backup {self.backup} ({size}, taken {self.backup_taken_at}, {self.backup_age_hours:.1f} hours old)",
            f"into database {self.database!r} on {self.target} (PostgreSQL {self.target_server_version}).",
        ]
        if self.rename_existing_to:
            lines.append(
                f"The existing database {self.database!r} will be renamed to {self.rename_existing_to!r} first "
                "(its sessions are ended); it is kept, never dropped."
            )
        else:
            lines.append(f"Database {self.database!r} does not exist on the target: it will be created.")
        return "\n".join(lines)


def default_database(resolved: Resolved) -> str:
    """A new database named after the backup's timestamp: ``stellar_escrow_20261124_020000``."""
    taken = datetime.fromisoformat(resolved.backup.timestamp)
    return f"stellar_escrow_{taken:%Y%m%d_%H%M%S}"


def _dump_major(manifest: Manifest | None) -> int | None:
    match = _PG_DUMP_MAJOR.search(manifest.pg_dump_version) if manifest else None
    return int(match.group(1)) if match else None


def check_target(
    rt: Runtime, resolved: Resolved, target: PgTarget, *, database: str | None, replace: bool
) -> RestorePlan:
    """Everything that must hold before a write; the plan a person approves. Raises naming what fails."""
    manifest = flow.sources(rt, resolved).manifest
    name = database or default_database(resolved)
    if len(name.encode()) > MAX_IDENTIFIER:
        raise PrerequisiteError(f"database name {name!r} is longer than PostgreSQL's {MAX_IDENTIFIER} bytes")
    with connect(target.with_dbname("postgres")) as conn:
        version_num = server_version_num(conn)
        version = str(conn.execute("SHOW server_version").fetchone()[0])
        system_identifier = str(
            conn.execute("SELECT system_identifier FROM pg_control_system()").fetchone()[0]
        )
        available = {row[0] for row in conn.execute("SELECT name FROM pg_available_extensions").fetchall()}
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None
    dump_major = _dump_major(manifest)
    if dump_major is not None and major_of(version_num) < dump_major:
        raise PrerequisiteError(
            f"the target {target.describe()} runs PostgreSQL {version}, older than the backup's pg_dump "
            f"{dump_major} ({manifest.pg_dump_version if manifest else ''}): restore into a server of major "
            f"{dump_major} or newer"
        )
    needed = set(manifest.schema_.get("extensions", {})) if manifest else set()
    missing = sorted(needed - available)
    if missing:
        raise PrerequisiteError(
            f"the target {target.describe()} lacks the extensions the backup needs: {', '.join(missing)} "
            "(install their packages on the target server first)"
        )
    if _is_source(rt, manifest, target, name, system_identifier) and not replace:
        raise PrerequisiteError(
            f"the target {target.describe()} database {name!r} is the backup's own source: set replace to "
            "restore over it (it is renamed aside, not dropped)"
        )
    rename_to = None
    if exists:
        if not replace:
            raise PrerequisiteError(
                f"database {name!r} already exists on {target.describe()}: choose another target_database, "
                "or set replace to rename it aside and restore in its place"
            )
        rename_to = aside_name(name, datetime.now(UTC))
    taken = datetime.fromisoformat(resolved.backup.timestamp)
    taken = taken if taken.tzinfo else taken.replace(tzinfo=UTC)
    store = flow.sources(rt, resolved).store
    return RestorePlan(
        backup=store.url(resolved.backup.location) if store is not None else resolved.backup.location,
        backup_taken_at=taken.isoformat(),
        backup_age_hours=round((datetime.now(UTC) - taken).total_seconds() / 3600, 1),
        backup_size_bytes=manifest.size_bytes if manifest else None,
        target=target.describe().rsplit("/", 1)[0],
        database=name,
        rename_existing_to=rename_to,
        target_server_version=version,
    )


def aside_name(name: str, moment: datetime) -> str:
    suffix = f"_before_{moment:%Y%m%dT%H%M%S}"
    return name[: MAX_IDENTIFIER - len(suffix)] + suffix


def _is_source(
    rt: Runtime, manifest: Manifest | None, target: PgTarget, database: str, system_identifier: str
) -> bool:
    """Whether ``database`` on ``target`` is where the backup was taken from."""
    if manifest is None:
        return False
    if manifest.system_identifier is not None:
        return manifest.system_identifier == system_identifier and manifest.database == database
    try:
        source = rt.database()
    except Exception:  # noqa: BLE001 - no source configured: the cluster identity is all there is
        return False
    return (source.host, source.port, source.dbname) == (target.host, target.port, database)


def rename_aside(rt: Runtime, target: PgTarget, plan: RestorePlan) -> None:
    """Rename the existing target database aside (ending its sessions, which a rename needs)."""
    if not plan.rename_existing_to:
        return
    with connect(target.with_dbname("postgres")) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (plan.database,),
        )
        conn.execute(
            f"ALTER DATABASE {quote_ident(plan.database)} RENAME TO {quote_ident(plan.rename_existing_to)}"
        )
    rt.say(f"renamed database {plan.database!r} aside to {plan.rename_existing_to!r} on {plan.target}")


def restore_backup(rt: Runtime, resolved: Resolved, target: PgTarget, plan: RestorePlan) -> dict[str, Any]:
    """Rename the old database aside, restore with the drill's engine, and observe the result."""
    found = flow.sources(rt, resolved)
    settings = rt.config.dr
    rename_aside(rt, target, plan)
    try:
        result = _recover(rt, found, target, plan)
    except StellarOpsError as exc:
        kept = (
            f"; the previous database is intact as {plan.rename_existing_to!r}"
            if plan.rename_existing_to
            else ""
        )
        raise type(exc)(
            f"{exc} (the restore into {plan.database!r} stopped; what it wrote is left there for inspection{kept})"
        ) from None
    for warning in result.warnings:
        rt.warn(warning)
    rt.say(
        f"restored {found.backup.location} into {plan.database!r} on {plan.target} in {result.seconds:.1f}s"
    )
    return {
        "rto_seconds": result.seconds,
        "roles_created": result.roles_created,
        "roles_from_globals": result.roles_from_globals,
        "warnings": result.warnings,
        "restore": {"engine": settings.restore_engine, "jobs": settings.restore_jobs, "server": plan.target},
        "observation": restore.observe(target, list(settings.sanity_queries), database=plan.database),
    }


def _recover(rt: Runtime, found: flow.Sources, target: PgTarget, plan: RestorePlan) -> restore.RestoreResult:
    settings = rt.config.dr
    return restore.recover(
        target,
        found.store,
        found.backup,
        found.manifest,
        flow.work_dir(rt),
        jobs=settings.restore_jobs,
        engine=settings.restore_engine,
        globals_sql=load_globals(found.store, found.backup, found.manifest),
        alter_existing_roles=False,  # the target's own roles are the operator's
        database=restore.NewDatabase(plan.database, drop_existing=False),
        memory_dir=staging.MEMORY_DIR if settings.stage_in_memory else None,
        binaries=rt.binaries,
        say=rt.say,
    )


def restore_metrics(document: dict[str, Any]) -> list[Metric]:
    points = [
        Metric(
            "stellar_restore_success", 1.0 if document["success"] else 0.0, "1 if the last recovery passed"
        )
    ]
    if document["rto_seconds"] is not None:
        points.append(
            Metric(
                "stellar_restore_seconds", document["rto_seconds"], "Duration of the last real recovery (RTO)"
            )
        )
    return points


def publish_report(
    rt: Runtime,
    *,
    resolved: Resolved | None,
    plan: RestorePlan | None,
    restored: dict[str, Any],
    checks: list[dict[str, Any]],
    failed_steps: list[str],
    run_id: str | None,
) -> dict[str, Any]:
    """``<key>.restore_report.json`` beside the backup, the metrics, and the outcome message."""
    manifest = flow.sources(rt, resolved).manifest if resolved else None
    success = not failed_steps and bool(checks) and all(c["passed"] for c in checks)
    document = {
        "format_version": 1,
        "success": success,
        "backup": resolved.as_dict() if resolved else {"location": "unresolved"},
        "manifest_sha256": manifest.sha256 if manifest else None,
        "target": plan.as_dict() if plan else None,
        "checks": checks,
        "failed_steps": failed_steps,
        "rto_seconds": restored.get("rto_seconds"),
        "rto_kind": "recovery",
        "restore": restored.get("restore") or {},
        "warnings": list(restored.get("warnings", [])),
        "dag_run_id": run_id,
        "finished_at": datetime.now(UTC).isoformat(),
    }
    if resolved is not None:
        flow.save_beside(rt, resolved.backup, RESTORE_REPORT_SUFFIX, document)
    rt.publish_metrics(DAG_ID, restore_metrics(document))
    where = f"{plan.database!r} on {plan.target}" if plan else "the target"
    if success:
        text = (
            f":white_check_mark: Restore done: {resolved.backup.location if resolved else '?'} into {where} in "
            f"{document['rto_seconds']:.1f}s (RTO), {len(checks)} checks passed"
        )
        rt.notify(alerts.info_message(text))
    else:
        failing = [c["check"] for c in checks if not c["passed"]] + failed_steps
        text = f":red_circle: Restore into {where} FAILED: {', '.join(failing) or 'no check ran'}"
        if plan and plan.rename_existing_to:
            text += f"; the previous database is intact as {plan.rename_existing_to!r}"
    rt.say(text)
    return document
