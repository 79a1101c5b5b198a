"""Key material and what names it: generation, fingerprints, the quarter a rotation belongs to.

A key is shown anywhere (logs, XCom, messages, the audit record) only by its fingerprint: the
first 8 hex digits of its sha256, the same name the API stand-in counts requests by.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from datetime import datetime


def generate(count: int, *, prefix: str = "", nbytes: int = 32) -> list[str]:
    """``count`` new keys from :mod:`secrets` (``openssl rand -hex 32`` by default)."""
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    return [prefix + secrets.token_hex(nbytes) for _ in range(count)]


def fingerprint(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:8]


def fingerprints(keys: Iterable[str]) -> list[str]:
    return [fingerprint(k) for k in keys]


def quarter(moment: datetime) -> str:
    """``2026-Q4``: the quarter a scheduled rotation belongs to."""
    return f"{moment.year}-Q{(moment.month - 1) // 3 + 1}"


def parse_keys(value: str | None) -> list[str]:
    """``a,b`` as the API reads it; blanks dropped."""
    return [k.strip() for k in (value or "").split(",") if k.strip()]


def join_keys(keys: Iterable[str]) -> str:
    return ",".join(keys)
