"""The steps of ``db_migration``, defined once: the DAG runs one per task, ``stellar-ops migrate``
runs them in order with the approval asked on the terminal.

A migration reaches production only after it ran on a fresh restore of production:

1. :func:`check`: the script (and its rollback) read, parsed and checked against production's
   table sizes; both kept in the change log;
2. :func:`take_pre_change_backup`: a backup now, through ``db_backup``'s own steps (dumped,
   verified, published): the way back of last resort, named in every message that follows;
3. :func:`rehearse`: that very backup restored into a scratch server, the migration run there as
   it will run in production (its duration, the locks it took, the rows it touched, the schema
   diff), then the rollback script on the result, which must give back the schema before;
4. an approval by a platform lead of what the rehearsal showed;
5. :func:`apply`: production, if its schema is still the one rehearsed, with ``lock_timeout`` and
   ``statement_timeout``, in one transaction where the statements allow it;
6. :func:`verify`: the database answers, the sanity queries pass and the schema is the one the
   rehearsal ended with.

When the apply or the verification fails, :func:`way_back` pages with the rollback (rehearsed)
or the pre-change backup's restore, and :func:`roll_back` runs the one approved.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from stellar_ops.backup import flow as backup_flow
from stellar_ops.backup.config import BackupConfig, RetentionConfig
from stellar_ops.changes import apply as applying
from stellar_ops.changes import rehearsal as rehearsing
from stellar_ops.changes import script
from stellar_ops.changes.changelog import ChangeLog
from stellar_ops.changes.config import ChangesConfig
from stellar_ops.changes.sources import Source, read_source
from stellar_ops.core import alerts
from stellar_ops.dr import flow as dr_flow
from stellar_ops.dr.config import DrConfig
from stellar_ops.dr.engine.restore import RESTORED_DB
from stellar_ops.dr.verdicts import Verdict
from stellar_ops.health import services
from stellar_ops.health.config import HealthConfig
from stellar_ops.postgres.target import PgTarget, acting_role, connect
from stellar_ops.runtime import Runtime, RuntimeConfig

DAG_ID = "db_migration"
ALERT = "MigrationFailed"
RUNBOOK = "CHG-MIGRATION"
MIGRATION_FILE = "migration.sql"
ROLLBACK_FILE = "rollback.sql"
STEPS = (
    "check_script",
    "take_pre_change_backup",
    "rehearse_migration",
    "apply_migration",
    "verify_migration",
)
APPROVALS = ("approve_migration", "approve_rollback")
# the rehearsal's report in the approval (and so in XCom) is cut beyond this; the record has it all
APPROVAL_REPORT_CHARS = 2000


class MigrationSections(RuntimeConfig, Protocol):
    @property
    def backup(self) -> BackupConfig: ...
    @property
    def retention(self) -> RetentionConfig: ...
    @property
    def dr(self) -> DrConfig: ...
    @property
    def changes(self) -> ChangesConfig: ...
    @property
    def health(self) -> HealthConfig: ...


MigrationError = script.MigrationError


def change_log(rt: Runtime[MigrationSections]) -> ChangeLog:
    return ChangeLog(rt.store(), rt.config.changes.log_prefix)


@dataclass(frozen=True)
class Scripts:
    """The migration and its rollback as kept in the change log, parsed."""

    migration: tuple[script.Statement, ...]
    rollback: tuple[script.Statement, ...] | None


def _kept(rt: Runtime[MigrationSections], change: str, name: str, sha256: str) -> str:
    text = change_log(rt).get_text(change, name)
    kept = Source.of(name, text)
    if kept.sha256 != sha256:
        raise MigrationError(
            f"the kept {name} of {change} has sha256 {kept.sha256[:12]}, not the {sha256[:12]} that was "
            "checked: it was changed after the check; trigger the migration again"
        )
    return text


def scripts(rt: Runtime[MigrationSections], checked: Mapping[str, Any]) -> Scripts:
    change = checked["change_id"]
    text = _kept(rt, change, MIGRATION_FILE, checked["migration"]["sha256"])
    migration = script.parse_script(text, name=checked["migration"]["name"])
    rollback = None
    if checked.get("rollback"):
        rb_text = _kept(rt, change, ROLLBACK_FILE, checked["rollback"]["sha256"])
        rollback = script.parse_script(rb_text, name=checked["rollback"]["name"])
    return Scripts(migration, rollback)


def check(
    rt: Runtime[MigrationSections],
    change: str,
    *,
    migration: str,
    rollback: str | None,
    requested_by: str,
    reason: str | None,
) -> dict[str, Any]:
    """Read, parse and check the script and its rollback; keep both in the change log."""
    settings = rt.config.changes
    store = rt.store()
    source = read_source(migration, store=store, git_dir=settings.git_dir)
    rollback_source = read_source(rollback, store=store, git_dir=settings.git_dir) if rollback else None
    statements = script.parse_script(source.text, name=source.name)
    sizes = script.table_sizes(rt.database())
    checked = script.check_script(statements, sizes, settings)
    rollback_checked = None
    if rollback_source is not None:
        rollback_checked = script.check_script(
            script.parse_script(rollback_source.text, name=rollback_source.name), sizes, settings
        )
    for warning in checked.warnings:
        rt.warn(warning)
    log = change_log(rt)
    log.put_text(change, MIGRATION_FILE, source.text)
    if rollback_source is not None:
        log.put_text(change, ROLLBACK_FILE, rollback_source.text)
    summary = {
        "change_id": change,
        "migration": {
            "name": source.name,
            "sha256": source.sha256,
            "statements": len(checked.statements),
            "warnings": list(checked.warnings),
        },
        "rollback": None
        if rollback_source is None or rollback_checked is None
        else {
            "name": rollback_source.name,
            "sha256": rollback_source.sha256,
            "statements": len(rollback_checked.statements),
            "warnings": list(rollback_checked.warnings),
        },
    }
    log.update(
        change,
        status="checked",
        requested_by=requested_by,
        reason=reason,
        what=f"migration {source.describe()}",
        migration=summary["migration"],
        rollback=summary["rollback"],
        database=rt.database().describe(),
    )
    rt.say(
        f"{source.describe()}: {len(checked.statements)} statements, {len(checked.warnings)} warnings"
        + (f"; rollback {rollback_source.describe()}" if rollback_source else "; no rollback script")
    )
    return summary


def take_pre_change_backup(
    rt: Runtime[MigrationSections], change: str, *, slot: datetime, run_id: str | None, token: str
) -> dict[str, Any]:
    """A backup now, through ``db_backup``'s steps: dumped, checked on its way, verified, published."""
    draft = backup_flow.dump_to_s3(rt, slot, run_id=run_id, token=token)
    staged = backup_flow.stage_draft(rt, draft)
    draft = backup_flow.load_draft(rt, staged)
    verification = backup_flow.verify_backup(rt, draft)
    manifest = backup_flow.publish_backup(rt, draft, verification)
    backup_flow.discard_draft(rt, staged)
    where = rt.store().url(manifest.key)
    change_log(rt).update(
        change, status="backed up", pre_change_backup=manifest.key, way_back=f"db_restore of {where}"
    )
    rt.say(f"pre-change backup of {change}: {where}")
    return {"key": manifest.key, "url": where, "size_bytes": draft["size_bytes"]}


