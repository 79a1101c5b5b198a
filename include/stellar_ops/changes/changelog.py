"""The change log: one JSON record per change (a migration or a config change) in the backups
bucket, under ``changes.log_prefix``.

A record says who asked and why, who approved, what was rehearsed and applied, the result and
the way back (the pre-change backup, the rollback script, the config version before). Each step
of a change adds what it knows with :meth:`ChangeLog.update`, so a run that stops half-way
leaves a record of how far it got. The scripts themselves are kept beside the record, so what
was rehearsed is what is applied even when the source file changes meanwhile.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from stellar_ops.core.errors import StellarOpsError
from stellar_ops.storage.s3 import S3Store

RECORD = "record.json"
KINDS = ("migration", "config")
_ID = re.compile(r"^(migration|config)-\d{8}T\d{6}Z-[0-9a-f]{6}$")


class ChangeLogError(StellarOpsError):
    """The change log cannot be read or a record is not where it should be."""


def change_id(kind: str, requested_at: datetime, run_id: str) -> str:
    """The change's id: its kind, when it was asked for, and a hash of the run (or terminal
    session) that asked; the same run always gets the same id, so a cleared task resumes it."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}")
    stamp = requested_at.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{kind}-{stamp}-{hashlib.sha256(run_id.encode()).hexdigest()[:6]}"


def check_id(value: str) -> str:
    if not _ID.match(value):
        raise ChangeLogError(f"{value!r} is not a change id (like migration-20261207T101500Z-1a2b3c)")
    return value


@dataclass(frozen=True)
class ChangeLog:
    store: S3Store
    prefix: str

    def _dir(self, change: str) -> str:
        return f"{self.prefix.rstrip('/')}/{check_id(change)}/"

    def record_key(self, change: str) -> str:
        return self._dir(change) + RECORD

    def file_key(self, change: str, name: str) -> str:
        return self._dir(change) + name

    def read(self, change: str) -> dict[str, Any] | None:
        key = self.record_key(change)
        if not self.store.exists(key):
            return None
        document = self.store.get_json(key)
        if not isinstance(document, dict):
            raise ChangeLogError(f"{self.store.url(key)} is not a change record")
        return document

    def update(self, change: str, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` into the change's record (top-level keys replaced), stamped with the time."""
        document = self.read(change) or {"change_id": change, "kind": change.split("-", 1)[0]}
        document.update({k: v for k, v in fields.items()})
        document["updated_at"] = datetime.now(UTC).isoformat()
        self.store.put_json(self.record_key(change), document)
        return document

    def close(self, change: str, result: str, **fields: Any) -> dict[str, Any]:
        """The change's last word: its result and ``fields`` (who approved), with the time. A change
        that stopped before its first step wrote anything gets a record saying so."""
        if self.read(change) is None:
            fields["status"] = "failed before its check"
        return self.update(change, result=result, finished_at=datetime.now(UTC).isoformat(), **fields)

    def put_text(self, change: str, name: str, text: str) -> str:
        key = self.file_key(change, name)
        self.store.put_bytes(key, text.encode(), content_type="text/plain; charset=utf-8")
        return key

    def get_text(self, change: str, name: str) -> str:
        key = self.file_key(change, name)
        if not self.store.exists(key):
            raise ChangeLogError(
                f"{self.store.url(key)} is gone: the change's kept copy of {name} is missing"
            )
        return self.store.get_bytes(key).decode()

    def records(self) -> Iterator[dict[str, Any]]:
        """Every change record, newest first."""
        under = f"{self.prefix.rstrip('/')}/"  # the log's own records, not a sibling's ("changes-old/")
        keys = sorted(
            (o.key for o in self.store.list_objects(under) if o.key.endswith("/" + RECORD)),
            key=lambda k: k.rsplit("/", 2)[-2].split("-", 1)[1],
            reverse=True,
        )
        for key in keys:
            document = self.store.get_json(key)
            if isinstance(document, dict):
                yield document


def list_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The columns of ``stellar-ops changes list``."""
    return [
        {
            "change_id": r.get("change_id"),
            "kind": r.get("kind"),
            "status": r.get("status", "unknown"),
            "requested_by": r.get("requested_by"),
            "approved_by": (r.get("approval") or {}).get("by"),
            "what": r.get("what"),
            "way_back": r.get("way_back"),
            "updated_at": r.get("updated_at"),
        }
        for r in records
    ]
