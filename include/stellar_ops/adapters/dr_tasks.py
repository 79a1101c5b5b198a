"""Task bodies of ``dr_restore_test``: each is the single call its DAG task makes.

State between tasks travels only through XCom (locations, the scratch handle, observations) and
S3, never through a worker's disk, so consecutive tasks may run on different workers.
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stellar_ops import alerts, backup_source, dr, metrics, restore, staging
from stellar_ops.adapters.alerting import send
from stellar_ops.adapters.assets import BACKUP_ASSET
from stellar_ops.adapters.connections import pg_target, s3_store
from stellar_ops.adapters.metrics import send_metrics
from stellar_ops.adapters.runtime import checked, current_context, load_config, run_slot, task_logger
from stellar_ops.backup_source import ResolvedBackup
from stellar_ops.config import StellarOpsConfig
from stellar_ops.errors import ConfigError
from stellar_ops.manifest import Manifest
from stellar_ops.pg import connect, find_binaries, major_of, server_version_num
from stellar_ops.scratch import DockerScratch, LocalScratch, docker_image, scratch_name

log = task_logger()

CHECK_TASKS = ("verify_row_counts", "verify_schema", "verify_sanity_queries")
STEP_TASKS = ("resolve_backup", "check_backup", "create_scratch", "restore_backup", *CHECK_TASKS)


def _run_type(context: Any) -> str:
    run_type = context["dag_run"].run_type
    return str(getattr(run_type, "value", run_type))


@checked
def resolve_backup(choice: str) -> dict[str, Any]:
    from airflow.sdk.exceptions import AirflowSkipException

    config = load_config()
    context = current_context()
    run_type = _run_type(context)
    if run_type == "asset_triggered":
        if not config.dr.trigger_on_new_backup:
            raise AirflowSkipException("DR tests on each new backup are off (dr.trigger_on_new_backup)")
        events = context["triggering_asset_events"][BACKUP_ASSET]
        choice = events[-1].extra["key"]
        log.info("testing the backup that triggered this run: %s", choice)
    store = None if choice.startswith("/") else s3_store(config)
    month_scoped = run_type in ("scheduled", "backfill")
    slot = run_slot(context)
    backup = backup_source.resolve(
        store, config.backup.prefix, choice, reference=slot, month_scoped=month_scoped
    )
    scope = f" (newest before the end of {slot:%Y-%m})" if month_scoped and choice == "latest" else ""
    log.info("backup to test%s: %s (%s, %s)", scope, backup.location, backup.dump_format, backup.state)
    reference = min(datetime.now(UTC), backup_source.month_end(slot)) if month_scoped else datetime.now(UTC)
    return {**backup.as_dict(), "reference": reference.isoformat()}


def _backup(resolved: dict[str, Any]) -> ResolvedBackup:
    return ResolvedBackup.from_dict({k: v for k, v in resolved.items() if k != "reference"})


def _sources(
    config: StellarOpsConfig, resolved: dict[str, Any]
) -> tuple[Any, ResolvedBackup, Manifest | None]:
    backup = _backup(resolved)
    store = s3_store(config) if backup.source == "s3" else None
    return store, backup, backup_source.load_manifest(store, backup)


@checked
def check_backup(resolved: dict[str, Any]) -> dict[str, Any]:
    config = load_config()
    store, backup, manifest = _sources(config, resolved)
    outcome = backup_source.check_backup(store, backup, manifest, find_binaries(config.backup.pg_bin_dir))
    for warning in outcome["warnings"]:
        log.warning("%s", warning)
    log.info(
        "backup %s: size and sha256 %s; archive readable", backup.location, "match" if manifest else "read"
    )
    return outcome


def _server_major(config: StellarOpsConfig) -> int:
    with connect(pg_target(config.connections.db)) as conn:
        return major_of(server_version_num(conn))


def _docker(config: StellarOpsConfig, name: str, image: str | None = None) -> DockerScratch:
    from stellar_ops.adapters.connections import docker_client

    return DockerScratch(
        client=docker_client(config.connections.docker),
        name=name,
        image=image or "postgres",
        network=config.dr.docker_network,
        host_address=config.dr.docker_host_address,
        settings=config.dr.scratch_settings,
        startup_timeout=config.dr.startup_timeout_seconds,
    )


@checked
def create_scratch(backend: str) -> dict[str, Any]:
    """Setup: reserve (local) or start (docker) the scratch server; the handle holds no secret."""
    config = load_config()
    context = current_context()
    name = scratch_name(context["dag_run"].run_id)
    if backend == "local":
        log.info("local scratch server %s will run inside restore_backup on its worker", name)
        return {"backend": "local", "name": name}
    if backend != "docker":
        raise ConfigError(f"scratch_backend must be 'local' or 'docker', got {backend!r}")
    image = docker_image(config.dr.docker_image, _server_major(config))
    handle = _docker(config, name, image).create(wait=False)
    log.info("started scratch container %s from %s", name, image)
    return {**handle, "image": image}


def _work_dir(config: StellarOpsConfig) -> Path:
    path = Path(config.dr.work_dir or tempfile.gettempdir())
    path.mkdir(parents=True, exist_ok=True)
    return path


def _local(config: StellarOpsConfig, name: str) -> LocalScratch:
    return LocalScratch(
        name=name,
        work_dir=_work_dir(config),
        binaries=find_binaries(config.backup.pg_bin_dir),
        run_as=config.dr.run_as_user,
        settings=config.dr.scratch_settings,
        startup_timeout=config.dr.startup_timeout_seconds,
    )


@checked
def restore_backup(resolved: dict[str, Any], handle: dict[str, Any], keep_on_failure: bool) -> dict[str, Any]:
    """Download (checked again on the way), restore, and observe the result."""
    config = load_config()
    store, backup, manifest = _sources(config, resolved)
    if handle["backend"] == "local":
        with _local(config, handle["name"]).running(keep_on_failure=keep_on_failure) as server:
            return _recover_and_observe(config, store, backup, manifest, server.target())
    docker = _docker(config, handle["name"], handle.get("image"))
    docker.wait_ready(handle)
    return _recover_and_observe(config, store, backup, manifest, docker.target(handle))


def _recover_and_observe(
    config: StellarOpsConfig, store: Any, backup: ResolvedBackup, manifest: Manifest | None, server: Any
) -> dict[str, Any]:
    result = restore.recover(
        server,
        store,
        backup,
        manifest,
        _work_dir(config),
        jobs=config.dr.restore_jobs,
        memory_dir=staging.MEMORY_DIR if config.dr.stage_in_memory else None,
        binaries=find_binaries(config.backup.pg_bin_dir),
        say=log.info,
    )
    log.info("recovered %s in %.1fs (RTO: download and restore)", backup.location, result.seconds)
    return {
        "rto_seconds": result.seconds,
        "roles_created": result.roles_created,
        "observation": restore.observe(server, list(config.dr.sanity_queries)),
    }


def _manifest(resolved: dict[str, Any]) -> Manifest | None:
    config = load_config()
    _, _, manifest = _sources(config, resolved)
    return manifest


@checked
def verify_row_counts(resolved: dict[str, Any], restored: dict[str, Any]) -> dict[str, Any]:
    config = load_config()
    verdict = dr.row_counts(
        _manifest(resolved), restored["observation"]["row_counts"], list(config.dr.key_tables)
    )
    log.info("%s: %s", verdict.check, verdict.detail)
    verdict.raise_if_failed()
    return verdict.as_dict()


@checked
def verify_schema(resolved: dict[str, Any], restored: dict[str, Any]) -> dict[str, Any]:
    config = load_config()
    verdict = dr.schema(
        _manifest(resolved),
        restored["observation"]["schema"],
        list(config.dr.key_tables),
        config.dr.min_tables,
    )
    log.info("%s: %s", verdict.check, verdict.detail)
    verdict.raise_if_failed()
    return verdict.as_dict()


@checked
def verify_sanity_queries(restored: dict[str, Any]) -> dict[str, Any]:
    verdict = dr.sanity_queries(restored["observation"]["sanity"])
    log.info("%s: %s", verdict.check, verdict.detail)
    verdict.raise_if_failed()
    return verdict.as_dict()


def _states(ti: Any, task_ids: tuple[str, ...]) -> dict[str, str]:
    states = ti.get_task_states(dag_id=ti.dag_id, run_ids=[ti.run_id], task_ids=list(task_ids))
    return {k: str(v) for k, v in states.get(ti.run_id, {}).items()}


@checked
def drop_scratch(handle: dict[str, Any] | None, keep_on_failure: bool) -> list[str]:
    """Teardown: remove the scratch server whatever happened (unless kept for debugging)."""
    config = load_config()
    context = current_context()
    if handle is None:
        log.info("no scratch server was reserved")
        return []
    failed = [t for t, s in _states(context["ti"], STEP_TASKS).items() if s in ("failed", "upstream_failed")]
    if keep_on_failure and failed:
        log.warning("keeping scratch server %s for debugging (failed: %s)", handle["name"], ", ".join(failed))
        return []
    if handle["backend"] == "local":
        removed = _local(config, handle["name"]).remove_leftovers()
    else:
        removed = [handle["name"]] if _docker(config, handle["name"]).remove() else []
    log.info("removed %s", ", ".join(removed) if removed else f"nothing: {handle['name']} was already gone")
    return removed


@checked
def publish_report(backend: str) -> dict[str, Any] | None:
    """Runs whatever happened: the JSON report beside the backup, metrics, and the summary."""
    config = load_config()
    context = current_context()
    ti = context["ti"]
    states = _states(ti, STEP_TASKS)
    if states.get("resolve_backup") == "skipped":
        log.info("nothing was tested in this run")
        return None
    resolved = ti.xcom_pull(task_ids="resolve_backup")
    checked_backup = ti.xcom_pull(task_ids="check_backup") or {}
    restored = ti.xcom_pull(task_ids="restore_backup") or {}
    verdicts = [v for v in (ti.xcom_pull(task_ids=t) for t in CHECK_TASKS) if v]
    failed_steps = sorted(t for t, s in states.items() if s in ("failed", "upstream_failed"))
    manifest = _manifest(resolved) if resolved else None
    rpo = None
    if resolved:
        taken = backup_source.backup_time(_backup(resolved), manifest)
        rpo = dr.rpo_seconds(taken, datetime.fromisoformat(resolved["reference"]))
    document = dr.report(
        backup=resolved or {"location": "unresolved"},
        manifest=manifest,
        verdicts=verdicts,
        failed_steps=failed_steps,
        rto_seconds=restored.get("rto_seconds"),
        rpo_seconds=rpo,
        scratch_backend=backend,
        run_id=ti.run_id,
        warnings=list(checked_backup.get("warnings", [])),
    )
    if resolved:
        _save_report(config, _backup(resolved), document)
    points = metrics.dr_metrics(
        success=document["success"], restore_seconds=document["rto_seconds"], backup_age_seconds=rpo
    )
    send_metrics(config, "dr_restore_test", points)
    log.info("%s", dr.summary_line(document))
    if document["success"]:
        send(config, alerts.info_message(dr.summary_line(document)))
    return {"success": document["success"], "rto_seconds": document["rto_seconds"], "rpo_seconds": rpo}


def _save_report(config: StellarOpsConfig, backup: ResolvedBackup, document: dict[str, Any]) -> None:
    target = backup.location + ".dr_report.json"
    if backup.source == "s3":
        s3_store(config).put_json(target, document)
        log.info("report saved to s3://%s/%s", config.backup.bucket, target)
    else:
        import json

        Path(target).write_text(json.dumps(document, indent=2, sort_keys=True))
        log.info("report saved to %s", target)
