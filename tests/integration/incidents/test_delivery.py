"""An alert is delivered or kept, against the stack's real receiver, Alertmanager and S3.

- Slack rate limits, then fails for a minute: every alert of a run arrives exactly once.
- Slack is down for a whole run: the alerts reach Alertmanager and the outbox, and the next run
  of any DAG delivers them; a second drain posts nothing again.
- Two drains at once post each kept alert once.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections import Counter
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pendulum
import pytest
import requests

from stellar_ops.adapters.common import outbox
from stellar_ops.core.alerts import info_message
from stellar_ops.core.delivery import Delivered
from stellar_ops.core.errors import ConfigError
from stellar_ops.registry import CATALOGUE, procedure_for

pytestmark = pytest.mark.integration

FAILING, WORKING = "it_alert_delivery", "it_alert_drain"
TASKS = 3
ID = re.compile(r"alert id: ([0-9a-f]{16})")


def build_dag(dag_id: str, *, fail: bool) -> Any:
    """``TASKS`` tasks with the product's task defaults (failure notifier, outbox drain) that fail
    at once (a ConfigError is not retried), or one task that succeeds."""
    from airflow.sdk import DAG, task

    from stellar_ops.adapters.common.alerting import task_defaults

    with DAG(
        dag_id,
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        default_args=task_defaults(dag_id, execution_timeout=timedelta(minutes=5)),
    ) as dag:
        if fail:
            for number in range(TASKS):

                @task(task_id=f"fail_step_{number}")
                def fail_step(number: int = number) -> None:
                    raise ConfigError(f"probe step {number} failed on purpose")

                fail_step()
        else:

            @task
            def do_nothing() -> str:
                return "ok"

            do_nothing()
    register(dag)
    return dag


def register(dag: Any) -> None:
    """Write a DAG built here to the metadata DB, as parsing the DAGs folder does for its own:
    ``dag.test()`` finds a DAG only there."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.collection import update_dag_parsing_results_in_db
    from airflow.serialization.serialized_objects import LazyDeserializedDAG
    from airflow.utils.session import create_session

    with create_session() as session:
        DagBundlesManager().sync_bundles_to_db(session=session)
        session.commit()
        update_dag_parsing_results_in_db(
            "dags-folder", None, [LazyDeserializedDAG.from_dag(dag)], {}, None, set(), session=session
        )


@pytest.fixture
def probes(monkeypatch, airflow_db) -> None:
    """The probe DAGs in the taxonomy as P1 procedures: their alerts page."""
    for dag_id in (FAILING, WORKING):
        monkeypatch.setitem(CATALOGUE, dag_id, replace(procedure_for("db_restore"), dag_id=dag_id))


def state(run: Any) -> str:
    return str(getattr(run.state, "value", run.state))


def slack_posts(receiver) -> list[dict[str, Any]]:
    """What reached the webhooks (not Alertmanager's own notifications), with the answer given."""
    return [m for m in receiver.messages() if m["path"].startswith("/services/")]


def delivered_ids(receiver) -> Counter[str]:
    found: Counter[str] = Counter()
    for post in slack_posts(receiver):
        if post["status"] == 200:
            (ident,) = ID.findall(json.dumps(post["json"]["blocks"]))
            found[ident] += 1
    return found


