"""The DR test's steps, defined once.

``dr_restore_test`` runs one step per task (the task ids are the step names) and
``stellar-ops dr-test`` runs them in order on the local scratch backend. State between steps is
plain data (the resolved backup, the scratch handle, the observation of the restored database),
so consecutive tasks may run on different workers.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stellar_ops.backups import source
from stellar_ops.backups.keys import DR_REPORT_SUFFIX
from stellar_ops.backups.manifest import Manifest
from stellar_ops.backups.source import ResolvedBackup
from stellar_ops.core import alerts
from stellar_ops.dr import report, verdicts
from stellar_ops.dr.engine import restore, staging
from stellar_ops.dr.scratch import DockerScratch, LocalScratch
from stellar_ops.dr.verdicts import Verdict
from stellar_ops.postgres.target import PgTarget, connect, major_of, server_version_num
from stellar_ops.runtime import Runtime
from stellar_ops.storage.s3 import S3Store

DAG_ID = "dr_restore_test"
CHECK_STEPS = ("verify_row_counts", "verify_schema", "verify_sanity_queries")
STEPS = ("resolve_backup", "check_backup", "create_scratch", "restore_backup", *CHECK_STEPS)


@dataclass(frozen=True)
class Resolved:
    """The backup under test and the moment its RPO is measured at; travels through XCom."""

    backup: ResolvedBackup
    reference: datetime

    def as_dict(self) -> dict[str, Any]:
        return {**self.backup.as_dict(), "reference": self.reference.isoformat()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Resolved:
        fields = {k: v for k, v in data.items() if k != "reference"}
        return cls(ResolvedBackup.from_dict(fields), datetime.fromisoformat(data["reference"]))


@dataclass(frozen=True)
class Sources:
    store: S3Store | None
    backup: ResolvedBackup
    manifest: Manifest | None


def resolve_backup(rt: Runtime, choice: str, *, slot: datetime, month_scoped: bool) -> Resolved:
    """``choice`` ('latest', a key, a local path); for month M, 'latest' is M's newest backup."""
    store = None if choice.startswith("/") else rt.store()
    settings = rt.config.backup
    backup = source.resolve(
        store,
        settings.prefix,
        choice,
        reference=slot,
        month_scoped=month_scoped,
        legacy_prefix=settings.legacy_prefix,
    )
    scope = f" (newest before the end of {slot:%Y-%m})" if month_scoped and choice == "latest" else ""
    rt.say(f"backup to test{scope}: {backup.location} ({backup.dump_format}, {backup.state})")
    now = datetime.now(UTC)
    return Resolved(backup, min(now, source.month_end(slot)) if month_scoped else now)


def sources(rt: Runtime, resolved: Resolved) -> Sources:
    backup = resolved.backup
    store = rt.store() if backup.source == "s3" else None
    return Sources(store, backup, source.load_manifest(store, backup))


def check_backup(rt: Runtime, resolved: Resolved) -> dict[str, Any]:
    """Stream the backup once: size and sha256 against its manifest, frames, the archive."""
    found = sources(rt, resolved)
    outcome = source.check_backup(found.store, found.backup, found.manifest, rt.binaries)
    for warning in outcome["warnings"]:
        rt.warn(warning)
    checked = "match" if found.manifest else "read"
    rt.say(f"backup {found.backup.location}: size and sha256 {checked}; archive readable")
    return outcome


def work_dir(rt: Runtime) -> Path:
    path = Path(rt.config.dr.work_dir or tempfile.gettempdir())
    path.mkdir(parents=True, exist_ok=True)
    return path


def local_scratch(rt: Runtime, name: str) -> LocalScratch:
    settings = rt.config.dr
    return LocalScratch(
        name=name,
        work_dir=work_dir(rt),
        binaries=rt.binaries,
        run_as=settings.run_as_user,
        settings=settings.scratch_settings,
        startup_timeout=settings.startup_timeout_seconds,
    )


def docker_scratch(rt: Runtime, client: Any, name: str, image: str | None = None) -> DockerScratch:
    settings = rt.config.dr
    return DockerScratch(
        client=client,
        name=name,
        image=image or "postgres",
        network=settings.docker_network,
        host_address=settings.docker_host_address,
        settings=settings.scratch_settings,
        startup_timeout=settings.startup_timeout_seconds,
    )


