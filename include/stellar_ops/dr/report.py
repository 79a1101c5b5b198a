"""What a DR test reports, whoever ran it: the JSON report, its metrics and its summary line."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from stellar_ops.catalogue.manifest import Manifest
from stellar_ops.core.durations import humanize_duration
from stellar_ops.core.metrics import Metric
from stellar_ops.dr.config import DrConfig
from stellar_ops.dr.scratch import RESTORE_SETTINGS


def report(
    *,
    backup: dict[str, Any],
    manifest: Manifest | None,
    verdicts: list[dict[str, Any]],
    failed_steps: list[str],
    rto_seconds: float | None,
    rpo_seconds: float | None,
    scratch_backend: str,
    run_id: str | None,
    warnings: list[str],
    restore: dict[str, Any] | None = None,
    pitr: dict[str, Any] | None = None,
) -> dict[str, Any]:
    success = not failed_steps and bool(verdicts) and all(v["passed"] for v in verdicts)
    if pitr and "canaries" in pitr:
        success = success and bool(pitr["canaries"]["passed"])
    return {
        "format_version": 1,
        "success": success,
        "backup": backup,
        "manifest_sha256": manifest.sha256 if manifest else None,
        "checks": verdicts,
        "failed_steps": failed_steps,
        "rto_seconds": rto_seconds,
        "rto_kind": "drill",
        "restore": restore or {},
        "rpo_seconds": rpo_seconds,
        "scratch_backend": scratch_backend,
        "dag_run_id": run_id,
        "warnings": warnings,
        "pitr": pitr_section(pitr),
        "finished_at": datetime.now(UTC).isoformat(),
    }


PITR_MEANING = (
    "a recovery of the newest base backup before a random moment plus the archived WAL up to it, into "
    "a scratch server: rto_seconds is fetch + replay + promote, rpo_seconds the moment asked minus "
    "the last commit recovered"
)


def pitr_section(pitr: dict[str, Any] | None) -> dict[str, Any]:
    """The point-in-time rehearsal in the report: not run, skipped (why), or what it proved."""
    if not pitr:
        return {"rehearsed": False, "reason": "not run"}
    if "skipped" in pitr:
        return {"rehearsed": False, "reason": pitr["skipped"]}
    if "failed" in pitr:  # the recovery itself failed: no canary was checked
        return {"rehearsed": False, "passed": False, "reason": pitr["failed"]}
    return {"rehearsed": True, "passed": bool(pitr["canaries"]["passed"]), **pitr, "meaning": PITR_MEANING}


DRILL_RESTORE_MEANING = (
    "the drill's restore time (download and restore) on a scratch server tuned for throwaway use; "
    "a recovery into a production server, with durable settings, takes longer (db_restore measures it)"
)


def restore_conditions(settings: DrConfig) -> dict[str, Any]:
    """How the drill restored, so that no one reads its restore time as the production RTO."""
    return {
        "engine": "pg_restore",
        "jobs": settings.restore_jobs,
        "server": "scratch",
        "server_settings": {**RESTORE_SETTINGS, **settings.scratch_settings},
        "meaning": DRILL_RESTORE_MEANING,
    }


def summary_line(document: dict[str, Any]) -> str:
    backup = document["backup"]["location"]
    if document["success"]:
        return (
            f":white_check_mark: DR test passed: {backup} restored in {humanize_duration(document['rto_seconds'])} "
            "(drill restore on a throwaway-tuned scratch server), "
            f"backup age {humanize_duration(document['rpo_seconds'])} (RPO), {len(document['checks'])} checks passed"
            + _pitr_summary(document.get("pitr") or {})
        )
    failing = [c["check"] for c in document["checks"] if not c["passed"]] + document["failed_steps"]
    return f":red_circle: DR test FAILED for {backup}: {', '.join(failing)}"


def _pitr_summary(pitr: dict[str, Any]) -> str:
    if not pitr.get("rehearsed"):
        return ""
    rpo = pitr.get("rpo_seconds")
    return (
        f"; point-in-time recovery to {pitr['target']} in {humanize_duration(pitr['rto_seconds'])}, "
        f"RPO reached {humanize_duration(rpo) if rpo is not None else 'unknown'}, canaries exact"
    )


def dr_metrics(document: dict[str, Any]) -> list[Metric]:
    """``stellar_dr_*`` of a report: success, and RTO and RPO when they were measured."""
    metrics = [
        Metric("stellar_dr_test_success", 1.0 if document["success"] else 0.0, "1 if the last DR test passed")
    ]
    if document["rto_seconds"] is not None:
        metrics.append(
            Metric(
                "stellar_dr_restore_seconds",
                document["rto_seconds"],
                "Restore time of the last DR drill on a scratch server tuned for throwaway use (fsync off, "
                "wal_level minimal): the drill's RTO, not a production recovery's",
            )
        )
    if document["rpo_seconds"] is not None:
        metrics.append(
            Metric("stellar_dr_backup_age_seconds", document["rpo_seconds"], "Age of the tested backup (RPO)")
        )
    return metrics + pitr_metrics(document.get("pitr") or {})


def pitr_metrics(pitr: dict[str, Any]) -> list[Metric]:
    """``stellar_dr_pitr_*`` when the drill rehearsed a point-in-time recovery."""
    if pitr.get("passed") is False and not pitr.get("rehearsed"):
        return [_pitr_success(False)]
    if not pitr.get("rehearsed"):
        return []
    out = [
        _pitr_success(bool(pitr.get("passed"))),
        Metric(
            "stellar_dr_pitr_rto_seconds",
            float(pitr["rto_seconds"]),
            "Time of the last drill's point-in-time recovery (base backup fetch, WAL replay, promote)",
        ),
    ]
    if pitr.get("rpo_seconds") is not None:
        out.append(
            Metric(
                "stellar_dr_pitr_rpo_seconds",
                float(pitr["rpo_seconds"]),
                "The moment the last drill recovered to, minus the last commit it recovered (RPO reached)",
            )
        )
    return out


def _pitr_success(passed: bool) -> Metric:
    return Metric(
        "stellar_dr_pitr_success",
        1.0 if passed else 0.0,
        "1 if the last drill's point-in-time recovery held exactly the canaries of its moment",
    )
