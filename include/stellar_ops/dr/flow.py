"""The DR test's steps, defined once.

``dr_restore_test`` runs one step per task (the task ids are the step names) and
``stellar-ops dr-test`` runs them in order on the local scratch backend. State between steps is
plain data (the resolved backup, the scratch handle, where the observation of the restored
database is), so consecutive tasks may run on different workers. The observation (every table's
row count and the whole schema) grows with the database: the DAGs keep it in the bucket (or, for
a local backup, in ``dr.work_dir``) and pass its location (:func:`stage_observation`).
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from stellar_ops.catalogue import source
from stellar_ops.catalogue.keys import DR_REPORT_SUFFIX, INCOMING_DIR
from stellar_ops.catalogue.location import BackupLocation
from stellar_ops.catalogue.manifest import Manifest
from stellar_ops.catalogue.source import ResolvedBackup
from stellar_ops.core import alerts
from stellar_ops.core.errors import RestoreError, StellarOpsError
from stellar_ops.dr import rehearsal, report, verdicts
from stellar_ops.dr.config import DrConfig
from stellar_ops.dr.engine import restore, staging
from stellar_ops.dr.scratch import DockerScratch, LocalScratch
from stellar_ops.dr.verdicts import Verdict
from stellar_ops.postgres.target import PgTarget, connect, major_of, server_version_num
from stellar_ops.runtime import Runtime, RuntimeConfig
from stellar_ops.storage.s3 import S3Store

DAG_ID = "dr_restore_test"
OBSERVATION_SUFFIX = ".observation.json"
CHECK_STEPS = ("verify_row_counts", "verify_schema", "verify_sanity_queries")
# the point-in-time rehearsal (dr.rehearsal) after the restore: its recovery, then its check
STEPS = ("resolve_backup", "check_backup", "create_scratch", "restore_backup", *CHECK_STEPS, *rehearsal.STEPS)


class DrSections(RuntimeConfig, Protocol):
    """The sections the DR test and the restore read: ``backup`` (where), ``dr``, and the runtime's own."""

    @property
    def backup(self) -> BackupLocation: ...
    @property
    def dr(self) -> DrConfig: ...


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


def resolve_backup(rt: Runtime[DrSections], choice: str, *, slot: datetime, month_scoped: bool) -> Resolved:
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


def sources(rt: Runtime[DrSections], resolved: Resolved) -> Sources:
    backup = resolved.backup
    store = rt.store() if backup.source == "s3" else None
    return Sources(store, backup, source.load_manifest(store, backup))


def check_backup(rt: Runtime[DrSections], resolved: Resolved) -> dict[str, Any]:
    """Stream the backup once: size and sha256 against its manifest, frames, the archive."""
    found = sources(rt, resolved)
    outcome = source.check_backup(found.store, found.backup, found.manifest, rt.binaries)
    for warning in outcome["warnings"]:
        rt.warn(warning)
    checked = "match" if found.manifest else "read"
    rt.say(f"backup {found.backup.location}: size and sha256 {checked}; archive readable")
    return outcome


def work_dir(rt: Runtime[DrSections]) -> Path:
    path = Path(rt.config.dr.work_dir or tempfile.gettempdir())
    path.mkdir(parents=True, exist_ok=True)
    return path


def local_scratch(rt: Runtime[DrSections], name: str) -> LocalScratch:
    settings = rt.config.dr
    return LocalScratch(
        name=name,
        work_dir=work_dir(rt),
        binaries=rt.binaries,
        run_as=settings.run_as_user,
        settings=settings.scratch_settings,
        startup_timeout=settings.startup_timeout_seconds,
    )


def docker_scratch(
    rt: Runtime[DrSections], client: Any, name: str, image: str | None = None
) -> DockerScratch:
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


def server_major(rt: Runtime[DrSections]) -> int:
    """The source database's server major: the docker scratch server runs the same."""
    with connect(rt.database()) as conn:
        return major_of(server_version_num(conn))


def restore_job(rt: Runtime[DrSections], found: Sources, server: PgTarget) -> restore.RestoreJob:
    """Restoring ``found`` into a scratch database on ``server``, as the ``dr`` section says."""
    settings = rt.config.dr
    return restore.RestoreJob(
        backup=found.backup,
        store=found.store,
        manifest=found.manifest,
        server=server,
        binaries=rt.binaries,
        jobs=settings.restore_jobs,
        globals_sql=source.load_globals(found.store, found.backup, found.manifest),
        memory_dir=staging.MEMORY_DIR if settings.stage_in_memory else None,
    )


def restore_backup(rt: Runtime[DrSections], resolved: Resolved, server: PgTarget) -> dict[str, Any]:
    """Download (checked again on the way), restore into ``server``, and observe the result."""
    server = rt.labelled(server)
    found = sources(rt, resolved)
    settings = rt.config.dr
    result = restore.recover(restore_job(rt, found, server), work_dir(rt), rt.say)
    for warning in result.warnings:
        rt.warn(warning)
    rt.say(
        f"restored {found.backup.location} in {result.seconds:.1f}s with pg_restore -j {settings.restore_jobs}: the drill's restore time, on a scratch server tuned for throwaway use"
    )
    return {
        "rto_seconds": result.seconds,
        "roles_created": result.roles_created,
        "roles_from_globals": result.roles_from_globals,
        "warnings": result.warnings,
        "restore": report.restore_conditions(settings),
        "observation": restore.observe(server, list(settings.sanity_queries)),
    }


