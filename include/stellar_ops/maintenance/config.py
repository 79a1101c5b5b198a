"""The ``maintenance`` section: what to vacuum, when, and when a table counts as bloated."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from stellar_ops.core.config import Section


class MaintenanceConfig(Section):
    tables: list[str] = Field(
        default_factory=list, description="Tables to VACUUM ANALYZE; empty means the whole database."
    )
    window_start_utc: str = Field("02:00", description="Start of the low-traffic window (HH:MM, UTC).")
    window_end_utc: str = Field("06:00", description="End of the low-traffic window (HH:MM, UTC).")
    bloat_warn_dead_ratio: float = Field(
        0.2, ge=0, le=1, description="Warn when dead / (live + dead) tuples is above this."
    )
    bloat_min_dead_tuples: int = Field(
        1000, ge=0, description="Ignore tables with fewer dead tuples than this."
    )
    lock_timeout_seconds: int = Field(30, ge=1, description="lock_timeout for each VACUUM.")

    @field_validator("window_start_utc", "window_end_utc")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        match = re.fullmatch(r"(\d{2}):(\d{2})", value)
        if not match or int(match[1]) > 23 or int(match[2]) > 59:
            raise ValueError("must be HH:MM (24-hour, UTC)")
        return value

    @field_validator("tables")
    @classmethod
    def _identifiers(cls, value: list[str]) -> list[str]:
        for name in value:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?", name):
                raise ValueError(f"{name!r} is not a table name (schema.table or table)")
        return value
