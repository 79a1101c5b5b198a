"""stellar_ops.dr.report: the DR test's JSON report, its summary line and its metrics."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from stellar_ops.catalogue.manifest import Manifest
from stellar_ops.dr import report
from stellar_ops.dr.verdicts import Verdict


def _report(
    verdicts: list[Verdict], *, failed_steps: list[str] | None = None, manifest: Manifest | None = None
) -> dict[str, Any]:
    return report.report(
        backup={"source": "s3", "location": "backups/stellar_escrow_20250301T020000Z.dump.zst"},
        manifest=manifest,
        verdicts=[v.as_dict() for v in verdicts],
        failed_steps=failed_steps or [],
        rto_seconds=42.26,
        rpo_seconds=7200.0,
        scratch_backend="local",
        run_id="manual__1",
        warnings=["w1"],
    )


def test_report_success(make_manifest: Callable[..., Manifest]) -> None:
    manifest = make_manifest()
    verdicts = [Verdict("row counts", True, "match"), Verdict("schema", True, "ok")]

    document = _report(verdicts, manifest=manifest)

    assert document["success"] is True
    assert document["format_version"] == 1
    assert document["manifest_sha256"] == manifest.sha256
    assert document["checks"] == [
        {"check": "row counts", "passed": True, "detail": "match", "problems": []},
        {"check": "schema", "passed": True, "detail": "ok", "problems": []},
    ]
    assert document["dag_run_id"] == "manual__1"
    assert document["warnings"] == ["w1"]
    assert datetime.fromisoformat(document["finished_at"]).tzinfo is not None
    assert report.summary_line(document) == (
        ":white_check_mark: DR test passed: backups/stellar_escrow_20250301T020000Z.dump.zst restored in "
        "42 s (drill restore on a throwaway-tuned scratch server), backup age 2 h (RPO), 2 checks passed"
    )


def test_report_failure_from_a_verdict_and_a_step() -> None:
    verdicts = [Verdict("row counts", False, "bad", ["x"]), Verdict("schema", True, "ok")]

    document = _report(verdicts, failed_steps=["sanity queries step"])

    assert document["success"] is False
    assert document["manifest_sha256"] is None
    assert report.summary_line(document) == (
        ":red_circle: DR test FAILED for backups/stellar_escrow_20250301T020000Z.dump.zst: "
        "row counts, sanity queries step"
    )


def test_report_with_only_a_failed_step_fails() -> None:
    assert _report([Verdict("schema", True, "ok")], failed_steps=["restore"])["success"] is False


def test_report_without_any_verdict_is_not_a_success() -> None:
    document = _report([])
    assert document["success"] is False
    assert report.summary_line(document).startswith(":red_circle: DR test FAILED for ")


def test_metrics_carry_rto_and_rpo_only_when_measured() -> None:
    passed = _report([Verdict("schema", True, "ok")])
    assert {m.name: m.value for m in report.dr_metrics(passed)} == {
        "stellar_dr_test_success": 1.0,
        "stellar_dr_restore_seconds": 42.26,
        "stellar_dr_backup_age_seconds": 7200.0,
    }
    unresolved = {**_report([], failed_steps=["resolve_backup"]), "rto_seconds": None, "rpo_seconds": None}
    assert [(m.name, m.value) for m in report.dr_metrics(unresolved)] == [("stellar_dr_test_success", 0.0)]
