"""The drill's point-in-time rehearsal, its pure parts: when it runs, its verdict, its report and
metrics (stellar_ops.dr.rehearsal, stellar_ops.dr.report)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from stellar_ops.core.errors import ConfigError, PrerequisiteError, VerificationError
from stellar_ops.dr import rehearsal, report
from stellar_ops.dr.config import DrConfig
from stellar_ops.dr.verdicts import Verdict
from stellar_ops.pitr import canary
from stellar_ops.pitr.canary import CanaryRow
from stellar_ops.pitr.layout import BaseBackupRecord
from stellar_ops.registry import parse_config

T0 = datetime(2026, 12, 6, 12, 0, 0, tzinfo=UTC)
SOURCE = [CanaryRow(n, T0 + timedelta(seconds=5 * n)) for n in range(1, 11)]
TARGET = T0 + timedelta(seconds=27)


def _outcome(present: set[int]) -> dict[str, Any]:
    verdict = canary.verdict(SOURCE, present, TARGET, T0 + timedelta(seconds=26))
    return rehearsal.outcome(
        verdict, "20261206T110000Z", 41.26, T0 - timedelta(hours=1), T0 + timedelta(minutes=1), "0" * 24
    )


def _report(pitr: dict[str, Any] | None, verdicts: list[Verdict] | None = None) -> dict[str, Any]:
    checks = verdicts if verdicts is not None else [Verdict("row counts", True, "match")]
    return report.report(
        backup={"source": "s3", "location": "backups/stellar_escrow_20261206T020000Z.dump.zst"},
        manifest=None,
        verdicts=[v.as_dict() for v in checks],
        failed_steps=[],
        rto_seconds=42.0,
        rpo_seconds=7200.0,
        scratch_backend="local",
        run_id="manual__1",
        warnings=[],
        pitr=pitr,
    )


def test_the_rehearsal_runs_by_default_when_a_base_backup_exists():
    assert DrConfig().pitr_rehearsal == "auto"
    assert parse_config({"dr": {"pitr_rehearsal": "off"}}).dr.pitr_rehearsal == "off"
    with pytest.raises(ConfigError, match="dr.pitr_rehearsal: Input should be .auto., .on. or .off."):
        parse_config({"dr": {"pitr_rehearsal": "sometimes"}})

    where = "s3://stellar-backups/pitr/stellar/base/"
    assert rehearsal.skip_reason("auto", [object()], where) is None
    assert rehearsal.skip_reason("on", [object()], where) is None
    assert rehearsal.skip_reason("auto", [], where) == (
        "no complete base backup in s3://stellar-backups/pitr/stellar/base/ (dr.pitr_rehearsal is auto)"
    )
    assert rehearsal.skip_reason("off", [object()], where) == "dr.pitr_rehearsal is off"


def test_on_without_a_base_backup_fails_the_drill():
    with pytest.raises(
        PrerequisiteError, match="dr.pitr_rehearsal is on but s3://b/pitr/stellar/base/ holds no"
    ):
        rehearsal.skip_reason("on", [], "s3://b/pitr/stellar/base/")


def test_the_outcome_is_small_and_carries_its_verdict():
    outcome = _outcome({1, 2, 3, 4, 5})

    assert outcome["target"] == TARGET.isoformat()
    assert outcome["rto_seconds"] == 41.26 and outcome["rpo_seconds"] == 1.0
    assert outcome["base_backup"] == "20261206T110000Z"
    assert outcome["canaries"]["passed"] is True
    verdict = rehearsal.verify_canaries(outcome)
    assert verdict is not None and verdict.passed and verdict.check == "point-in-time canaries"


def test_wrong_canaries_fail_the_check_with_their_ids():
    verdict = rehearsal.verify_canaries(_outcome({1, 2, 3, 4, 5, 6}))

    assert verdict is not None and not verdict.passed
    assert "first 6 (2026-12-06T12:00:30.000000Z): the recovery went past the target" in verdict.detail
    with pytest.raises(VerificationError, match="point-in-time canaries failed"):
        verdict.raise_if_failed()


def test_a_skipped_rehearsal_has_no_verdict():
    assert rehearsal.verify_canaries({"skipped": "dr.pitr_rehearsal is off"}) is None
    assert rehearsal.verify_canaries({}) is None


def test_the_report_holds_the_rehearsal_and_its_metrics():
    document = _report(_outcome({1, 2, 3, 4, 5}))

    assert document["success"] is True
    pitr = document["pitr"]
    assert pitr["rehearsed"] is True and pitr["passed"] is True
    assert (
        pitr["target"] == TARGET.isoformat() and pitr["reached"] == (T0 + timedelta(seconds=26)).isoformat()
    )
    assert "fetch + replay + promote" in pitr["meaning"]
    metrics = {m.name: m.value for m in report.dr_metrics(document)}
    assert metrics["stellar_dr_pitr_success"] == 1.0
    assert metrics["stellar_dr_pitr_rto_seconds"] == 41.26
    assert metrics["stellar_dr_pitr_rpo_seconds"] == 1.0
    assert report.summary_line(document).endswith(
        "; point-in-time recovery to 2026-12-06T12:00:27+00:00 in 41 s, RPO reached 1 s, canaries exact"
    )


def test_wrong_canaries_make_the_report_fail_even_without_their_check():
    document = _report(_outcome({1, 2}))

    assert document["success"] is False
    assert document["pitr"]["passed"] is False
    assert {m.name: m.value for m in report.dr_metrics(document)}["stellar_dr_pitr_success"] == 0.0


def test_a_skipped_or_failed_rehearsal_in_the_report():
    skipped = _report({"skipped": "dr.pitr_rehearsal is off"})
    assert skipped["success"] is True
    assert skipped["pitr"] == {"rehearsed": False, "reason": "dr.pitr_rehearsal is off"}
    assert not [m for m in report.dr_metrics(skipped) if m.name.startswith("stellar_dr_pitr_")]
    assert "point-in-time" not in report.summary_line(skipped)

    assert _report(None)["pitr"] == {"rehearsed": False, "reason": "not run"}

    failed = _report({"failed": "restore_to_moment failed: its log says why"})
    assert failed["pitr"]["passed"] is False
    assert [
        (m.name, m.value) for m in report.dr_metrics(failed) if m.name.startswith("stellar_dr_pitr_")
    ] == [("stellar_dr_pitr_success", 0.0)]


def test_the_rehearsal_directory_sits_beside_the_scratch_server_and_goes_with_it(tmp_path: Path):
    base = rehearsal.scratch_dir(tmp_path, "stellar-dr-manual-abc123")
    assert base == tmp_path / "stellar-dr-manual-abc123-pitr"
    assert rehearsal.remove_leftovers(base) == []
    (base / "data").mkdir(parents=True)
    (base / "data" / "postmaster.pid").write_text("999999999\n")  # no such process

    assert rehearsal.remove_leftovers(base) == [str(base)]
    assert not base.exists()


def _record(identifier: str) -> BaseBackupRecord:
    return BaseBackupRecord(
        backup_id="20261206T110000Z",
        server="stellar",
        system_identifier=identifier,
        timeline=1,
        pg_version_num=150000,
        start_lsn="0/2000028",
        start_wal="000000010000000000000002",
        start_time=T0 - timedelta(hours=1),
        stop_lsn="0/2000100",
        stop_wal="000000010000000000000002",
        stop_time=T0 - timedelta(minutes=59),
        raw_bytes=1,
        stored_bytes=1,
        sha256="0" * 64,
    )


def test_only_the_base_backups_of_the_drills_own_cluster_are_rehearsed():
    mine, theirs = _record("7001"), _record("9009")
    where = "s3://b/pitr/stellar/base/"

    assert rehearsal.of_this_cluster([theirs, mine], "7001", "db", where) == [mine]
    assert rehearsal.of_this_cluster([theirs], None, "db", where) == [theirs]  # unknown: not filtered
    with pytest.raises(
        PrerequisiteError, match=r"are of cluster\(s\) 9009, not of db \(system identifier 7001\)"
    ):
        rehearsal.of_this_cluster([theirs], "7001", "db", where)
