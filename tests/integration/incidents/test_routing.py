"""Alerts go where their severity says: P1 pages, P2 and P3 go to ops; Alertmanager when asked."""

from __future__ import annotations

import time

import pytest
import requests

from stellar_ops.cli.env import EnvResources
from stellar_ops.core.alerts import Finding
from stellar_ops.registry import parse_config
from stellar_ops.runtime import Runtime
from tests.support.dagrun import run_dag

pytestmark = pytest.mark.integration

OPS, PAGING = "/B0ALERTS/", "/B0PAGING/"


def by_channel(receiver) -> dict[str, list[str]]:
    sent: dict[str, list[str]] = {"ops": [], "paging": []}
    for message in receiver.messages():
        if message.get("json") and "text" in message["json"]:
            channel = "paging" if PAGING in message["path"] else "ops" if OPS in message["path"] else "other"
            sent.setdefault(channel, []).append(message["json"]["text"])
    return sent


def alertmanager_alerts(stack, name: str) -> list[dict]:
    alerts = requests.get(stack.url("alertmanager") + "/api/v2/alerts", timeout=5).json()
    return [a for a in alerts if a["labels"].get("alertname") == name]


def test_a_p3_failure_reaches_only_the_ops_channel_and_alertmanager(airflow_db, stack, ops, receiver):
    ops.update(maintenance={"tables": ["no_such_table"]}, alerts={"alertmanager_severities": ["P3"]})
    outcome = run_dag("db_maintenance")
    assert outcome.state == "failed"
    sent = by_channel(receiver)
    assert sent["paging"] == []
    (alert,) = [t for t in sent["ops"] if "MaintenanceFailed" in t]
    assert "[P3]" in alert and "respond within 4 hours" in alert
    assert "*Runbook:* RB-006 Database query latency high: docs/runbooks.md#rb-006" in alert
    assert "no_such_table" in alert
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not alertmanager_alerts(stack, "MaintenanceFailed"):
        time.sleep(0.5)
    (posted,) = alertmanager_alerts(stack, "MaintenanceFailed")
    assert posted["labels"]["severity"] == "P3" and posted["labels"]["dag_id"] == "db_maintenance"
    assert posted["annotations"]["runbook"] == "RB-006"


def test_the_notifier_follows_the_configured_route(airflow_db, stack, ops, receiver):
    ops.update(
        maintenance={"tables": ["no_such_table"]},
        alerts={"routes": {"P1": "paging", "P2": "ops", "P3": "paging"}},
    )
    assert run_dag("db_maintenance").state == "failed"
    sent = by_channel(receiver)
    assert [t for t in sent["paging"] if "MaintenanceFailed" in t] and not sent["ops"]


def runtime(stack, **env: str) -> Runtime:
    config = parse_config(None)
    return Runtime(
        config, EnvResources(config, {**stack.env(), **env}), say=lambda _: None, warn=lambda _: None
    )


def test_a_p1_finding_pages_and_does_not_reach_the_ops_channel(stack, receiver):
    finding = Finding(
        "ApiKeyCompromised", "P1", "API keys rotated after a suspected leak", "SEC-3.2", "api_key_rotation"
    )
    runtime(stack).alert(finding)
    sent = by_channel(receiver)
    assert sent["ops"] == []
    (page,) = sent["paging"]
    assert page.startswith(":rotating_light: [P1] ApiKeyCompromised") and "respond within 15 minutes" in page
    assert "*Runbook:* SEC-3.2 API key rotation: docs/runbooks.md#sec-3.2" in page


def test_without_a_paging_channel_a_page_goes_to_ops_marked_so(stack, receiver):
    finding = Finding(
        "ApiKeyCompromised", "P1", "API keys rotated after a suspected leak", "SEC-3.2", "api_key_rotation"
    )
    runtime(stack, PAGING_WEBHOOK="").alert(finding)
    sent = by_channel(receiver)
    assert sent["paging"] == []
    (page,) = sent["ops"]
    assert "this should have paged" in page and "[P1] ApiKeyCompromised" in page
