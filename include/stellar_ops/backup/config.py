"""The ``backup`` section: where backups go, how they are compressed, uploaded and kept."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from stellar_ops.core.config import Section


class BackupConfig(Section):
    bucket: str = Field("stellar-backups", min_length=3, max_length=63, description="S3 bucket of backups.")
    prefix: str = Field("backups/", description="Key prefix of backups.")
    legacy_prefix: str = Field(
        "",
        description="Where the old scripts' stellar_escrow_<TS>.sql.gz objects are (their objects directly "
        "under it); empty is the bucket root. They are listed, kept and restorable beside the prefix's.",
    )
    format: Literal["custom", "plain"] = Field(
        "custom",
        description="custom: pg_dump -Fc through zstd (.dump.zst); plain: SQL through gzip (.sql.gz).",
    )
    compression_level: int = Field(
        2, ge=1, le=19, description="zstd level (1-19) for custom, gzip level (1-9) for plain."
    )
    compression_threads: int = Field(
        0, ge=0, le=64, description="zstd worker threads; 0 compresses on the calling thread."
    )
    part_size_mb: int = Field(
        8, ge=5, le=512, description="S3 multipart part size in MiB (raised for databases over ~70 GiB)."
    )
    max_parts_in_flight: int = Field(2, ge=1, le=16, description="Parts uploaded concurrently.")
    server_side_encryption: Literal["none", "AES256", "aws:kms"] = Field(
        "AES256", description="S3 server-side encryption of backup objects."
    )
    kms_key_id: str | None = Field(None, description="KMS key id, required with aws:kms.")
    local_dir: str | None = Field(
        None, description="Also write each backup here in the same pass; null keeps no local copy."
    )
    local_retention_days: int = Field(7, ge=1, description="Age after which local copies are deleted.")
    retention_days: int = Field(30, ge=1, description="Age after which S3 backups may be deleted.")
    min_keep: int = Field(
        7, ge=1, description="The newest N restorable backups are always kept, whatever their age."
    )
    progress_interval_seconds: float = Field(5.0, gt=0, description="Seconds between progress log lines.")
    notify_on_success: bool = Field(True, description="Post a short success message after each backup.")
    include_globals: bool = Field(
        True,
        description="Also store the roles, their memberships and settings (pg_dumpall --globals-only) "
        "beside each backup, so a restore brings back its grants and ownership.",
    )
    globals_with_passwords: bool = Field(
        False, description="Keep the roles' password hashes in the globals (default: --no-role-passwords)."
    )
    pg_bin_dir: str | None = Field(
        None, description="Directory holding pg_dump/pg_restore/psql; null picks the newest installed."
    )
    supported_server_majors: list[int] = Field(
        [15, 16, 17],
        min_length=1,
        description="PostgreSQL server majors a backup is taken from; the image ships a pg_dump for each "
        "(the deployment's PG_MAJORS). Another major is refused before anything is dumped.",
    )
    stale_upload_hours: int = Field(
        24, ge=1, description="Unfinished uploads older than this are aborted by retention."
    )

    @field_validator("prefix", "legacy_prefix")
    @classmethod
    def _prefix_shape(cls, value: str) -> str:
        if value.startswith("/"):
            raise ValueError("must not start with '/'")
        if value and not value.endswith("/"):
            raise ValueError("must be empty or end with '/'")
        return value

    @field_validator("bucket")
    @classmethod
    def _bucket_shape(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z0-9][a-z0-9.\-]*[a-z0-9]", value):
            raise ValueError("must be lower-case letters, digits, '.' and '-'")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> BackupConfig:
        if self.format == "plain" and self.compression_level > 9:
            raise ValueError("compression_level: gzip (format 'plain') takes 1-9")
        if self.server_side_encryption == "aws:kms" and not self.kms_key_id:
            raise ValueError("kms_key_id: required when server_side_encryption is 'aws:kms'")
        if self.local_dir is not None and not self.local_dir.startswith("/"):
            raise ValueError("local_dir: must be an absolute path")
        return self


class RetentionConfig(Section):
    include_legacy: bool = Field(
        False,
        description="Let retention delete the old scripts' legacy backups too (off: they count towards "
        "min_keep but are never deleted).",
    )
