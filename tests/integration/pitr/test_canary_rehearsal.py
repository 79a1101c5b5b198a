"""The drill's point-in-time rehearsal against the stack: a base backup of the stack's cluster, its
archived WAL, a recovery to a random second into a scratch server, checked by the stack's canary
rows; through ``dr_restore_test`` too, with its report and metrics; and a recovery whose canaries
are wrong fails the drill naming them."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from stellar_ops.cli.env import runtime
from stellar_ops.dr import rehearsal
from stellar_ops.pitr import canary, catalog
from stellar_ops.pitr.base_backup import take_base_backup
from stellar_ops.pitr.layout import BaseBackupRecord
from stellar_ops.postgres.pitr import PitrConfig
from stellar_ops.storage.s3 import S3Store
from stellar_ops_dev.stack import CANARY_INTERVAL
from tests.support.dagrun import run_dag
from tests.support.faults import gauge

pytestmark = pytest.mark.integration

BUCKET = "stellar-backups"
CLI = str(Path(sys.executable).parent / "stellar-ops")


@pytest.fixture(scope="module")
def base_backup(stack) -> BaseBackupRecord:
    """A base backup of the stack's cluster in its archive (pitr/stellar/), with canaries after it."""
    store = S3Store(stack.s3_client(), BUCKET, encryption="AES256")
    record = take_base_backup(stack.superuser, store, PitrConfig())
    # a few canaries after its end, so the window holds seconds worth checking
    deadline = time.monotonic() + 60
    while len([r for r in canary.source_rows(stack.db) if r.committed_at > record.stop_time]) < 3:
        assert time.monotonic() < deadline, (
            "no canaries after the base backup: is the stack's writer running?"
        )
        time.sleep(1)
    return record


@pytest.fixture
def rehearsing(ops, stack):
    ops.update(dr={"pitr_rehearsal": "on"}, pitr={"tools_dir": stack.ops_config()["pitr"]["tools_dir"]})
    return ops


def _leftovers(stack) -> list[str]:
    work = Path(stack.data_dir) / "scratch"
    return sorted(p.name for p in work.glob(f"*{rehearsal.SCRATCH_SUFFIX}")) if work.exists() else []


def test_a_recovery_to_a_random_second_holds_exactly_its_canaries(stack, rehearsing, base_backup):
    rt = runtime()
    said: list[str] = []
    rt.say = said.append
    base = rehearsal.scratch_dir(Path(stack.data_dir) / "scratch", "stellar-dr-h3-test")

    outcome = rehearsal.restore_to_moment(rt, base, rng=random.Random(29))

    found = outcome["canaries"]
    assert found["passed"] is True, found["detail"]
    window = outcome["window"]
    target = canary.datetime.fromisoformat(outcome["target"])
    assert target.microsecond == 0
    assert (
        canary.datetime.fromisoformat(window["from"]) <= target <= canary.datetime.fromisoformat(window["to"])
    )
    oldest = catalog.complete_base_backups(rt.store(), "pitr", "stellar")[0]
    assert canary.datetime.fromisoformat(window["from"]) >= oldest.stop_time
    assert found["expected"] == found["recovered"] > 0 and found["missing"] == [] and found["extra"] == []
    # the moment reached is the last commit at or before the target: canaries come every few seconds
    reached = canary.datetime.fromisoformat(outcome["reached"])
    assert reached <= target
    assert 0 <= outcome["rpo_seconds"] <= CANARY_INTERVAL + 1
    assert outcome["rto_seconds"] > 0
    assert any(line.startswith("point-in-time rehearsal: recovering to ") for line in said), said
    assert not base.exists() and _leftovers(stack) == []

    # the same recovered ids judged against a later moment are short of it: the check can fail
    rows = canary.source_rows(stack.db)
    present = {r.id for r in rows if r.committed_at <= target}
    later = canary.verdict(rows, present, target + timedelta(seconds=3 * CANARY_INTERVAL))
    assert not later.passed and later.missing_count >= 2


def test_the_drill_rehearses_and_reports_it(stack, rehearsing, receiver, backup_key, base_backup):
    outcome = run_dag("dr_restore_test")

    assert outcome.state == "success", outcome.tasks
    assert set(outcome.tasks.values()) == {"success"}
    recovered = outcome.xcom("restore_to_moment")
    assert recovered["canaries"]["passed"] is True
    assert outcome.xcom("verify_canaries")["check"] == "point-in-time canaries"
    report = rehearsing.store().get_json(backup_key + ".dr_report.json")
    assert report["success"] is True
    assert [c["check"] for c in report["checks"]][-1] == "point-in-time canaries"
    pitr = report["pitr"]
    assert pitr["rehearsed"] is True and pitr["passed"] is True
    assert pitr["target"] == recovered["target"] and pitr["base_backup"] == recovered["base_backup"]
    labels = {"job": "stellar_ops", "procedure": "dr_restore_test"}
    pushgateway = stack.url("pushgateway")
    assert gauge(pushgateway, "stellar_dr_pitr_success", **labels) == 1.0
    assert gauge(pushgateway, "stellar_dr_pitr_rto_seconds", **labels) == pytest.approx(pitr["rto_seconds"])
    assert gauge(pushgateway, "stellar_dr_pitr_rpo_seconds", **labels) == pytest.approx(pitr["rpo_seconds"])
    (summary,) = [t for t in receiver.texts() if "DR test" in t]
    assert "point-in-time recovery to " in summary and "canaries exact" in summary
    assert _leftovers(stack) == []


def test_wrong_canaries_fail_the_drill_naming_them(
    stack, rehearsing, receiver, backup_key, base_backup, monkeypatch
):
    # the fault: a recovery that stopped short, seen as a check against a moment 10 s later than
    # the one recovered to (the recovered server itself is real)
    judged = canary.verdict

    def short_of_target(rows, present, target, reached=None):
        return judged(rows, present, target + timedelta(seconds=10), None)

    monkeypatch.setattr(canary, "verdict", short_of_target)
    outcome = run_dag("dr_restore_test")

    assert outcome.state == "failed", outcome.tasks
    assert outcome.tasks["restore_to_moment"] == "success"
    assert outcome.tasks["verify_canaries"] == "failed"
    assert outcome.tasks["drop_scratch"] == "success" and outcome.tasks["publish_report"] == "success"
    report = rehearsing.store().get_json(backup_key + ".dr_report.json")
    assert report["success"] is False
    assert report["pitr"]["passed"] is False
    assert "committed at or before the target are missing, first " in report["pitr"]["canaries"]["detail"]
    assert (
        gauge(
            stack.url("pushgateway"),
            "stellar_dr_pitr_success",
            job="stellar_ops",
            procedure="dr_restore_test",
        )
        == 0.0
    )
    (alert,) = [t for t in receiver.texts() if "DisasterRecoveryTestFailed" in t]
    assert "verify_canaries" in alert
    assert _leftovers(stack) == []


def test_stellar_ops_dr_test_rehearses_too(stack, rehearsing, backup_key, base_backup):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_")}
    env.update(stack.env())
    env["STELLAR_OPS_CONFIG"] = json.dumps(rehearsing.document)
    result = subprocess.run(
        [CLI, "dr-test", "--backup", backup_key, "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["success"] is True
    assert report["pitr"]["rehearsed"] is True and report["pitr"]["passed"] is True
    assert "PASS point-in-time canaries: all " in result.stderr
    assert stack.s3_secret_key not in result.stdout + result.stderr
    assert _leftovers(stack) == []
