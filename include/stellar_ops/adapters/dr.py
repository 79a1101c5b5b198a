"""Task bodies of ``dr_restore_test``: each runs one step of :mod:`stellar_ops.dr.flow`.

State between tasks travels only through XCom (locations, the scratch handle, observations) and
S3, never through a worker's disk, so consecutive tasks may run on different workers.
"""

from __future__ import annotations

from typing import Any

from stellar_ops.adapters.common.runtime import (
    checked,
    current_context,
    run_slot,
    run_type,
    task_logger,
    task_runtime,
    task_states,
)
from stellar_ops.core.errors import ConfigError
from stellar_ops.dr import flow, rehearsal
from stellar_ops.dr.flow import Resolved
from stellar_ops.dr.scratch import docker_image, scratch_name
from stellar_ops.registry import StellarOpsConfig
from stellar_ops.runtime import Runtime

log = task_logger()


@checked
def resolve_backup(choice: str) -> dict[str, Any]:
    context = current_context()
    month_scoped = run_type(context) in ("scheduled", "backfill")
    return flow.resolve_backup(
        task_runtime(), choice, slot=run_slot(context), month_scoped=month_scoped
    ).as_dict()


@checked
def check_backup(resolved: dict[str, Any]) -> dict[str, Any]:
    return flow.check_backup(task_runtime(), Resolved.from_dict(resolved))


def _docker(rt: Runtime[StellarOpsConfig], name: str, image: str | None = None) -> Any:
    from stellar_ops.adapters.common.connections import docker_client

    return flow.docker_scratch(rt, docker_client(rt.config.connections.docker), name, image)


@checked
def create_scratch(backend: str) -> dict[str, Any]:
    """Setup: reserve (local) or start (docker) the scratch server; the handle holds no secret."""
    rt = task_runtime()
    name = scratch_name(current_context()["dag_run"].run_id)
    if backend == "local":
        log.info("local scratch server %s will run inside restore_backup on its worker", name)
        return {"backend": "local", "name": name}
    if backend != "docker":
        raise ConfigError(f"scratch_backend must be 'local' or 'docker', got {backend!r}")
    image = docker_image(rt.config.dr.docker_image, flow.server_major(rt))
    handle: dict[str, Any] = _docker(rt, name, image).create(wait=False)
    log.info("started scratch container %s from %s", name, image)
    return {**handle, "image": image}


@checked
def restore_backup(resolved: dict[str, Any], handle: dict[str, Any], keep_on_failure: bool) -> dict[str, Any]:
    rt = task_runtime()
    backup = Resolved.from_dict(resolved)
    if handle["backend"] == "local":
        with flow.local_scratch(rt, handle["name"]).running(keep_on_failure=keep_on_failure) as server:
            restored = flow.restore_backup(rt, backup, server.target())
    else:
        docker = _docker(rt, handle["name"], handle.get("image"))
        docker.wait_ready(handle)
        restored = flow.restore_backup(rt, backup, docker.target(handle))
    # the observation (every table's row count, the schema) waits in the bucket; XCom has where
    return flow.stage_observation(rt, backup, restored, current_context()["dag_run"].run_id)


@checked
def verify_row_counts(resolved: dict[str, Any], restored: dict[str, Any]) -> dict[str, Any]:
    rt, backup = task_runtime(), Resolved.from_dict(resolved)
    verdict = flow.verify_row_counts(rt, backup, flow.load_observation(rt, backup, restored))
    verdict.raise_if_failed()
    return verdict.as_dict()


@checked
def verify_schema(resolved: dict[str, Any], restored: dict[str, Any]) -> dict[str, Any]:
    rt, backup = task_runtime(), Resolved.from_dict(resolved)
    verdict = flow.verify_schema(rt, backup, flow.load_observation(rt, backup, restored))
    verdict.raise_if_failed()
    return verdict.as_dict()


