"""The stack's Alertmanager as tests need it: a failure alert of a red run stays firing until its
DAG succeeds again (as in production), so a test that judges what is firing starts from none."""

from __future__ import annotations

from datetime import UTC, datetime

import requests

from tests.support.waiting import wait_for


def firing(alertmanager_url: str) -> list[dict]:
    return requests.get(f"{alertmanager_url}/api/v2/alerts", params={"active": "true"}, timeout=10).json()


def resolve_firing_alerts(alertmanager_url: str) -> list[str]:
    """Resolve every alert firing (each posted again, ending now); the names of those resolved."""
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    alerts = firing(alertmanager_url)
    if alerts:
        ended = [
            {
                "labels": a["labels"],
                "annotations": a.get("annotations", {}),
                "startsAt": a["startsAt"],
                "endsAt": now,
            }
            for a in alerts
        ]
        requests.post(f"{alertmanager_url}/api/v2/alerts", json=ended, timeout=10).raise_for_status()
        wait_for(lambda: not firing(alertmanager_url), 30, "the alerts left firing to be resolved")
    return [a["labels"].get("alertname", "?") for a in alerts]
