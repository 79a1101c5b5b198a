"""The DR test's verdicts: does the restored database match what the backup promised?

Each verdict is a pure function of the manifest and the observation of the restored database, so
it can run in its own task, on any worker, after the scratch server is gone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from stellar_ops.catalogue.manifest import Manifest
from stellar_ops.core.errors import VerificationError
from stellar_ops.postgres import catalog


@dataclass
class Verdict:
    check: str
    passed: bool
    detail: str
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def raise_if_failed(self) -> None:
        if not self.passed:
            raise VerificationError(f"{self.check} failed: {self.detail}")


def _qualify(table: str) -> str:
    return table if "." in table else f"public.{table}"


def row_counts(manifest: Manifest | None, observed: dict[str, int], key_tables: list[str]) -> Verdict:
    """Every table's count equals the manifest's; legacy backups: every key table has rows."""
    problems: list[str] = []
    if manifest is not None:
        for table, expected in sorted(manifest.row_counts.items()):
            if table not in observed:
                problems.append(f"{table}: missing after restore, manifest says {expected} rows")
            elif observed[table] != expected:
                problems.append(f"{table}: restored {observed[table]} rows, manifest says {expected}")
        # a format 1 manifest did not count the large objects: nothing to compare them with
        extra = set(observed) - set(manifest.row_counts) - {catalog.LARGE_OBJECTS}
        for table in sorted(extra):
            problems.append(f"{table}: restored {observed[table]} rows, not in the manifest")
        summary = f"{len(manifest.row_counts)} tables, {sum(manifest.row_counts.values()):,} rows"
    else:
        for table in (_qualify(t) for t in key_tables):
            if observed.get(table, 0) <= 0:
                problems.append(f"{table}: {'missing' if table not in observed else 'empty'} after restore")
        summary = f"key tables {', '.join(key_tables)} have rows (legacy backup: no manifest counts)"
    if problems:
        return Verdict(
            "row counts", False, f"{len(problems)} table(s) differ: " + "; ".join(problems), problems
        )
    return Verdict("row counts", True, f"match: {summary}")


def schema(
    manifest: Manifest | None,
    observed_schema: dict[str, Any],
    key_tables: list[str],
    min_tables: int,
    observed_sequences: dict[str, int | None] | None = None,
) -> Verdict:
    """The schema matches the manifest's fingerprint on every section the manifest has, each
    sequence is at least where the backup saw it; at least ``min_tables`` tables, key tables present."""
    problems: list[str] = []
    tables = set(observed_schema.get("tables", {}))
    if len(tables) < min_tables:
        problems.append(f"only {len(tables)} tables restored, at least {min_tables} expected")
    for table in (_qualify(t) for t in key_tables):
        if table not in tables:
            problems.append(f"key table {table} is missing")
    if manifest is not None:
        comparable = catalog.comparable(observed_schema, manifest.schema_)
        fingerprint = catalog.fingerprint(comparable)
        if fingerprint != manifest.schema_fingerprint:
            differences = catalog.schema_differences(manifest.schema_, comparable)
            problems.extend(
                differences or [f"fingerprint {fingerprint} differs from {manifest.schema_fingerprint}"]
            )
        if manifest.sequence_values is not None:
            problems.extend(
                catalog.sequence_value_differences(manifest.sequence_values, observed_sequences or {})
            )
    if problems:
        return Verdict("schema", False, "; ".join(problems), problems)
    if manifest is None:
        return Verdict("schema", True, f"{len(tables)} tables; no manifest fingerprint (legacy)")
    objects = sum(len(observed_schema.get(section, {})) for section in manifest.schema_)
    sequences = f", {len(manifest.sequence_values)} sequence values" if manifest.sequence_values else ""
    return Verdict(
        "schema",
        True,
        f"{len(tables)} tables, {objects} objects in {len(manifest.schema_)} sections{sequences}; "
        "fingerprint matches the manifest",
    )


def sanity_queries(results: list[dict[str, Any]]) -> Verdict:
    failed = [r for r in results if not r.get("ok")]
    if failed:
        problems = [f"{r['query']!r}: {r.get('error')}" for r in failed]
        return Verdict(
            "sanity queries",
            False,
            f"{len(failed)} of {len(results)} failed: " + "; ".join(problems),
            problems,
        )
    return Verdict("sanity queries", True, f"all {len(results)} ran")


def rpo_seconds(backup_taken: datetime, reference: datetime) -> float:
    """How much data a restore of this backup would lose, as of ``reference``."""
    return round(max(0.0, (reference - backup_taken).total_seconds()), 1)
