"""The secrets rotation ledger: each secret's last rotation, and which are overdue.

It is one JSON document in the backups bucket (``rotation.ledger_key``), not an Airflow Variable:
it must outlive the metadata DB (a rebuilt Airflow, a new ``make run``), be readable and
writable by ``stellar-ops`` when Airflow is down, and sit beside the audit records it points to
under the bucket's retention and versioning.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from stellar_ops.core.durations import humanize_duration
from stellar_ops.core.errors import ConfigError
from stellar_ops.core.taxonomy import Severity
from stellar_ops.storage.s3 import S3Store

FORMAT = 1
# Section 3.3: a secret past its rotation period is hygiene, to fix this week.
OVERDUE_SEVERITY: Severity = "P3"


@dataclass(frozen=True)
class Overdue:
    secret: str
    last_rotated: datetime | None
    due: datetime | None
    period_days: int
    procedure: str
    severity: Severity = OVERDUE_SEVERITY

    def overdue_by(self, now: datetime) -> str:
        """How long ago it was due, in words; ``never rotated`` when it has no record."""
        if self.due is None:
            return "never rotated"
        return f"overdue by {humanize_duration(now - self.due)}"

    def describe(self, now: datetime) -> str:
        if self.last_rotated is None:
            when = "has no recorded rotation"
        else:
            ago = humanize_duration(now - self.last_rotated)
            when = f"was last rotated {self.last_rotated:%Y-%m-%d} ({ago} ago, {self.overdue_by(now)})"
        return f"{self.secret} {when}; its period is {self.period_days} days. Rotate it: {self.procedure}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "secret": self.secret,
            "last_rotated": self.last_rotated.isoformat() if self.last_rotated else None,
            "due": self.due.isoformat() if self.due else None,
            "period_days": self.period_days,
            "procedure": self.procedure,
        }


def load(store: S3Store, key: str) -> dict[str, Any]:
    if not store.exists(key):
        return {"format": FORMAT, "secrets": {}}
    document = store.get_json(key)
    if not isinstance(document, dict) or not isinstance(document.get("secrets"), dict):
        raise ConfigError(f"{store.url(key)} is not a secrets ledger (no 'secrets' object)")
    return document


def record(
    store: S3Store,
    key: str,
    secret: str,
    *,
    at: datetime,
    by: str,
    how: str,
    quarter: str | None = None,
    audit: str | None = None,
) -> dict[str, Any]:
    """Record one rotation of ``secret``; an older record never replaces a newer one."""
    if not secret or not secret.replace("_", "").isalnum():
        raise ConfigError(f"secret name {secret!r} must be letters, digits and underscores (e.g. API_KEYS)")
    document = load(store, key)
    entry = {"rotated_at": at.isoformat(), "by": by, "how": how, "quarter": quarter, "audit": audit}
    existing = document["secrets"].get(secret)
    if existing and datetime.fromisoformat(existing["rotated_at"]) > at:
        return document
    document["secrets"][secret] = entry
    store.put_json(key, document)
    return document


def last_rotation(document: dict[str, Any], secret: str) -> dict[str, Any] | None:
    entry = document["secrets"].get(secret)
    return dict(entry) if entry else None


def overdue(
    document: dict[str, Any], periods: dict[str, int], procedures: dict[str, str], now: datetime
) -> list[Overdue]:
    found = []
    for secret, days in sorted(periods.items()):
        entry = document["secrets"].get(secret)
        last = datetime.fromisoformat(entry["rotated_at"]) if entry else None
        due = last + timedelta(days=days) if last else None
        if due is None or due < now:
            found.append(
                Overdue(secret, last, due, days, procedures.get(secret, "see section 3.3 of the procedures"))
            )
    return found


def status(document: dict[str, Any], periods: dict[str, int], now: datetime) -> list[dict[str, Any]]:
    rows = []
    for secret, days in sorted(periods.items()):
        entry = document["secrets"].get(secret) or {}
        last = datetime.fromisoformat(entry["rotated_at"]) if entry else None
        due = last + timedelta(days=days) if last else None
        rows.append(
            {
                "secret": secret,
                "last_rotated": last.isoformat() if last else None,
                "due": due.isoformat() if due else None,
                "overdue": due is None or due < now,
                "by": entry.get("by"),
                "how": entry.get("how"),
            }
        )
    return rows
