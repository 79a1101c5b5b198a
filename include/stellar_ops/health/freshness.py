"""Backup freshness: the newest verified backup is recent and not suspiciously small; the newest DR
report passed and is recent.

Verified means its manifest is there (it is written only after the backup was read back and
checked), as Barman's ``last_backup_maximum_age`` counts only complete backups. An object newer
than the newest verified backup but without a manifest is a backup whose run did not finish.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from stellar_ops.catalogue.inventory import BackupEntry, list_backups
from stellar_ops.catalogue.keys import DR_REPORT_SUFFIX, MANIFEST_SUFFIX
from stellar_ops.catalogue.manifest import Manifest
from stellar_ops.core.alerts import human_bytes
from stellar_ops.health.config import HealthConfig
from stellar_ops.health.results import AlertRef, CheckResult, Status, parse_utc, worst
from stellar_ops.storage.s3 import S3Store

NAME = "backups"
STALE = AlertRef("BackupStale", "P2", "RB-002")
SMALL = AlertRef("BackupTooSmall", "P2", "RB-002")
DR_FAILED = AlertRef("DRTestFailed", "P2", "RB-003")


def _manifest(store: S3Store, entry: BackupEntry) -> Manifest:
    key = entry.key + MANIFEST_SUFFIX
    return Manifest.from_document(store.get_json(key), source=store.url(key))


def check(
    store: S3Store, prefix: str, legacy_prefix: str | None, settings: HealthConfig, now: datetime
) -> CheckResult:
    listing = list_backups(store, prefix, legacy_prefix)
    ours = [b for b in listing.backups if b.state != "legacy"]
    verified = [b for b in ours if b.state == "verified"]
    states: list[Status] = []
    lines: list[str] = []
    items: list[dict[str, Any]] = []
    alert: AlertRef | None = None
    if not verified:
        states.append("critical")
        lines.append(f"no verified backup under {store.url(prefix)}")
        alert = STALE
    else:
        newest = verified[0]
        manifest = _manifest(store, newest)
        age_hours = (now - manifest.snapshot_time).total_seconds() / 3600  # the age of its data
        item: dict[str, Any] = {
            "key": newest.key,
            "snapshot_at": manifest.snapshot_time.isoformat(),
            "finished_at": manifest.finished_at.isoformat(),
            "age_hours": round(age_hours, 1),
            "size_bytes": manifest.size_bytes,
        }
        if age_hours > settings.backup_max_age_hours:
            states.append("critical")
            alert = STALE
            lines.append(
                f"newest verified backup is {age_hours:.1f}h old (over {settings.backup_max_age_hours:g}h): {newest.key}"
            )
        else:
            states.append("ok")
            lines.append(f"newest verified backup {age_hours:.1f}h old, {human_bytes(manifest.size_bytes)}")
        if len(verified) > 1 and settings.backup_min_size_ratio > 0:
            previous = _manifest(store, verified[1])
            item["previous_key"] = verified[1].key
            item["previous_size_bytes"] = previous.size_bytes
            if (
                previous.size_bytes
                and manifest.size_bytes < settings.backup_min_size_ratio * previous.size_bytes
            ):
                share = manifest.size_bytes / previous.size_bytes
                states.append("critical")
                alert = alert or SMALL
                lines.append(
                    f"it is {share:.0%} of the previous verified backup's size ({human_bytes(manifest.size_bytes)} "
                    f"vs {human_bytes(previous.size_bytes)}; at least {settings.backup_min_size_ratio:.0%} expected)"
                )
        items.append(item)
        unfinished = [b for b in ours if b.state == "unverified" and b.name > newest.name]
        if unfinished:
            states.append("warning")
            lines.append(f"{len(unfinished)} newer backup(s) without a manifest: {unfinished[0].key}")
            items += [{"key": b.key, "state": b.state, "size_bytes": b.size} for b in unfinished]
    dr_state, dr_line, dr_item = dr_report(store, listing.backups, settings, now)
    states.append(dr_state)
    lines.append(dr_line)
    if dr_item:
        items.append(dr_item)
    if dr_state == "critical" and alert is None:
        alert = DR_FAILED
    status = worst(states)
    return CheckResult(NAME, status, "; ".join(lines), items, alert, alert.runbook if alert else "SEC-1.1")


def dr_report(
    store: S3Store, backups: list[BackupEntry], settings: HealthConfig, now: datetime
) -> tuple[Status, str, dict[str, Any] | None]:
    """The verdict and age of the DR report beside the newest backup that has one."""
    for entry in backups:
        key = entry.key + DR_REPORT_SUFFIX
        if key not in entry.sidecars:
            continue
        document = store.get_json(key)
        finished = parse_utc(document.get("finished_at")) if isinstance(document, dict) else None
        if finished is None:
            return "warning", f"DR report {key} cannot be read (no finished_at)", {"dr_report": key}
        age_days = (now - finished).total_seconds() / 86400
        item = {"dr_report": key, "success": bool(document.get("success")), "age_days": round(age_days, 1)}
        if not document.get("success"):
            failing = [c.get("check") for c in document.get("checks") or [] if not c.get("passed")]
            failing += list(document.get("failed_steps") or [])
            return (
                "critical",
                f"the newest DR test FAILED {age_days:.1f}d ago ({', '.join(map(str, failing))})",
                item,
            )
        if age_days > settings.dr_max_age_days:
            return (
                "warning",
                f"the newest DR test passed but is {age_days:.0f}d old (over {settings.dr_max_age_days:g}d)",
                item,
            )
        return "ok", f"DR test passed {age_days:.1f}d ago", item
    return "warning", "no DR report in the bucket", None
