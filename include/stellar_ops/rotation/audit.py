"""A rotation's audit record: who approved what and when, identities and fingerprints only, in
the backups bucket and the log. Shared by ``api_key_rotation`` and ``secret_rotation``."""

from __future__ import annotations

from typing import Any

from stellar_ops.runtime import Runtime


def audit_key(prefix: str, rotation_id: str, run_id: str) -> str:
    """``<prefix><rotation id>/<run id>.json``, the run id made safe for a key."""
    run = "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)
    return f"{prefix}{rotation_id}/{run}.json"


def save(
    rt: Runtime[Any], key: str, document: dict[str, Any], approvals: dict[str, dict[str, Any] | None]
) -> None:
    """Write ``document`` (it names ``rotation_id`` and ``outcome``) to ``key``; say it and each answer."""
    rt.store().put_json(key, document)
    lines = [f"rotation {document['rotation_id']}: {document['outcome']}; audit record {rt.store().url(key)}"]
    for name, answer in approvals.items():
        lines.append(
            f"  {name}: {answer.get('chosen')} by {answer.get('by')} at {answer.get('at')}"
            if answer
            else f"  {name}: not answered"
        )
    rt.say("\n".join(lines))