def server_major(rt: Runtime) -> int:
    """The source database's server major: the docker scratch server runs the same."""
    with connect(rt.database()) as conn:
        return major_of(server_version_num(conn))


def restore_backup(rt: Runtime, resolved: Resolved, server: PgTarget) -> dict[str, Any]:
    """Download (checked again on the way), restore into ``server``, and observe the result."""
    found = sources(rt, resolved)
    settings = rt.config.dr
    result = restore.recover(
        server,
        found.store,
        found.backup,
        found.manifest,
        work_dir(rt),
        jobs=settings.restore_jobs,
        engine=settings.restore_engine,
        globals_sql=source.load_globals(found.store, found.backup, found.manifest),
        memory_dir=staging.MEMORY_DIR if settings.stage_in_memory else None,
        binaries=rt.binaries,
        say=rt.say,
    )
    for warning in result.warnings:
        rt.warn(warning)
    rt.say(
        f"restored {found.backup.location} in {result.seconds:.1f}s with the {settings.restore_engine} engine "
        f"({settings.restore_jobs} sessions): the drill's restore time, on a scratch server tuned for throwaway use"
    )
    return {
        "rto_seconds": result.seconds,
        "roles_created": result.roles_created,
        "roles_from_globals": result.roles_from_globals,
        "warnings": result.warnings,
        "restore": report.restore_conditions(settings),
        "observation": restore.observe(server, list(settings.sanity_queries)),
    }


def verify_row_counts(rt: Runtime, resolved: Resolved, restored: dict[str, Any]) -> Verdict:
    manifest = sources(rt, resolved).manifest
    return _said(
        rt,
        verdicts.row_counts(manifest, restored["observation"]["row_counts"], list(rt.config.dr.key_tables)),
    )


def verify_schema(rt: Runtime, resolved: Resolved, restored: dict[str, Any]) -> Verdict:
    settings = rt.config.dr
    manifest = sources(rt, resolved).manifest
    observation = restored["observation"]
    verdict = verdicts.schema(
        manifest,
        observation["schema"],
        list(settings.key_tables),
        settings.min_tables,
        observation.get("sequence_values"),
    )
    return _said(rt, verdict)


def verify_sanity_queries(rt: Runtime, restored: dict[str, Any]) -> Verdict:
    return _said(rt, verdicts.sanity_queries(restored["observation"]["sanity"]))


def _said(rt: Runtime, verdict: Verdict) -> Verdict:
    rt.say(f"{verdict.check}: {verdict.detail}")
    return verdict


def publish_report(
    rt: Runtime,
    *,
    resolved: Resolved | None,
    checked: dict[str, Any],
    restored: dict[str, Any],
    checks: list[dict[str, Any]],
    failed_steps: list[str],
    backend: str,
    run_id: str | None,
) -> dict[str, Any]:
    """The JSON report beside the backup, the metrics, and the summary line when it passed."""
    manifest = sources(rt, resolved).manifest if resolved else None
    rpo = None
    if resolved:
        taken = source.backup_time(resolved.backup, manifest)
        rpo = verdicts.rpo_seconds(taken, resolved.reference)
    document = report.report(
        backup=resolved.as_dict() if resolved else {"location": "unresolved"},
        manifest=manifest,
        verdicts=checks,
        failed_steps=failed_steps,
        rto_seconds=restored.get("rto_seconds"),
        rpo_seconds=rpo,
        scratch_backend=backend,
        run_id=run_id,
        warnings=list(checked.get("warnings", [])) + list(restored.get("warnings", [])),
        restore=restored.get("restore") or report.restore_conditions(rt.config.dr),
    )
    if resolved:
        save_beside(rt, resolved.backup, DR_REPORT_SUFFIX, document)
    rt.publish_metrics(DAG_ID, report.dr_metrics(document))
    rt.say(report.summary_line(document))
    if document["success"]:
        rt.notify(alerts.info_message(report.summary_line(document)))
    return document


def save_beside(rt: Runtime, backup: ResolvedBackup, suffix: str, document: dict[str, Any]) -> None:
    """A report beside the backup it is about: in S3, or next to a local file."""
    target = backup.location + suffix
    if backup.source == "s3":
        rt.store().put_json(target, document)
        rt.say(f"report saved to {rt.store().url(target)}")
    else:
        Path(target).write_text(json.dumps(document, indent=2, sort_keys=True))
        rt.say(f"report saved to {target}")