def _owned_as_production(rt: Runtime[MigrationSections], scratch: PgTarget) -> None:
    """The restored copy belongs to the role that owns production's database. A superuser's restore
    leaves it to the superuser, and since PostgreSQL 15 only the database's owner may create in
    ``public``: a ``CREATE INDEX`` that production's role may run would be refused in the rehearsal."""
    from psycopg import sql

    with connect(rt.database()) as conn:
        owner = conn.execute(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"
        ).fetchone()[0]
    with connect(scratch.with_dbname("postgres")) as conn:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [owner]).fetchone() is None:
            raise MigrationError(
                f"production's database owner {owner!r} is not in the restored copy: the backup's roles were "
                "not restored, so the migration cannot be rehearsed as production runs it"
            )
        conn.execute(
            sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
                sql.Identifier(RESTORED_DB), sql.Identifier(owner)
            )
        )


def rehearse(
    rt: Runtime[MigrationSections], checked: Mapping[str, Any], backup_key: str, scratch: str
) -> dict[str, Any]:
    """The pre-change backup restored into a scratch server, the migration and its rollback run
    there; a migration that fails here never reaches the approval."""
    change = checked["change_id"]
    parsed = scripts(rt, checked)
    resolved = dr_flow.resolve_backup(rt, backup_key, slot=datetime.now(UTC), month_scoped=False)
    with dr_flow.local_scratch(rt, scratch).running() as server:
        dr_flow.restore_backup(rt, resolved, server.target())
        copy = rt.labelled(server.target().with_dbname(RESTORED_DB))
        _owned_as_production(rt, server.target())
        outcome = rehearsing.rehearse(
            copy,
            parsed.migration,
            parsed.rollback,
            rt.config.changes,
            rt.say,
            role=acting_role(rt.database()),
        )
    report = outcome.as_dict()
    where = rt.store().url(backup_key)
    log = change_log(rt)
    if not outcome.ok:
        log.update(change, status="rehearsal failed", rehearsal=report)
        raise MigrationError(
            f"{change} failed in the rehearsal on a restore of the pre-change backup {where}: {outcome.error}; "
            "production was not touched and nobody is asked to approve it"
        )
    if parsed.rollback is not None and not (outcome.rollback or {}).get("restores_schema"):
        rolled = outcome.rollback or {}
        why = rolled.get("error") or (
            f"it leaves schema {str(rolled.get('fingerprint'))[:12]}, not {outcome.fingerprint_before[:12]}"
        )
        log.update(change, status="rehearsal failed", rehearsal=report)
        raise MigrationError(
            f"the rollback script of {change} does not give back the schema before the migration in the "
            f"rehearsal ({why}); fix it: a migration is approved only with a way back that works"
        )
    log.update(change, status="rehearsed", rehearsal=report)
    summary = outcome.summary()
    rt.say(summary)
    return {
        "change_id": change,
        "ok": True,
        "fingerprint_before": outcome.fingerprint_before,
        "fingerprint_after": outcome.fingerprint_after,
        "duration_seconds": outcome.duration_seconds,
        "summary": summary,
    }


