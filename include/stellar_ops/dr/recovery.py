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

import os
import re
import shutil
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

from stellar_ops.catalogue.keys import RESTORE_REPORT_SUFFIX
from stellar_ops.catalogue.manifest import Manifest
from stellar_ops.catalogue.source import load_globals
from stellar_ops.core import alerts
from stellar_ops.core.durations import humanize_duration
from stellar_ops.core.errors import StellarOpsError, TargetRefusedError
from stellar_ops.core.metrics import Metric
from stellar_ops.dr import flow
from stellar_ops.dr.engine import restore
from stellar_ops.dr.engine import roles as roles_engine
from stellar_ops.dr.flow import Resolved
from stellar_ops.dr.request import MAX_IDENTIFIER, RestoreRequest
from stellar_ops.postgres.target import PgTarget, connect, major_of, quote_ident, server_version_num
from stellar_ops.runtime import Runtime

DAG_ID = "db_restore"
CHECK_STEPS = flow.CHECK_STEPS
APPROVALS = ("approve_restore", "approve_replace")
STEPS = ("resolve_backup", "check_backup", "check_target", *APPROVALS, "restore_backup", *CHECK_STEPS)
_PG_DUMP_MAJOR = re.compile(r"\(PostgreSQL\)\s+(\d+)")
# what a restored database takes on disk, against the backup's uncompressed dump: the rows plus the
# indexes the dump holds only as statements
RESTORED_SIZE_FACTOR = 1.5
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


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


@dataclass(frozen=True)
class TargetFacts:
    """What the target server says about itself and the role we log in as."""

    version_num: int
    version: str
    system_identifier: str
    extensions: set[str]
    roles: set[str]
    user: str
    superuser: bool
    createdb: bool
    createrole: bool
    database_owner: str | None  # of the target database, when it exists
    data_directory: str | None  # when the role may read it
    superuser_extensions: set[str]  # only a superuser may create these (not trusted)
    template_extensions: set[str]  # already in template1, so in every new database


