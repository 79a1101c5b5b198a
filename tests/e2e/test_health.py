"""``morning_health_check`` under a running scheduler: its checks as parallel tasks, red on a stale
backup with its summary and failure alert, green again with the recovery announced."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest

from stellar_ops.backups.keys import backup_key
from stellar_ops.storage.s3 import S3Store
from tests.integration.health.conftest import manifest_document

pytestmark = pytest.mark.e2e

DAG = "morning_health_check"


def _summaries(texts: list[str]) -> list[str]:
    return [t for t in texts if t.split("\n", 1)[0].split(" ", 1)[-1].startswith("Morning health check:")]


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(1)
    raise AssertionError(f"no {what} within {timeout:.0f}s")


def _config(stack, prefix: str, **health) -> dict:
    return {
        "backup": {"bucket": "stellar-backups", "prefix": prefix},
        "health": {"disk_paths": [stack.data_dir], **health},
    }


def test_red_on_a_stale_backup_and_green_again(api, stack, receiver, e2e_prefix):
    store = S3Store(stack.s3_client(), "stellar-backups", encryption="AES256")
    finished = datetime.now(UTC) - timedelta(hours=3)
    key = backup_key(e2e_prefix, finished.replace(microsecond=0), "custom")
    store.put_bytes(key, b"\0" * 1024)
    store.put_json(key + ".manifest.json", manifest_document(key, finished_at=finished, size_bytes=1024))
    store.put_json(
        key + ".dr_report.json",
        {"success": True, "checks": [], "failed_steps": [], "finished_at": datetime.now(UTC).isoformat()},
    )
    api.wait_for_dag(DAG)
    api.unpause(DAG)

    api.set_variable("stellar_ops_config", _config(stack, e2e_prefix))
    healthy = api.trigger(DAG)
    assert api.wait_run(DAG, healthy) == "success", api.task_states(DAG, healthy)
    assert api.xcom(DAG, healthy, "summarize_health")["status"] == "unknown"  # no TLS results here
    (summary,) = _wait_for(lambda: _summaries(receiver.texts()), 30, "summary")
    assert summary.startswith(":white_check_mark: Morning health check: healthy")
    for name in ("services", "alerts", "backups", "disk", "indexer_lag", "certificates"):
        assert f"\n{name} " in summary, name

    receiver.clear()
    api.set_variable("stellar_ops_config", _config(stack, e2e_prefix, backup_max_age_hours=1))
    stale = api.trigger(DAG)
    assert api.wait_run(DAG, stale) == "failed"
    states = api.task_states(DAG, stale)
    assert states.pop("summarize_health") == "failed"
    assert set(states.values()) == {"success"}
    assert api.task_tries(DAG, stale)["summarize_health"] == 1
    (red,) = _wait_for(lambda: _summaries(receiver.texts()), 30, "summary")
    assert red.startswith(":red_circle: Morning health check: 1 critical (backups)")
    assert "RB-002 Backup failed or stale" in red
    alert = _wait_for(lambda: [t for t in receiver.texts() if "HealthCheckFailed" in t], 60, "failure alert")
    assert "1 critical health check(s): backups" in alert[0]

    receiver.clear()
    api.set_variable("stellar_ops_config", _config(stack, e2e_prefix))
    again = api.trigger(DAG)
    assert api.wait_run(DAG, again) == "success"
    resolved = _wait_for(lambda: [t for t in receiver.texts() if "RESOLVED" in t], 60, "resolution")
    assert DAG in resolved[0]
    assert json.dumps(api.xcom(DAG, again, "check_backups")["status"]) == '"ok"'