def test_rate_limit_then_a_minute_of_5xx_every_alert_arrives_exactly_once(stack, ops, receiver, probes):
    script = [  # Slack's webhooks only: Alertmanager's own notifications to the receiver are answered
        {"status": 429, "count": 1, "headers": {"Retry-After": "2"}, "path": "/services/"},
        {"status": 500, "seconds": 60, "path": "/services/"},
    ]
    requests.post(stack.url("receiver") + "/_script", json=script, timeout=5).raise_for_status()
    started = time.monotonic()
    assert state(build_dag(FAILING, fail=True).test()) == "failed"
    took = time.monotonic() - started

    posts = slack_posts(receiver)
    statuses = [p["status"] for p in posts]
    assert statuses[0] == 429 and statuses.count(500) >= 4, statuses
    assert posts[1]["status"] == 500  # the retry waited the 2 s the 429 asked for
    gap = pendulum.parse(posts[1]["at"]) - pendulum.parse(posts[0]["at"])
    assert gap.total_seconds() >= 1.9
    ids = delivered_ids(receiver)
    assert len(ids) == TASKS and set(ids.values()) == {1}, ids
    # each delivered on its own route: the paging channel, not the ops fallback
    assert all("/B0PAGING/" in p["path"] for p in posts) and took >= 60
    texts = [p["json"]["text"] for p in posts if p["status"] == 200]
    assert all(f"{FAILING}.fail_step_" in t and "probe step" in t for t in texts)
    assert [o for o in ops.objects() if "/alerts/outbox/" in o] == []


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def alertmanager_ids(stack) -> set[str]:
    alerts = requests.get(stack.url("alertmanager") + "/api/v2/alerts", timeout=5).json()
    return {
        a["labels"]["alert_id"] for a in alerts if a["labels"].get("alertname") == outbox.UNDELIVERED_ALERT
    }


def test_with_slack_down_alerts_reach_alertmanager_and_the_outbox_and_the_next_run_sends_them(
    stack, ops, receiver, probes, monkeypatch
):
    ops.update(alerts={"delivery": {"max_seconds": 2, "fallback_max_seconds": 1}})
    down = f"http://127.0.0.1:{closed_port()}"
    for conn_id, url in (("slack_alerts", stack.webhook_url), ("slack_paging", stack.paging_webhook_url)):
        unreachable = url.replace(stack.url("receiver"), down)
        monkeypatch.setenv(
            f"AIRFLOW_CONN_{conn_id.upper()}",
            json.dumps({"conn_type": "slackwebhook", "password": unreachable}),
        )

    assert state(build_dag(FAILING, fail=True).test()) == "failed"

    assert slack_posts(receiver) == []
    kept = [o for o in ops.objects() if "/alerts/outbox/" in o]
    ids = {key.rsplit("/", 1)[-1].removesuffix(".json") for key in kept}
    assert len(ids) == TASKS
    assert ids <= alertmanager_ids(stack)
    document = ops.store().get_json(kept[0])
    assert document["channel"] == "paging" and document["alertmanager"] is True
    assert any("could not be reached" in failure for failure in document["failures"])
    assert f"{FAILING}.fail_step_" in document["payload"]["text"]

    for conn_id, url in (("slack_alerts", stack.webhook_url), ("slack_paging", stack.paging_webhook_url)):
        monkeypatch.setenv(
            f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "slackwebhook", "password": url})
        )
    assert state(build_dag(WORKING, fail=False).test()) == "success"

    assert dict(delivered_ids(receiver)) == dict.fromkeys(ids, 1)
    assert all("/B0PAGING/" in p["path"] for p in slack_posts(receiver))
    objects = ops.objects()
    assert [o for o in objects if "/alerts/outbox/" in o or "/alerts/claims/" in o] == []
    assert {o.rsplit("/", 1)[-1] for o in objects if "/alerts/sent/" in o} == ids

    # a second drain (the next task, or the CLI's) posts nothing again
    assert state(build_dag(WORKING, fail=False).test()) == "success"
    report = outbox.drain(ops.config, ops.store())
    assert report.delivered == [] and len(slack_posts(receiver)) == TASKS


def test_two_drains_at_once_post_each_kept_alert_once(stack, ops, airflow_db):
    config = ops.config
    store = ops.store()
    kept = {f"{n:016x}" for n in range(6)}
    for ident in kept:
        store.put_json(
            f"{ops.prefix}alerts/outbox/{ident}.json",
            {"alert_id": ident, "channel": "ops", "payload": info_message(f"kept {ident}")},
        )
    posted: list[str] = []
    lock = threading.Lock()

    def slow_poster(conn_id: str, payload: dict[str, Any], policy: Any) -> Delivered:
        time.sleep(0.3)  # both drains are in flight together
        with lock:
            posted.extend(ID.findall(json.dumps(payload["blocks"])))
        return Delivered(attempts=1, seconds=0.3)

    reports: list[outbox.DrainReport] = []
    drains = [
        threading.Thread(target=lambda: reports.append(outbox.drain(config, ops.store(), poster=slow_poster)))
        for _ in range(2)
    ]
    for thread in drains:
        thread.start()
    for thread in drains:
        thread.join(60)
    assert sorted(posted) == sorted(kept)
    assert sorted(i for r in reports for i in r.delivered) == sorted(kept)
    assert [o for o in ops.objects() if "/alerts/outbox/" in o or "/alerts/claims/" in o] == []