def approval_body(
    checked: Mapping[str, Any],
    backup: Mapping[str, Any],
    rehearsed: Mapping[str, Any],
    *,
    record_url: str | None = None,
) -> str:
    """What the platform lead is asked to approve: the rehearsal's report and the way back; a
    report too long to read in the approval is cut, pointing at the whole one in the change log."""
    report = str(rehearsed["summary"])
    if len(report) > APPROVAL_REPORT_CHARS:
        cut = report[:APPROVAL_REPORT_CHARS].rsplit("\n", 1)[0]
        report = f"{cut}\n... (the whole report: {record_url or 'the change record'})"
    lines = [
        f"Change {checked['change_id']}: {checked['migration']['name']} "
        f"({checked['migration']['statements']} statements, sha256 {checked['migration']['sha256'][:12]}).",
        f"Pre-change backup: {backup['url']}.",
        "",
        "Rehearsal on a fresh restore of that backup:",
        report,
    ]
    warnings = list(checked["migration"].get("warnings") or [])
    if warnings:
        lines += ["", "Warnings:", *(f"- {w}" for w in warnings)]
    rollback = checked.get("rollback")
    lines += [
        "",
        f"Way back: the rollback script {rollback['name']} (rehearsed: it gives back the schema before)"
        if rollback
        else "Way back: no rollback script; a db_restore of the pre-change backup.",
    ]
    return "\n".join(lines)


