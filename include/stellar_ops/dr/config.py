"""The ``dr`` section: the scratch servers and the checks of the disaster-recovery drill."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from stellar_ops.core.config import Section


class DrConfig(Section):
    scratch_backend: Literal["local", "docker"] = Field(
        "local", description="Where the scratch server runs: initdb on the worker, or a container."
    )
    trigger_on_new_backup: bool = Field(
        False, description="Also run a DR test whenever db_backup publishes a new backup."
    )
    restore_engine: Literal["streaming", "pg_restore"] = Field(
        "streaming",
        description="streaming: restore while the object downloads, loading over restore_jobs sessions; "
        "pg_restore: download it whole, then pg_restore -j restore_jobs.",
    )
    restore_jobs: int = Field(
        2,
        ge=1,
        le=32,
        description="Sessions loading a custom-format backup's tables, and as many building its indexes and constraints.",
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
        description="Stage a custom-format backup's decompressed data in /dev/shm while it loads, "
        "when it takes at most a quarter of the free space there; otherwise in work_dir.",
    )
    run_as_user: str = Field(
        "postgres", description="OS user that runs a local scratch server when the worker runs as root."
    )
    startup_timeout_seconds: int = Field(
        60, ge=5, description="How long the scratch server may take to start."
    )
