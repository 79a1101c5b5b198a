"""The ``dr`` section: the scratch servers and the checks of the disaster-recovery drill."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from stellar_ops.core.config import Section

# A retired key still accepted with any of its old values, so a saved config keeps parsing:
# restores always use pg_restore -j now (docs/benchmarks.md, "Restore").
RETIRED_KEYS = {"restore_engine": ("streaming", "pg_restore")}


class DrConfig(Section):
    scratch_backend: Literal["local", "docker"] = Field(
        "local", description="Where the scratch server runs: initdb on the worker, or a container."
    )
    trigger_on_new_backup: bool = Field(
        False, description="Also run a DR test whenever db_backup publishes a new backup."
    )
    restore_jobs: int = Field(
        2,
        ge=1,
        le=32,
        description="pg_restore -j: the sessions restoring a custom-format backup's data, indexes and constraints.",
    )
    docker_image: str = Field(
        "postgres:{major}", description="Image of the docker scratch server; {major} is the server major."
    )
    docker_network: str | None = Field(
        None,
        description="Docker network to put the scratch container on (workers in containers); null "
        "publishes its port on docker_host_address instead.",
    )
    docker_host_address: str = Field(
        "127.0.0.1", description="Address the scratch container's port is published on and reached at."
    )
    key_tables: list[str] = Field(
        default_factory=lambda: ["trades", "events"],
        description="Tables that must exist and, for legacy backups, hold rows.",
    )
    min_tables: int = Field(3, ge=1, description="The restored schema must hold at least this many tables.")
    sanity_queries: list[str] = Field(
        default_factory=lambda: [
            "SELECT count(*) FROM trades WHERE amount < 0",
            "SELECT max(created_at) FROM events",
            "SELECT status, count(*) FROM escrows GROUP BY status",
        ],
        description="Read-only queries that must run without error on the restored database.",
    )
    scratch_settings: dict[str, str] = Field(
        default_factory=dict, description="Extra postgresql.conf settings of the scratch server."
    )
    work_dir: str | None = Field(
        None, description="Parent directory of local scratch servers; null uses the system temp dir."
    )
    stage_in_memory: bool = Field(
        True,
        description="Stage a custom-format backup's decompressed archive in /dev/shm for pg_restore, "
        "when it takes at most a quarter of the free space there; otherwise in work_dir.",
    )
    run_as_user: str = Field(
        "postgres", description="OS user that runs a local scratch server when the worker runs as root."
    )
    startup_timeout_seconds: int = Field(
        60, ge=5, description="How long the scratch server may take to start."
    )

    pitr_rehearsal: Literal["auto", "on", "off"] = Field(
        "auto",
        description="After its restore, the drill also recovers the WAL archive to a random moment into "
        "a scratch server and checks the canary rows: auto when a complete base backup exists, on "
        "always (failing without one), off never.",
    )
    pitr_lookback_hours: float = Field(
        24.0,
        gt=0,
        description="The rehearsal's moment lies in the last this many hours (and after the oldest base "
        "backup's end).",
    )
    pitr_archive_wait_seconds: float = Field(
        180.0,
        ge=5,
        description="How long the rehearsal waits for the segment it closes to be archived, so the "
        "newest moment it may choose is in the archive.",
    )

    @model_validator(mode="before")
    @classmethod
    def _drop_retired_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not RETIRED_KEYS.keys() & data.keys():
            return data
        for key, old_values in RETIRED_KEYS.items():
            if key in data and data[key] not in old_values:
                raise ValueError(
                    f"{key} was retired (restores always use pg_restore -j); it took "
                    f"{' or '.join(old_values)}, got {data[key]!r}"
                )
        return {key: value for key, value in data.items() if key not in RETIRED_KEYS}