def read_target(target: PgTarget, database: str) -> TargetFacts:
    with connect(target.with_dbname("postgres")) as conn:
        user, superuser, createdb, createrole = conn.execute(
            "SELECT rolname, rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
        owner = conn.execute(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (database,)
        ).fetchone()
        data_directory = conn.execute(
            "SELECT setting FROM pg_settings WHERE name = 'data_directory'"
        ).fetchone()  # only for superusers and pg_read_all_settings
        return TargetFacts(
            version_num=server_version_num(conn),
            version=str(conn.execute("SHOW server_version").fetchone()[0]),
            system_identifier=str(
                conn.execute("SELECT system_identifier FROM pg_control_system()").fetchone()[0]
            ),
            extensions={row[0] for row in conn.execute("SELECT name FROM pg_available_extensions")},
            roles={row[0] for row in conn.execute("SELECT rolname FROM pg_roles")},
            user=str(user),
            superuser=bool(superuser),
            createdb=bool(createdb),
            createrole=bool(createrole),
            database_owner=str(owner[0]) if owner else None,
            data_directory=str(data_directory[0]) if data_directory else None,
            superuser_extensions={
                row[0]
                for row in conn.execute(
                    "SELECT DISTINCT name FROM pg_available_extension_versions WHERE superuser AND NOT trusted"
                )
            },
            template_extensions=_template_extensions(target),
        )


def _template_extensions(target: PgTarget) -> set[str]:
    with connect(target.with_dbname("template1")) as conn:
        return {row[0] for row in conn.execute("SELECT extname FROM pg_extension")}


def roles_named(schema: dict[str, Any]) -> set[str]:
    """The roles a backup's objects name: owners, grantees and grantors, default privileges' roles."""
    named: set[str] = set()
    for entry in (schema.get("acls") or {}).values():
        if isinstance(entry, list) and len(entry) >= 2:
            named.add(str(entry[1]))
            for item in entry[2] if len(entry) > 2 and entry[2] else []:
                grantee, _, rest = str(item).partition("=")
                named |= {grantee, rest.rpartition("/")[2]}
    for key in schema.get("default_acls") or {}:
        named.add(str(key).split(".", 1)[0])
    return {role.strip('"') for role in named if role and not role.startswith("pg_")}


def _space_problem(target: PgTarget, facts: TargetFacts, manifest: Manifest | None) -> str | None:
    """Free space, where this worker can tell: a server on this machine whose data directory it sees."""
    if manifest is None or facts.data_directory is None or target.host not in LOCAL_HOSTS:
        return None
    if not os.path.isdir(facts.data_directory):
        return None
    needed = int(manifest.uncompressed_bytes * RESTORED_SIZE_FACTOR)
    free = shutil.disk_usage(facts.data_directory).free
    if free >= needed:
        return None
    return (
        f"free space: {alerts.human_bytes(free)} free under {facts.data_directory}, the restore needs about "
        f"{alerts.human_bytes(needed)}"
    )


def target_problems(
    rt: Runtime[flow.DrSections],
    target: PgTarget,
    facts: TargetFacts,
    manifest: Manifest | None,
    *,
    database: str,
    replace: bool,
    globals_sql: str | None = None,
) -> list[str]:
    """Everything the restore will need that the target lacks, one line each."""
    problems = []
    dump_major = _dump_major(manifest)
    if dump_major is not None and major_of(facts.version_num) < dump_major:
        problems.append(
            f"server version: PostgreSQL {facts.version}, older than the backup's pg_dump {dump_major}: "
            f"restore into a server of major {dump_major} or newer"
        )
    missing = sorted(set(manifest.schema_.get("extensions", {}) if manifest else ()) - facts.extensions)
    if missing:
        problems.append(
            f"extensions: the server lacks {', '.join(missing)} (install their packages on it first)"
        )
    needed = set(manifest.schema_.get("extensions", {}) if manifest else ())
    untrusted = sorted((needed & facts.superuser_extensions) - facts.template_extensions)
    if untrusted and not facts.superuser:
        problems.append(
            f"privilege: only a superuser may create the extensions {', '.join(untrusted)}, and role "
            f"{facts.user!r} is not one: create them in template1 first (every new database then has "
            "them), or restore as a superuser"
        )
    exists = facts.database_owner is not None
    if _is_source(rt, manifest, target, database, facts.system_identifier) and not replace:
        problems.append(
            f"database {database!r} is the backup's own source: set replace to restore over it "
            "(it is renamed aside, not dropped)"
        )
    elif exists and not replace:
        problems.append(
            f"database {database!r} already exists: choose another target_database, or set replace to "
            "rename it aside and restore in its place"
        )
    if not (facts.superuser or facts.createdb):
        problems.append(
            f"privilege: role {facts.user!r} may not create databases (it needs CREATEDB, or a connection "
            "whose role has it)"
        )
    if exists and replace and not facts.superuser and facts.database_owner != facts.user:
        problems.append(
            f"privilege: role {facts.user!r} may not rename {database!r} aside: it is owned by "
            f"{facts.database_owner!r} (a rename needs its owner with CREATEDB, or a superuser)"
        )
    absent = sorted(roles_named(manifest.schema_) - facts.roles) if manifest else []
    if absent and not (facts.superuser or facts.createrole):
        shown = ", ".join(absent[:8]) + (f" and {len(absent) - 8} more" if len(absent) > 8 else "")
        problems.append(
            f"privilege: the backup's objects name roles the server lacks ({shown}), and role "
            f"{facts.user!r} may not create them (it needs CREATEROLE, or create them first)"
        )
    if globals_sql and not facts.superuser:
        privileged = {
            role: attributes
            for role, attributes in roles_engine.privileged_roles(globals_sql).items()
            if role not in facts.roles
        }
        if privileged:
            shown = "; ".join(f"{role} ({', '.join(a)})" for role, a in sorted(privileged.items()))
            problems.append(
                f"privilege: the backup's roles {shown} have attributes only a superuser may grant, and "
                f"role {facts.user!r} is not one: create these roles on the server first, or restore as "
                "a superuser"
            )
    space = _space_problem(target, facts, manifest)
    if space:
        problems.append(space)
    return problems


def check_target(
    rt: Runtime[flow.DrSections], resolved: Resolved, target: PgTarget, request: RestoreRequest
) -> RestorePlan:
    """Everything that must hold before a write; the plan a person approves. Raises naming what fails.

    ``target`` is the server ``request.target`` names, as its caller (the DAG's connection, the
    CLI's URL and environment) resolved it, password included."""
    target = rt.labelled(target)
    found = flow.sources(rt, resolved)
    manifest = found.manifest
    name = request.database or default_database(resolved)
    facts = read_target(target, name)
    globals_sql = load_globals(found.store, found.backup, manifest)
    problems = target_problems(
        rt,
        target,
        facts,
        manifest,
        database=name,
        replace=request.replace,
        globals_sql=globals_sql.decode() if globals_sql else None,
    )
    if problems:
        raise TargetRefusedError(
            f"the target {target.describe()} cannot take this restore; nothing was written:\n"
            + "\n".join(f"- {problem}" for problem in problems)
        )
    taken = datetime.fromisoformat(resolved.backup.timestamp)
    taken = taken if taken.tzinfo else taken.replace(tzinfo=UTC)
    store = found.store
    return RestorePlan(
        backup=store.url(resolved.backup.location) if store is not None else resolved.backup.location,
        backup_taken_at=taken.isoformat(),
        backup_age_hours=round((datetime.now(UTC) - taken).total_seconds() / 3600, 1),
        backup_size_bytes=manifest.size_bytes if manifest else None,
        target=target.describe().rsplit("/", 1)[0],
        database=name,
        rename_existing_to=aside_name(name, datetime.now(UTC)) if facts.database_owner is not None else None,
        target_server_version=facts.version,
    )


def aside_name(name: str, moment: datetime) -> str:
    suffix = f"_before_{moment:%Y%m%dT%H%M%S}"
    return name[: MAX_IDENTIFIER - len(suffix)] + suffix


def _is_source(
    rt: Runtime[flow.DrSections],
    manifest: Manifest | None,
    target: PgTarget,
    database: str,
    system_identifier: str,
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


def rename_aside(rt: Runtime[flow.DrSections], target: PgTarget, plan: RestorePlan) -> None:
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


def restore_backup(
    rt: Runtime[flow.DrSections], resolved: Resolved, target: PgTarget, plan: RestorePlan
) -> dict[str, Any]:
    """Rename the old database aside, restore as the drill does, and observe the result."""
    target = rt.labelled(target)
    found = flow.sources(rt, resolved)
    settings = rt.config.dr
    rename_aside(rt, target, plan)
    try:
        result = _recover(rt, found, target, plan)
    except StellarOpsError as exc:
        refused = "permission denied" in str(exc).lower() or "must be owner" in str(exc).lower()
        error = TargetRefusedError if refused else type(exc)
        raise error(f"{exc} ({what_was_written(target, plan)})") from None
    for warning in result.warnings:
        rt.warn(warning)
    rt.say(
        f"restored {found.backup.location} into {plan.database!r} on {plan.target} in {humanize_duration(result.seconds)}"
    )
    return {
        "rto_seconds": result.seconds,
        "roles_created": result.roles_created,
        "roles_from_globals": result.roles_from_globals,
        "warnings": result.warnings,
        "restore": {"engine": "pg_restore", "jobs": settings.restore_jobs, "server": plan.target},
        "observation": restore.observe(target, list(settings.sanity_queries), database=plan.database),
    }


def what_was_written(target: PgTarget, plan: RestorePlan) -> str:
    """After a failed restore: what is on the target now, for the page and the log."""
    kept = (
        f"; the previous database is intact as {plan.rename_existing_to!r}" if plan.rename_existing_to else ""
    )
    try:
        with connect(target.with_dbname("postgres")) as conn:
            created = (
                conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (plan.database,)).fetchone()
                is not None
            )
    except StellarOpsError:
        return f"the target could not be asked what was written{kept}"
    if created:
        return (
            f"the restore into {plan.database!r} stopped; the partly restored database is left there for "
            f"inspection{kept}"
        )
    return f"nothing was written: database {plan.database!r} was not created{kept}"


def _recover(
    rt: Runtime[flow.DrSections], found: flow.Sources, target: PgTarget, plan: RestorePlan
) -> restore.RestoreResult:
    job = replace(
        flow.restore_job(rt, found, target),
        database=restore.NewDatabase(plan.database, drop_existing=False),
        alter_existing_roles=False,  # the target's own roles are the operator's
    )
    return restore.recover(job, flow.work_dir(rt), rt.say)


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
    rt: Runtime[flow.DrSections],
    *,
    resolved: Resolved | None,
    plan: RestorePlan | None,
    restored: dict[str, Any],
    checks: list[dict[str, Any]],
    failed_steps: list[str],
    run_id: str | None,
    approvals: dict[str, dict[str, Any] | None] | None = None,
) -> dict[str, Any]:
    """``<key>.restore_report.json`` beside the backup, the metrics, and the outcome message.
    ``approvals``: who answered each approval step, what and when (None: not asked)."""
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
        "approvals": approvals or {},
        "finished_at": datetime.now(UTC).isoformat(),
    }
    if resolved is not None:
        flow.save_beside(rt, resolved.backup, RESTORE_REPORT_SUFFIX, document)
    rt.publish_metrics(DAG_ID, restore_metrics(document))
    where = f"{plan.database!r} on {plan.target}" if plan else "the target"
    approvers = [f"{a['by']}" for a in (approvals or {}).values() if a and a.get("chosen") == "Approve"]
    if approvers:
        where += f", approved by {' and '.join(approvers)}"
    if success:
        text = (
            f":white_check_mark: Restore done: {resolved.backup.location if resolved else '?'} into {where} in "
            f"{humanize_duration(float(restored.get('rto_seconds') or 0))} (RTO), {len(checks)} checks passed"
        )
        rt.notify(alerts.info_message(text))
    else:
        failing = [c["check"] for c in checks if not c["passed"]] + failed_steps
        text = f":red_circle: Restore into {where} FAILED: {', '.join(failing) or 'no check ran'}"
        if plan and plan.rename_existing_to:
            text += f"; the previous database is intact as {plan.rename_existing_to!r}"
    rt.say(text)
    return document
