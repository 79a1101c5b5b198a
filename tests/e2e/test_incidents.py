"""Incidents under a live scheduler: deadlines missed while a run still runs, and the review draft."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stellar_ops.core.durations import humanize_duration
from stellar_ops.postgres.target import connect
from tests.support.airflow_server import DEADLINE_MINUTES
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

CLI = str(Path(sys.executable).parent / "stellar-ops")


def test_a_missed_deadline_alerts_while_the_run_still_runs_and_one_in_time_does_not(
    api, stack, receiver, e2e_prefix
):
    api.unpause("db_maintenance")
    document = {"maintenance": {"lock_timeout_seconds": 300}}
    api.set_variable("stellar_ops_config", document)
    in_time = api.trigger("db_maintenance", conf={"tables": ["public.accounts"]})
    assert api.wait_run("db_maintenance", in_time) == "success"

    with connect(stack.superuser, autocommit=False) as holder:
        holder.execute("LOCK TABLE escrows IN ACCESS EXCLUSIVE MODE")  # its VACUUM waits for this
        late = api.trigger("db_maintenance", conf={"tables": ["public.escrows"]})
        missed = wait_for(
            lambda: [t for t in receiver.texts() if "DeadlineMissed" in t],
            DEADLINE_MINUTES * 60 + 90,
            "deadline alert",
        )
        assert api.run_state("db_maintenance", late) == "running", (
            "the alert came while the run was still going"
        )
        holder.rollback()
    assert api.wait_run("db_maintenance", late) == "success"
    (alert,) = missed
    deadline = humanize_duration(DEADLINE_MINUTES * 60)
    assert f"[P3] DeadlineMissed: db_maintenance run {late} is not done {deadline} after" in alert
    assert "respond within 4 hours" in alert and "RB-006" in alert
    assert in_time not in " ".join(receiver.texts()), "a run done in time has no deadline alert"
    # the missed deadline opened an incident, which the run's success closes
    resolved = wait_for(lambda: [t for t in receiver.texts() if "RESOLVED" in t], 60, "resolution")
    assert late in resolved[0]


def test_a_failing_then_recovering_p2_dag_leaves_a_review_draft_in_s3(api, stack, receiver, e2e_prefix):
    api.unpause("db_backup")
    good = {"backup": {"bucket": "stellar-backups", "prefix": e2e_prefix}}
    api.set_variable("stellar_ops_config", {"backup": {**good["backup"], "bucket": "no-such-bucket-e2e"}})
    failed = api.trigger("db_backup", conf={"force": True})
    assert api.wait_run("db_backup", failed) == "failed"
    (alert,) = [t for t in receiver.texts() if "BackupFailed" in t]
    assert "no-such-bucket-e2e" in alert and "respond within 1 hour" in alert

    api.set_variable("stellar_ops_config", good)
    recovered = api.trigger("db_backup", conf={"force": True})
    assert api.wait_run("db_backup", recovered) == "success"
    (resolution,) = wait_for(lambda: [t for t in receiver.texts() if "RESOLVED" in t], 60, "resolution")
    assert failed in resolution and recovered in resolution
    review = next(line for line in resolution.splitlines() if line.startswith("*Post-incident review"))
    key = review.split("s3://stellar-backups/", 1)[1]
    assert key.startswith(e2e_prefix + "incidents/") and key.endswith("-db_backup.md")
    client = stack.s3_client()
    draft = client.get_object(Bucket="stellar-backups", Key=key)["Body"].read().decode()
    timeline = [line for line in draft.splitlines() if line.startswith("- 20")]
    kinds = [
        ("retried" in s, "failed for good" in s, "alert sent" in s, "succeeded again" in s) for s in timeline
    ]
    assert kinds == [
        (True, False, False, False),
        (True, False, False, False),
        (False, True, False, False),
        (False, False, True, False),
        (False, False, False, True),
    ], timeline
    assert all("check_prerequisites" in line for line in timeline[:3])
    assert "no-such-bucket-e2e" in timeline[0] and f"run `{recovered}` succeeded again" in timeline[-1]
    assert "**Detection time:**" in draft and "## Corrective actions" in draft

    # the same draft on demand, from the incident kept beside it
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_")}
    env.update({k: v for k, v in stack.env().items() if not k.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_"))})
    env["STELLAR_OPS_CONFIG"] = json.dumps(good)
    again = subprocess.run(
        [CLI, "incident", "draft", "--dag", "db_backup", "--run", failed],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert again.returncode == 0, again.stderr
    assert again.stdout == draft
