"""The manifest sidecar ``<backup key>.manifest.json``: what a backup holds and how to check it.

A manifest is written only after the backup was read back and verified, so its presence is what
makes a backup "verified". ``format_version`` lets readers refuse a manifest they do not know.

Format 2 adds the globals sidecar (the roles, ``<key>.globals.sql``, covered by its sha256), the
sequences' values and the complete schema (see :mod:`stellar_ops.postgres.catalog`); a format 1
manifest is still read, and compared on the sections it has.

Format 3 adds ``snapshot_at``, the time of the dump's snapshot, which names the backup (``slot`` is
the run's slot, which may be long before it), and ``note``, which says so when the run's slot was
in the past. For earlier manifests, whose keys were named by the slot, :attr:`Manifest.snapshot_time`
falls back to the dump's start.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from stellar_ops import __version__
from stellar_ops.core.errors import VerificationError

FORMAT_VERSION = 3


class Verification(BaseModel):
    model_config = ConfigDict(extra="forbid")

    verified_at: datetime
    checks: list[str]
    method: Literal["in-flight", "read-back"] = "read-back"
    archive_entries: int | None = None
    uncompressed_bytes: int | None = None


class Manifest(BaseModel):
    format_version: int = FORMAT_VERSION
    producer: str = f"stellar-ops {__version__}"
    key: str
    bucket: str
    slot: datetime  # the run's slot (logical date, or run_after): what a re-run of it skips on
    snapshot_at: datetime | None = None  # when the data is from; the key's timestamp (format 3)
    note: str | None = None  # set when the slot was in the past: the data is of snapshot_at, not of the slot
    database: str
    system_identifier: str | None = (
        None  # the source cluster's (pg_control_system): a restore must not overwrite it
    )
    server_version: str
    server_version_num: int
    pg_dump_version: str
    dump_format: Literal["custom", "plain"]
    compression: Literal["zstd", "gzip"]
    compression_level: int
    encryption: str
    started_at: datetime
    finished_at: datetime
    duration_seconds: float
    dag_run_id: str | None
    size_bytes: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    uncompressed_bytes: int = Field(ge=0)
    snapshot: str | None
    row_counts: dict[str, int]
    schema_: dict[str, Any] = Field(alias="schema")
    schema_fingerprint: str
    sequence_values: dict[str, int | None] | None = None
    globals_key: str | None = None
    globals_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    globals_size_bytes: int | None = Field(None, ge=0)
    local_copy: str | None = None
    verification: Verification | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @property
    def snapshot_time(self) -> datetime:
        """When the backup's data is from: its snapshot's time, or for a manifest that did not record
        it (before format 3) the dump's start, taken just before its snapshot."""
        return self.snapshot_at or self.started_at

    def to_document(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)

    @classmethod
    def from_document(cls, document: Any, *, source: str) -> Manifest:
        if not isinstance(document, dict):
            raise VerificationError(f"{source} is not a valid manifest: a JSON object is expected")
        version = document.get("format_version", FORMAT_VERSION)
        if not isinstance(version, int) or isinstance(version, bool):
            raise VerificationError(f"{source} is not a valid manifest: format_version must be an integer")
        if version > FORMAT_VERSION:
            raise VerificationError(
                f"{source} has manifest format {document['format_version']}; this stellar-ops reads up to "
                f"{FORMAT_VERSION}: upgrade stellar-ops"
            )
        try:
            return cls.model_validate(document)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            raise VerificationError(f"{source} is not a valid manifest: {field}: {first['msg']}") from None
