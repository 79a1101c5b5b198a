"""A real Prometheus with the project's rules, scraping the stack's Pushgateway, fires BackupStale
into the stack's Alertmanager when the last successful backup is older than 26 hours."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests
import yaml

from stellar_ops.core.metrics import Metric, push_to_gateway
from stellar_ops.core.processes import ManagedProcess, free_port

pytestmark = pytest.mark.integration

RULES = Path(__file__).resolve().parents[3] / "monitoring" / "prometheus" / "stellar_ops_rules.yml"


@pytest.fixture
def prometheus(stack, tmp_path):
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "alerting": {
            "alertmanagers": [
                {
                    "api_version": "v2",
                    "static_configs": [{"targets": [f"127.0.0.1:{stack.ports['alertmanager']}"]}],
                }
            ]
        },
        "scrape_configs": [
            {
                "job_name": "pushgateway",
                "honor_labels": True,
                "static_configs": [{"targets": [f"127.0.0.1:{stack.ports['pushgateway']}"]}],
            }
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    process = ManagedProcess(
        name="prometheus",
        argv=[
            "prometheus",
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=1h",
            "--rules.alert.resend-delay=1s",
            "--log.level=warn",
        ],
        log_path=tmp_path / "prometheus.log",
    )
    process.start()
    try:
        process.wait_ready(lambda: _ready(port), timeout=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.stop()


def _ready(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/-/ready", timeout=1).status_code == 200
    except requests.RequestException:
        return False


def firing(url: str, name: str) -> list[dict]:
    alerts = requests.get(f"{url}/api/v2/alerts", params={"active": "true"}, timeout=5).json()
    return [a for a in alerts if a["labels"].get("alertname") == name]


def test_a_backup_older_than_26_hours_fires_backup_stale_into_alertmanager(stack, prometheus):
    alertmanager = stack.url("alertmanager")
    # as db_backup pushes it, but its last success 27 hours ago
    stale = Metric("stellar_backup_last_success_timestamp_seconds", time.time() - 27 * 3600, "last success")
    push_to_gateway(stack.url("pushgateway"), job="stellar_ops", procedure="db_backup", metrics=[stale])
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not firing(alertmanager, "BackupStale"):
        time.sleep(1)
    (alert,) = firing(alertmanager, "BackupStale")
    assert alert["labels"]["severity"] == "P2"
    assert alert["annotations"]["runbook"] == "RB-002"
    assert alert["annotations"]["summary"].startswith("No successful backup for 1d 3h")

    rules = requests.get(f"{prometheus}/api/v1/rules", timeout=5).json()["data"]["groups"]
    states = {r["name"]: r["state"] for g in rules for r in g["rules"]}
    assert states["BackupStale"] == "firing"
    # a fresh success ends it
    fresh = Metric("stellar_backup_last_success_timestamp_seconds", time.time(), "last success")
    push_to_gateway(stack.url("pushgateway"), job="stellar_ops", procedure="db_backup", metrics=[fresh])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        rules = requests.get(f"{prometheus}/api/v1/rules", timeout=5).json()["data"]["groups"]
        if {r["name"]: r["state"] for g in rules for r in g["rules"]}["BackupStale"] == "inactive":
            break
        time.sleep(1)
    else:
        raise AssertionError("BackupStale stayed firing after a fresh success")
