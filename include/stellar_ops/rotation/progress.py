"""Where a secret's rotation stands: one JSON document per secret in the backups bucket.

``secret_rotation`` writes it at every step; ``stellar-ops secrets status`` and
``secrets_rotation_audit`` (the stuck-rotation alert) read it. It names credentials by identity
and fingerprint only: the secrets themselves live in the key store.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from stellar_ops.core.errors import ConfigError
from stellar_ops.storage.s3 import S3Store

# the phases of a rotation, in order; "finished" and "discarded" end it
PHASES = ("generated", "added", "switched", "removed", "finished", "discarded")
OPEN_PHASES = ("generated", "added", "switched", "removed")


@dataclass(frozen=True)
class Progress:
    secret: str
    rotation_id: str
    run_id: str
    reason: str
    by: str
    started_at: str
    window_seconds: float
    phase: str
    phase_at: str
    new: dict[str, str] | None = None  # {"identity": ..., "fingerprint": ...}
    old: dict[str, str] | None = None
    twin: str | None = None  # POSTGRES_PASSWORD: the twin this rotation set

    @property
    def open(self) -> bool:
        return self.phase in OPEN_PHASES

    def at(self, phase: str, when: datetime, **changes: Any) -> Progress:
        if phase not in PHASES:
            raise ValueError(f"unknown rotation phase {phase!r}")
        return replace(self, phase=phase, phase_at=when.isoformat(), **changes)

    def removal_due(self) -> datetime | None:
        """When the window after the switch ends: the removal may be approved from then."""
        if self.phase != "switched":
            return None
        return datetime.fromisoformat(self.phase_at) + timedelta(seconds=self.window_seconds)

    def stuck(self, now: datetime, stuck_after_hours: float) -> bool:
        """Still waiting for its removal ``stuck_after_hours`` after its window ended."""
        due = self.removal_due()
        return due is not None and now > due + timedelta(hours=stuck_after_hours)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Progress:
        return cls(**{k: data.get(k) for k in cls.__dataclass_fields__})  # type: ignore[arg-type]


def progress_key(prefix: str, secret: str) -> str:
    return f"{prefix}{secret}/progress.json"


def load(store: S3Store, prefix: str, secret: str) -> Progress | None:
    key = progress_key(prefix, secret)
    if not store.exists(key):
        return None
    document = store.get_json(key)
    if not isinstance(document, dict) or "rotation_id" not in document:
        raise ConfigError(f"{store.url(key)} is not a rotation progress record (no rotation_id)")
    return Progress.from_dict(document)


def save(store: S3Store, prefix: str, progress: Progress) -> None:
    store.put_json(progress_key(prefix, progress.secret), progress.as_dict())