@checked
def verify_sanity_queries(resolved: dict[str, Any], restored: dict[str, Any]) -> dict[str, Any]:
    rt, backup = task_runtime(), Resolved.from_dict(resolved)
    verdict = flow.verify_sanity_queries(rt, flow.load_observation(rt, backup, restored))
    verdict.raise_if_failed()
    return verdict.as_dict()


@checked
def restore_to_moment(handle: dict[str, Any]) -> dict[str, Any]:
    """The point-in-time rehearsal, in a directory of its own beside the scratch server's (removed
    at its end, failures included: the error quotes the recovery's log)."""
    rt = task_runtime()
    return rehearsal.restore_to_moment(rt, rehearsal.scratch_dir(flow.work_dir(rt), handle["name"]))


@checked
def verify_canaries(recovered: dict[str, Any]) -> dict[str, Any] | None:
    verdict = rehearsal.verify_canaries(recovered)
    if verdict is None:
        log.info("no point-in-time rehearsal: %s", recovered.get("skipped"))
        return None
    log.info("%s: %s", verdict.check, verdict.detail)
    verdict.raise_if_failed()
    return verdict.as_dict()


def _failed(states: dict[str, str]) -> list[str]:
    return sorted(t for t, s in states.items() if s in ("failed", "upstream_failed"))


@checked
def drop_scratch(handle: dict[str, Any] | None, keep_on_failure: bool) -> list[str]:
    """Teardown: remove the scratch server whatever happened (unless kept for debugging)."""
    rt = task_runtime()
    if handle is None:
        log.info("no scratch server was reserved")
        return []
    failed = _failed(task_states(current_context()["ti"], flow.STEPS))
    if keep_on_failure and failed:
        log.warning("keeping scratch server %s for debugging (failed: %s)", handle["name"], ", ".join(failed))
        return []
    if handle["backend"] == "local":
        removed = flow.local_scratch(rt, handle["name"]).remove_leftovers()
    else:
        removed = [handle["name"]] if _docker(rt, handle["name"]).remove() else []
    removed += rehearsal.remove_leftovers(rehearsal.scratch_dir(flow.work_dir(rt), handle["name"]))
    log.info("removed %s", ", ".join(removed) if removed else f"nothing: {handle['name']} was already gone")
    return removed


def _pitr_outcome(ti: Any, states: dict[str, str]) -> dict[str, Any] | None:
    recovered = ti.xcom_pull(task_ids=rehearsal.RESTORE_STEP)
    if recovered:
        return dict(recovered)
    if states.get(rehearsal.RESTORE_STEP) == "failed":
        return {"failed": f"{rehearsal.RESTORE_STEP} failed: its log says why"}
    return None


@checked
def publish_report(backend: str) -> dict[str, Any]:
    """Runs whatever happened: the JSON report beside the backup, metrics, and the summary."""
    ti = current_context()["ti"]
    states = task_states(ti, flow.STEPS)
    resolved = ti.xcom_pull(task_ids="resolve_backup")
    document = flow.publish_report(
        task_runtime(),
        resolved=Resolved.from_dict(resolved) if resolved else None,
        checked=ti.xcom_pull(task_ids="check_backup") or {},
        restored=ti.xcom_pull(task_ids="restore_backup") or {},
        checks=[
            v for v in (ti.xcom_pull(task_ids=t) for t in (*flow.CHECK_STEPS, rehearsal.CHECK_STEP)) if v
        ],
        failed_steps=_failed(states),
        backend=backend,
        run_id=ti.run_id,
        pitr=_pitr_outcome(ti, states),
    )
    if resolved:
        flow.discard_observation(
            task_runtime(), Resolved.from_dict(resolved), ti.xcom_pull(task_ids="restore_backup") or {}
        )
    return {
        "success": document["success"],
        "rto_seconds": document["rto_seconds"],
        "rpo_seconds": document["rpo_seconds"],
    }
