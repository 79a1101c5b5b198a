"""Fixtures shared by the unit tests: realistic schema and manifest documents built by hand."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from stellar_ops.catalogue.manifest import Manifest
from stellar_ops.postgres import catalog


def _sample_schema() -> dict[str, Any]:
    """A schema_of()-shaped answer for a small StellarEscrow database."""
    return {
        "tables": {
            "public.accounts": {
                "columns": [
                    ["id", "bigint", True],
                    ["stellar_account", "character varying(56)", True],
                    ["role", "text", True],
                ]
            },
            "public.escrows": {
                "columns": [
                    ["id", "bigint", True],
                    ["amount", "numeric(20,7)", True],
                    ["status", "text", True],
                ]
            },
            "public.events": {
                "columns": [
                    ["id", "bigint", True],
                    ["escrow_id", "bigint", False],
                    ["payload", "jsonb", True],
                ]
            },
            "public.trades": {
                "columns": [
                    ["id", "bigint", True],
                    ["escrow_id", "bigint", True],
                    ["amount", "numeric(20,7)", True],
                ]
            },
        },
        "indexes": {
            "public.accounts_pkey": "CREATE UNIQUE INDEX accounts_pkey ON public.accounts USING btree (id)",
            "public.escrows_pkey": "CREATE UNIQUE INDEX escrows_pkey ON public.escrows USING btree (id)",
            "public.events_pkey": "CREATE UNIQUE INDEX events_pkey ON public.events USING btree (id)",
            "public.trades_pkey": "CREATE UNIQUE INDEX trades_pkey ON public.trades USING btree (id)",
        },
    }


def _sample_manifest_document(**changes: Any) -> dict[str, Any]:
    """A manifest document as backup.py would write it (``schema`` is the alias of ``schema_``)."""
    schema = _sample_schema()
    document: dict[str, Any] = {
        "format_version": 1,
        "producer": "stellar-ops 0.1.0",
        "key": "backups/stellar_escrow_20250301T020000Z.dump.zst",
        "bucket": "stellar-backups",
        "slot": "2025-03-01T02:00:00+00:00",
        "database": "stellar_escrow",
        "server_version": "16.4",
        "server_version_num": 160004,
        "pg_dump_version": "pg_dump (PostgreSQL) 16.4",
        "dump_format": "custom",
        "compression": "zstd",
        "compression_level": 1,
        "encryption": "AES256",
        "started_at": "2025-03-01T02:00:05+00:00",
        "finished_at": "2025-03-01T02:03:10+00:00",
        "duration_seconds": 185.2,
        "dag_run_id": "scheduled__2025-03-01T02:00:00+00:00",
        "size_bytes": 123456,
        "sha256": "ab" * 32,
        "uncompressed_bytes": 654321,
        "snapshot": "00000003-0000001B-1",
        "row_counts": {
            "public.accounts": 5000,
            "public.escrows": 1000,
            "public.events": 6000,
            "public.trades": 3000,
        },
        "schema": schema,
        "schema_fingerprint": catalog.fingerprint(schema),
        "local_copy": None,
        "verification": {
            "verified_at": "2025-03-01T02:04:00+00:00",
            "checks": ["size", "sha256", "zstd frame", "pg_restore --list", "pg_restore full read"],
            "archive_entries": 42,
            "uncompressed_bytes": 654321,
        },
    }
    document.update(changes)
    return copy.deepcopy(document)


@pytest.fixture
def schema_doc() -> dict[str, Any]:
    return _sample_schema()


@pytest.fixture
def manifest_doc() -> dict[str, Any]:
    return _sample_manifest_document()


@pytest.fixture
def make_manifest() -> Callable[..., Manifest]:
    """Build a validated Manifest, with top-level fields of the document replaced by ``changes``."""

    def build(**changes: Any) -> Manifest:
        return Manifest.model_validate(_sample_manifest_document(**changes))

    return build