def observation_location(rt: Runtime[DrSections], backup: ResolvedBackup, run_id: str) -> str:
    """Where one run's observation of the restored database waits for its checks: under the
    bucket's ``.incoming/`` (retention removes what is older than ``backup.stale_upload_hours``)
    for a backup in S3, in ``dr.work_dir`` for a local one."""
    name = (
        f"{backup.location.rsplit('/', 1)[-1]}.{re.sub(r'[^A-Za-z0-9._-]', '_', run_id)}{OBSERVATION_SUFFIX}"
    )
    if backup.source == "s3":
        return f"{rt.config.backup.prefix}{INCOMING_DIR}{name}"
    return str(work_dir(rt) / name)


def stage_observation(
    rt: Runtime[DrSections], resolved: Resolved, restored: dict[str, Any], run_id: str
) -> dict[str, Any]:
    """``restored`` with its observation put aside (see :func:`observation_location`): where it is,
    and a few counts, instead of every table's row count and schema."""
    observation = restored["observation"]
    location = observation_location(rt, resolved.backup, run_id)
    if resolved.backup.source == "s3":
        rt.store().put_json(location, observation)
    else:
        Path(location).write_text(json.dumps(observation, sort_keys=True, default=str))
    sanity = observation.get("sanity") or []
    return {
        **{k: v for k, v in restored.items() if k != "observation"},
        "observation_at": location,
        "tables": len(observation.get("row_counts") or {}),
        "sanity_failed": sum(1 for query in sanity if not query.get("ok")),
    }


def load_observation(rt: Runtime[DrSections], resolved: Resolved, restored: dict[str, Any]) -> dict[str, Any]:
    """``restored`` whole again, with the observation :func:`stage_observation` put aside (one that
    carries its observation, from an earlier version's run, is taken as it is)."""
    if "observation" in restored:
        return restored
    location = restored["observation_at"]
    if resolved.backup.source == "s3":
        store = rt.store()
        if not store.exists(location):
            raise _observation_gone(store.url(location))
        observation = store.get_json(location)
    else:
        if not Path(location).is_file():
            raise _observation_gone(location)
        observation = json.loads(Path(location).read_text())
    return {**restored, "observation": observation}


def _observation_gone(where: str) -> Exception:
    return RestoreError(
        f"the observation of the restored database {where} is gone (removed as stale?): clear restore_backup"
    )


def discard_observation(rt: Runtime[DrSections], resolved: Resolved | None, restored: dict[str, Any]) -> None:
    """Remove the observation once the report is written; a leftover in S3 goes with retention."""
    location = restored.get("observation_at")
    if not location or resolved is None:
        return
    try:
        if resolved.backup.source == "s3":
            rt.store().delete(location)
        else:
            Path(location).unlink(missing_ok=True)
    except (StellarOpsError, OSError) as exc:  # the report is written; a leftover is only clutter
        rt.warn(f"the observation {location} stays: {exc}")


def verify_row_counts(rt: Runtime[DrSections], resolved: Resolved, restored: dict[str, Any]) -> Verdict:
    manifest = sources(rt, resolved).manifest
    return _said(
        rt,
        verdicts.row_counts(manifest, restored["observation"]["row_counts"], list(rt.config.dr.key_tables)),
    )


def verify_schema(rt: Runtime[DrSections], resolved: Resolved, restored: dict[str, Any]) -> Verdict:
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


def verify_sanity_queries(rt: Runtime[DrSections], restored: dict[str, Any]) -> Verdict:
    return _said(rt, verdicts.sanity_queries(restored["observation"]["sanity"]))


def _said(rt: Runtime[DrSections], verdict: Verdict) -> Verdict:
    rt.say(f"{verdict.check}: {verdict.detail}")
    return verdict


def publish_report(
    rt: Runtime[DrSections],
    *,
    resolved: Resolved | None,
    checked: dict[str, Any],
    restored: dict[str, Any],
    checks: list[dict[str, Any]],
    failed_steps: list[str],
    backend: str,
    run_id: str | None,
    pitr: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON report beside the backup, the metrics, and the summary line when it passed;
    ``pitr`` is the point-in-time rehearsal's outcome (:func:`rehearsal.restore_to_moment`)."""
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
        pitr=pitr,
    )
    if resolved:
        save_beside(rt, resolved.backup, DR_REPORT_SUFFIX, document)
    rt.publish_metrics(DAG_ID, report.dr_metrics(document))
    rt.say(report.summary_line(document))
    if document["success"]:
        rt.notify(alerts.info_message(report.summary_line(document)))
    return document


def save_beside(
    rt: Runtime[DrSections], backup: ResolvedBackup, suffix: str, document: dict[str, Any]
) -> None:
    """A report beside the backup it is about: in S3, or next to a local file."""
    target = backup.location + suffix
    if backup.source == "s3":
        rt.store().put_json(target, document)
        rt.say(f"report saved to {rt.store().url(target)}")
    else:
        Path(target).write_text(json.dumps(document, indent=2, sort_keys=True))
        rt.say(f"report saved to {target}")