def apply(
    rt: Runtime[MigrationSections], checked: Mapping[str, Any], rehearsed: Mapping[str, Any]
) -> dict[str, Any]:
    """Apply to production, if its schema is still the one rehearsed; a failure leaves it as it was
    (or, past a statement that cannot run in a transaction, says what was applied)."""
    change = checked["change_id"]
    parsed = scripts(rt, checked)
    target = rt.database()
    now, _ = applying.schema_fingerprint(target)
    log = change_log(rt)
    if now != rehearsed["fingerprint_before"]:
        log.update(change, status="refused: schema drifted")
        raise MigrationError(
            f"production's schema changed since the pre-change backup of {change} (fingerprint {now[:12]}, "
            f"rehearsed on {str(rehearsed['fingerprint_before'])[:12]}): nothing was applied; trigger the "
            "migration again so it is rehearsed on what production is now"
        )
    outcome = applying.apply_statements(target, parsed.migration, rt.config.changes, rt.say)
    log.update(change, status="applied" if outcome.ok else "apply failed", applied=outcome.as_dict())
    if not outcome.ok:
        state = (
            "production is as it was (its schema fingerprint is unchanged)"
            if not outcome.changed
            else f"production was changed by the first {outcome.statements_applied} statements"
        )
        raise MigrationError(f"{change} failed in production: {outcome.error}; {state}")
    rt.say(
        f"applied {change} in {outcome.duration_seconds:.2f}s; schema now {outcome.fingerprint_after[:12]}"
    )
    return outcome.as_dict()


def verify(
    rt: Runtime[MigrationSections], checked: Mapping[str, Any], rehearsed: Mapping[str, Any]
) -> list[Verdict]:
    """The database answers, the sanity queries pass, the schema is the rehearsal's result."""
    change = checked["change_id"]
    target = rt.database()
    verdicts: list[Verdict] = []
    try:
        verdicts.append(
            Verdict("database", True, services.postgres(target, rt.config.health.probe_timeout_seconds))
        )
    except ConnectionError as exc:
        verdicts.append(Verdict("database", False, str(exc)))
    failed_queries = []
    with connect(target) as conn:
        for query in rt.config.dr.sanity_queries:
            try:
                with conn.transaction():
                    conn.execute("SET TRANSACTION READ ONLY")
                    conn.execute(query).fetchall()
            except Exception as exc:  # noqa: BLE001 - the verdict names it
                failed_queries.append(f"{query}: {' '.join(str(exc).split())[:200]}")
    count = len(rt.config.dr.sanity_queries)
    verdicts.append(
        Verdict(
            "sanity_queries", not failed_queries, "; ".join(failed_queries) or f"{count} queries answered"
        )
    )
    fingerprint, _ = applying.schema_fingerprint(target)
    expected = str(rehearsed["fingerprint_after"])
    verdicts.append(
        Verdict(
            "schema",
            fingerprint == expected,
            f"fingerprint {fingerprint[:12]}"
            + (
                " is the rehearsal's"
                if fingerprint == expected
                else f", the rehearsal ended with {expected[:12]}"
            ),
        )
    )
    failed = [v for v in verdicts if not v.passed]
    change_log(rt).update(
        change,
        status="verified" if not failed else "verification failed",
        verification=[v.as_dict() for v in verdicts],
    )
    for verdict in verdicts:
        (rt.say if verdict.passed else rt.warn)(f"{verdict.check}: {verdict.detail}")
    if failed:
        raise MigrationError(
            f"{change} was applied but production fails its checks: "
            + "; ".join(f"{v.check}: {v.detail}" for v in failed)
        )
    return verdicts


def production_changed(rt: Runtime[MigrationSections], rehearsed: Mapping[str, Any] | None) -> bool:
    if not rehearsed:
        return False
    now, _ = applying.schema_fingerprint(rt.database())
    return bool(now != rehearsed["fingerprint_before"])


def restore_conf(rt: Runtime[MigrationSections], backup_key: str) -> dict[str, Any]:
    """``db_restore``'s params for the way back of last resort: the pre-change backup over production."""
    return {
        "backup": backup_key,
        "target_conn_id": rt.config.changes.restore_conn_id,
        "target_database": rt.database().dbname,
        "replace": True,
    }