def test_the_cli_retries_through_the_same_loop_and_falls_back_to_the_other_webhook(stack, ops, receiver):
    from stellar_ops.cli.env import EnvResources

    warnings: list[str] = []
    resources = EnvResources(ops.config, stack.env(), warn=warnings.append)
    script = [
        {"status": 429, "count": 1, "headers": {"Retry-After": "1"}, "path": "/services/"},
        {"status": 503, "count": 2, "path": "/services/"},
    ]
    requests.post(stack.url("receiver") + "/_script", json=script, timeout=5).raise_for_status()
    resources.send_message(info_message("cli page"), "paging")
    assert [p["status"] for p in slack_posts(receiver)] == [429, 503, 503, 200]
    assert len(delivered_ids(receiver)) == 1 and warnings == []

    receiver.clear()
    wrong = stack.paging_webhook_url.replace("/B0PAGING/", "/B0NOSUCH/")
    requests.post(  # Slack's answer to a webhook that does not exist
        stack.url("receiver") + "/_script",
        json=[{"status": 404, "count": 1, "path": "/services/"}],
        timeout=5,
    )
    EnvResources(ops.config, {**stack.env(), "PAGING_WEBHOOK": wrong}).send_message(
        info_message("cli page 2"), "paging"
    )
    first, second = slack_posts(receiver)
    assert first["status"] == 404 and "/B0NOSUCH/" in first["path"]  # not retried
    assert second["status"] == 200 and "/B0ALERTS/" in second["path"]
    assert second["json"]["text"].startswith(":warning: (the paging webhook could not be reached")


def test_a_claim_is_taken_once_and_a_stale_one_is_taken_over(stack, ops):
    store = ops.store()
    key = f"{ops.prefix}alerts/claims/0123456789abcdef"
    assert outbox.claim(store, key, timedelta(minutes=10)) is True
    assert outbox.claim(store, key, timedelta(minutes=10)) is False  # If-None-Match: * refused it
    time.sleep(1.1)
    assert outbox.claim(store, key, timedelta(seconds=1)) is True  # its drain died: taken over
    store.delete(key)


def test_what_the_cli_could_not_deliver_is_kept_and_the_next_dag_task_sends_it(
    stack, ops, receiver, probes, airflow_db
):
    from stellar_ops.cli.env import EnvResources

    ops.update(alerts={"delivery": {"max_seconds": 2, "fallback_max_seconds": 1}})
    down = f"http://127.0.0.1:{closed_port()}"
    env = {
        **stack.env(),
        "BACKUP_ALERT_WEBHOOK": stack.webhook_url.replace(stack.url("receiver"), down),
        "PAGING_WEBHOOK": stack.paging_webhook_url.replace(stack.url("receiver"), down),
    }
    warnings: list[str] = []
    EnvResources(ops.config, env, warn=warnings.append).send_message(info_message("[P1] cli page"), "paging")

    assert slack_posts(receiver) == []
    kept = [o for o in ops.objects() if "/alerts/outbox/" in o]
    assert len(kept) == 1, warnings
    ident = kept[0].rsplit("/", 1)[-1].removesuffix(".json")
    assert ident in alertmanager_ids(stack)
    assert "kept in s3://" in warnings[-1] and ident in warnings[-1]

    assert state(build_dag(WORKING, fail=False).test()) == "success"
    assert dict(delivered_ids(receiver)) == {ident: 1}
    assert all("/B0PAGING/" in p["path"] for p in slack_posts(receiver))
    assert [o for o in ops.objects() if "/alerts/outbox/" in o] == []
