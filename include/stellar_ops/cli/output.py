"""What the CLI prints: results as JSON on stdout, progress and warnings on stderr."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any

from stellar_ops.core.errors import StellarOpsError


def print_json(document: Any) -> None:
    print(json.dumps(document, indent=2, sort_keys=True, default=str))


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def warn(message: str) -> None:
    say(f"WARNING: {message}")


def parse_slot(text: str | None, option: str = "--slot") -> datetime:
    """An ISO timestamp (UTC when it has no zone); now when not given."""
    if not text:
        return datetime.now(UTC).replace(microsecond=0)
    try:
        slot = datetime.fromisoformat(text)
    except ValueError:
        raise StellarOpsError(
            f"{option} must be an ISO timestamp such as 2026-11-28T02:00:00Z, got {text!r}"
        ) from None
    return slot if slot.tzinfo else slot.replace(tzinfo=UTC)