def way_back(
    rt: Runtime[MigrationSections],
    checked: Mapping[str, Any],
    backup: Mapping[str, Any] | None,
    rehearsed: Mapping[str, Any] | None,
    *,
    failed_step: str,
    approval_url: str | None,
) -> dict[str, Any]:
    """Page with the way back. Returns whether production differs from before the change."""
    change = checked["change_id"]
    changed = production_changed(rt, rehearsed)
    lines = [f"Pre-change backup: {backup['url'] if backup else 'none was taken'}."]
    if not changed:
        lines.append("Production's schema is the one before the change: nothing to roll back.")
    elif checked.get("rollback"):
        lines.append(
            f"Way back: the rollback script {checked['rollback']['name']}, rehearsed on the restore "
            "(it gave back the schema before)"
            + (f"; approve it here: {approval_url}" if approval_url else "")
        )
    if changed and backup:
        conf = restore_conf(rt, backup["key"])
        lines.append(
            "Or: db_restore with "
            + ", ".join(f"{k}={v}" for k, v in conf.items())
            + (
                " (approve the rollback without a script and it is started, filled in)"
                if not checked.get("rollback")
                else ""
            )
        )
    finding = alerts.Finding(
        alert_name=ALERT,
        severity="P1" if changed else "P2",
        summary=f"{change} failed at {failed_step}"
        + ("; production was changed" if changed else "; production is as it was"),
        runbook=RUNBOOK,
        dag_id=DAG_ID,
        details=tuple(lines),
        labels={"change_id": change},
    )
    rt.alert(finding)
    change_log(rt).update(change, way_back_offered=lines, production_changed=changed)
    return {"production_changed": changed, "lines": lines}


def roll_back(
    rt: Runtime[MigrationSections], checked: Mapping[str, Any], rehearsed: Mapping[str, Any]
) -> dict[str, Any]:
    """Run the rehearsed rollback script in production; the schema must be the one before."""
    change = checked["change_id"]
    parsed = scripts(rt, checked)
    if parsed.rollback is None:
        raise MigrationError(f"{change} has no rollback script")
    target = rt.database()
    started = time.monotonic()
    outcome = applying.apply_statements(target, parsed.rollback, rt.config.changes, rt.say)
    fingerprint, _ = applying.schema_fingerprint(target)
    restored = fingerprint == rehearsed["fingerprint_before"]
    result = {
        "ok": outcome.ok and restored,
        "error": outcome.error,
        "fingerprint": fingerprint,
        "restores_schema": restored,
        "seconds": round(time.monotonic() - started, 3),
    }
    change_log(rt).update(
        change, status="rolled back" if result["ok"] else "rollback failed", rolled_back=result
    )
    if not outcome.ok:
        raise MigrationError(f"the rollback script of {change} failed in production: {outcome.error}")
    if not restored:
        raise MigrationError(
            f"the rollback script of {change} ran, but production's schema is {fingerprint[:12]}, not "
            f"{str(rehearsed['fingerprint_before'])[:12]} as before the change: restore the pre-change backup"
        )
    rt.say(f"rolled back {change}: production's schema is the one before the change again")
    return result


def finish(
    rt: Runtime[MigrationSections],
    change: str,
    *,
    failed_steps: list[str],
    approvals: dict[str, Any],
    rejected: bool = False,
) -> dict[str, Any]:
    """The change's last word in its record: its result and who approved."""
    if rejected:
        result = "rejected: nothing was applied"
    else:
        result = "failed at " + ", ".join(failed_steps) if failed_steps else "done"
    log = change_log(rt)
    record = log.close(
        change,
        result,
        approval=approvals.get("approve_migration"),
        rollback_approval=approvals.get("approve_rollback"),
    )
    rt.say(f"{change}: {result}; recorded at {rt.store().url(log.record_key(change))}")
    return {"change_id": change, "result": result, "status": record.get("status")}
