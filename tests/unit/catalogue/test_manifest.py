"""stellar_ops.catalogue.manifest.Manifest: the alias, round trip and from_document's refusals."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from stellar_ops import __version__
from stellar_ops.catalogue.manifest import FORMAT_VERSION, Manifest
from stellar_ops.core.errors import VerificationError

SOURCE = "s3://stellar-backups/backups/stellar_escrow_20250301T020000Z.dump.zst.manifest.json"


def test_model_validate_reads_the_schema_alias(manifest_doc: dict[str, Any]) -> None:
    manifest = Manifest.model_validate(manifest_doc)

    assert manifest.schema_ == manifest_doc["schema"]
    assert manifest.started_at == datetime(2025, 3, 1, 2, 0, 5, tzinfo=UTC)
    assert manifest.verification is not None
    assert manifest.verification.archive_entries == 42


def test_to_document_round_trips(manifest_doc: dict[str, Any]) -> None:
    manifest = Manifest.from_document(manifest_doc, source=SOURCE)

    document = manifest.to_document()

    assert "schema" in document
    assert "schema_" not in document
    assert Manifest.from_document(document, source=SOURCE) == manifest
    assert document["started_at"] == "2025-03-01T02:00:05Z"


def test_defaults(manifest_doc: dict[str, Any]) -> None:
    del manifest_doc["format_version"], manifest_doc["producer"], manifest_doc["verification"]
    del manifest_doc["local_copy"]

    manifest = Manifest.from_document(manifest_doc, source=SOURCE)

    assert manifest.format_version == FORMAT_VERSION
    assert manifest.producer == f"stellar-ops {__version__}"
    assert manifest.verification is None
    assert manifest.local_copy is None


def test_newer_format_version_is_refused_with_upgrade_advice(manifest_doc: dict[str, Any]) -> None:
    manifest_doc["format_version"] = FORMAT_VERSION + 1
    manifest_doc["a_field_from_the_future"] = True

    with pytest.raises(VerificationError) as info:
        Manifest.from_document(manifest_doc, source=SOURCE)

    assert str(info.value) == (
        f"{SOURCE} has manifest format {FORMAT_VERSION + 1}; this stellar-ops reads up to "
        f"{FORMAT_VERSION}: upgrade stellar-ops"
    )


@pytest.mark.parametrize(
    ("changes", "field", "fragment"),
    [
        ({"sha256": "XYZ"}, "sha256", "should match pattern"),
        ({"size_bytes": -1}, "size_bytes", "greater than or equal to 0"),
        ({"dump_format": "tar"}, "dump_format", "'custom' or 'plain'"),
        ({"compression": "lz4"}, "compression", "'zstd' or 'gzip'"),
        ({"slot": "yesterday"}, "slot", "valid datetime"),
        ({"unexpected": 1}, "unexpected", "Extra inputs are not permitted"),
        ({"row_counts": {"public.trades": "many"}}, "row_counts.public.trades", "valid integer"),
        (
            {"verification": {"verified_at": "2025-03-01T00:00:00Z", "checks": [], "x": 1}},
            "verification.x",
            "Extra",
        ),
    ],
)
def test_invalid_document_names_the_bad_field(
    manifest_doc: dict[str, Any], changes: dict[str, Any], field: str, fragment: str
) -> None:
    manifest_doc.update(changes)

    with pytest.raises(VerificationError) as info:
        Manifest.from_document(manifest_doc, source=SOURCE)

    message = str(info.value)
    assert message.startswith(f"{SOURCE} is not a valid manifest: {field}: ")
    assert fragment in message


def test_missing_schema_names_the_alias(manifest_doc: dict[str, Any]) -> None:
    del manifest_doc["schema"]
    with pytest.raises(VerificationError, match=r"is not a valid manifest: schema: Field required"):
        Manifest.from_document(manifest_doc, source=SOURCE)


@pytest.mark.parametrize("document", [None, [], "text", 5])
def test_non_object_document_is_refused(document: Any) -> None:
    with pytest.raises(VerificationError, match=f"^{SOURCE} is not a valid manifest"):
        Manifest.from_document(document, source=SOURCE)


@pytest.mark.parametrize("version", ["2", None])
def test_non_integer_format_version_is_a_verification_error(
    manifest_doc: dict[str, Any], version: Any
) -> None:
    manifest_doc["format_version"] = version
    with pytest.raises(VerificationError, match="format"):
        Manifest.from_document(manifest_doc, source=SOURCE)


def test_non_object_document_message_has_no_empty_field() -> None:
    with pytest.raises(VerificationError) as info:
        Manifest.from_document([], source=SOURCE)
    assert ": :" not in str(info.value)


def test_a_format_1_manifest_is_still_read_without_the_new_fields(manifest_doc: dict[str, Any]) -> None:
    manifest = Manifest.from_document({**manifest_doc, "format_version": 1}, source=SOURCE)
    assert manifest.format_version == 1
    assert manifest.globals_key is None and manifest.sequence_values is None


def test_the_roles_sidecar_is_named_and_covered_by_its_sha256(manifest_doc: dict[str, Any]) -> None:
    document = {
        **manifest_doc,
        "globals_key": manifest_doc["key"] + ".globals.sql",
        "globals_sha256": "cd" * 32,
        "globals_size_bytes": 512,
        "sequence_values": {"public.trades_id_seq": 3000, "public.unused_seq": None},
    }
    manifest = Manifest.from_document(document, source=SOURCE)
    assert manifest.globals_key.endswith(".dump.zst.globals.sql")
    with pytest.raises(VerificationError, match="globals_sha256"):
        Manifest.from_document({**document, "globals_sha256": "not-a-digest"}, source=SOURCE)


def test_format_3_records_the_snapshot_time_and_the_note(manifest_doc: dict[str, Any]) -> None:
    document = {
        **manifest_doc,
        "format_version": 3,
        "slot": "2026-12-03T02:00:00+00:00",
        "snapshot_at": "2026-12-06T10:00:03.25+00:00",
        "note": "This backup holds the data of 2026-12-06 10:00:03 UTC, not of its slot 2026-12-03 02:00:00 UTC",
    }
    manifest = Manifest.from_document(document, source=SOURCE)
    assert (
        manifest.snapshot_time == manifest.snapshot_at == datetime(2026, 12, 6, 10, 0, 3, 250000, tzinfo=UTC)
    )
    assert manifest.slot == datetime(2026, 12, 3, 2, 0, tzinfo=UTC)
    assert Manifest.from_document(manifest.to_document(), source=SOURCE) == manifest
    assert FORMAT_VERSION == 3
