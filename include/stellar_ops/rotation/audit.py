"""A rotation's audit record: who approved what and when, identities and fingerprints only, in
the backups bucket and the log. Shared by ``api_key_rotation`` and ``secret_rotation``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from stellar_ops.runtime import Runtime


def audit_key(prefix: str, rotation_id: str, run_id: str) -> str:
    """``<prefix><rotation id>/<run id>.json``, the run id made safe for a key."""
    run = "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)
    return f"{prefix}{rotation_id}/{run}.json"


def record(
    rt: Runtime[Any],
    key: str,
    *,
    subject: dict[str, str],
    rotation_id: str,
    run_id: str,
    reason: str,
    transition_seconds: float,
    outcome: str,
    approvals: dict[str, dict[str, Any] | None],
    steps: dict[str, Any],
    now: datetime,
) -> dict[str, Any]:
    """Write the audit record of one run to ``key``; say it and each answer. ``subject`` names what
    rotated (``{"key_set": ...}`` or ``{"secret": ...}``)."""
    document = {
        "format": 1,
        "rotation_id": rotation_id,
        "run_id": run_id,
        **subject,
        "reason": reason,
        "outcome": outcome,
        "recorded_at": now.isoformat(),
        "transition_seconds": transition_seconds,
        "approvals": approvals,
        "steps": steps,
    }
    rt.store().put_json(key, document)
    lines = [f"rotation {rotation_id}: {outcome}; audit record {rt.store().url(key)}"]
    for name, answer in approvals.items():
        lines.append(
            f"  {name}: {answer.get('chosen')} by {answer.get('by')} at {answer.get('at')}"
            if answer
            else f"  {name}: not answered"
        )
    rt.say("\n".join(lines))
    return {"key": key, "outcome": outcome}
