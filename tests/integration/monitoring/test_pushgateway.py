"""The stack's real Pushgateway: its groups listed and deleted (a removed TLS domain's metrics go
with it), and the pushes the silence rules read (push_time_seconds, the run-finished metric)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import requests

from stellar_ops.cli import env
from stellar_ops.core import metrics
from stellar_ops.core.errors import StellarOpsError
from stellar_ops.core.metrics import Metric, push_to_gateway
from stellar_ops.core.processes import free_port
from stellar_ops.maintenance import flow as maintenance
from stellar_ops.rotation import flow as rotation
from stellar_ops.tls import flow as tls

pytestmark = pytest.mark.integration

JOB = "stellar_ops"


def groups(stack) -> list[dict]:
    """Every group of the job, with its metrics (the Pushgateway's own JSON)."""
    answer = requests.get(f"{stack.url('pushgateway')}/api/v1/metrics", timeout=5)
    answer.raise_for_status()
    return [g for g in answer.json()["data"] if g["labels"].get("job") == JOB]


def value(stack, name: str, **labels: str) -> float | None:
    """``name``'s value in the group whose grouping labels are exactly ``job`` and ``labels``."""
    for group in groups(stack):
        if group["labels"] == {"job": JOB, **labels} and name in group:
            return float(group[name]["metrics"][0]["value"])
    return None


def push(stack, procedure: str, **grouping: str) -> None:
    point = Metric("stellar_tls_cert_expiry_days", 42.0, "days", dict(grouping))
    push_to_gateway(
        stack.url("pushgateway"), job=JOB, procedure=procedure, metrics=[point], grouping=grouping
    )


@pytest.fixture
def procedure(stack) -> Iterator[str]:
    """A procedure name of this test's own, its groups deleted afterwards (the Pushgateway is shared)."""
    name = f"test_{uuid.uuid4().hex[:10]}"
    yield name
    for group in groups(stack):
        if group["labels"].get("procedure") == name:
            grouping = {k: v for k, v in group["labels"].items() if k != "job"}
            metrics.delete_group(stack.url("pushgateway"), job=JOB, grouping=grouping)


def test_groups_are_listed_and_only_the_unkept_ones_are_deleted(stack, procedure):
    url = stack.url("pushgateway")
    domains = ["a.test", "b.test@127.0.0.1:4443", "c d/e"]  # the last one goes by base64 in the URL
    for domain in domains:
        push(stack, procedure, domain=domain)
    push(stack, procedure)  # a group of the procedure without a domain
    other = f"{procedure}_other"
    push(stack, other, domain="b.test@127.0.0.1:4443")
    try:
        listed = metrics.list_groups(url, job=JOB)
        mine = [g for g in listed if g["procedure"] == procedure]
        assert sorted(g.get("domain", "") for g in mine) == ["", *sorted(domains)]
        assert all(g["job"] == JOB for g in listed)

        removed = metrics.prune_groups(
            url, job=JOB, procedure=procedure, label="domain", keep=["a.test", "x.test"]
        )

        assert removed == ["b.test@127.0.0.1:4443", "c d/e"]
        left = [g for g in metrics.list_groups(url, job=JOB) if g["procedure"] in (procedure, other)]
        assert sorted((g["procedure"], g.get("domain", "")) for g in left) == [
            (procedure, ""),
            (procedure, "a.test"),
            (other, "b.test@127.0.0.1:4443"),  # another procedure's group of the same domain stays
        ]
        assert metrics.prune_groups(url, job=JOB, procedure=procedure, label="domain", keep=["a.test"]) == []
    finally:
        metrics.delete_group(url, job=JOB, grouping={"procedure": other, "domain": "b.test@127.0.0.1:4443"})


def test_a_gateway_that_does_not_answer_is_named():
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(metrics.MetricsError, match=f"GET {url}/api/v1/metrics failed"):
        metrics.list_groups(url, job=JOB, timeout=2)
    with pytest.raises(metrics.MetricsError, match="deleting the group"):
        metrics.delete_group(url, job=JOB, grouping={"procedure": "x"}, timeout=2)


def test_every_push_renews_the_group_s_push_time(stack, procedure):
    """What the silence rules read: the gateway's own clock of the last push, pushadd included."""
    push(stack, procedure)
    first = value(stack, "push_time_seconds", procedure=procedure)
    assert first is not None and abs(first - time.time()) < 30
    time.sleep(1.2)
    push(stack, procedure)
    second = value(stack, "push_time_seconds", procedure=procedure)
    assert second is not None and second >= first + 1


def _domain(server_name: str) -> dict:
    # nothing listens there: a real probe, quickly unreachable
    return {"host": "127.0.0.1", "port": free_port(), "server_name": server_name}


def test_tls_check_deletes_the_groups_of_domains_no_longer_configured(stack, ops):
    tag = uuid.uuid4().hex[:8]
    kept, removed = _domain(f"kept-{tag}.test"), _domain(f"gone-{tag}.test")
    ops.update(tls={"domains": [kept, removed], "connect_timeout_seconds": 2})
    rt = env.runtime()
    both = tls.list_domains(rt)
    labels = [d.label for d in both]
    tls.record_results(rt, [r.as_dict() for r in tls.probe_domains(rt, both, alert=False)])
    assert all(
        value(stack, "stellar_tls_cert_state", procedure=tls.DAG_ID, domain=label) is not None
        for label in labels
    )

    # the domain is removed from the config; the next run forgets its metrics
    ops.update(tls={"domains": [kept]})
    rt = env.runtime()
    (domain,) = tls.list_domains(rt)
    outcome = tls.record_results(rt, [r.as_dict() for r in tls.probe_domains(rt, [domain], alert=False)])

    assert labels[1] in outcome["forgotten"] and labels[0] not in outcome["forgotten"]
    assert value(stack, "stellar_tls_cert_state", procedure=tls.DAG_ID, domain=labels[1]) is None
    assert value(stack, "stellar_tls_cert_state", procedure=tls.DAG_ID, domain=labels[0]) is not None
    assert value(stack, "push_time_seconds", procedure=tls.DAG_ID, domain=labels[0]) is not None


def test_an_empty_domain_list_deletes_nothing(stack, ops, procedure):
    label = f"left-{uuid.uuid4().hex[:8]}.test"
    push(stack, tls.DAG_ID, domain=label)
    try:
        ops.update(tls={"domains": []})
        assert tls.forget_removed_domains(env.runtime()) == []
        assert value(stack, "stellar_tls_cert_expiry_days", procedure=tls.DAG_ID, domain=label) == 42.0
    finally:
        metrics.delete_group(
            stack.url("pushgateway"), job=JOB, grouping={"procedure": tls.DAG_ID, "domain": label}
        )


def test_the_secrets_audit_pushes_its_end_even_when_the_ledger_is_unreadable(stack, ops):
    ops.update(rotation={"ledger_key": f"{ops.prefix}ledger.json"})
    ops.store().put_json(f"{ops.prefix}ledger.json", ["not", "a", "ledger"])
    rt = env.runtime()
    started = datetime.now(UTC).timestamp()

    with pytest.raises(StellarOpsError, match="is not a secrets ledger"):
        rotation.audit_secrets(rt, datetime.now(UTC))

    finished = value(stack, metrics.RUN_FINISHED, procedure=rotation.AUDIT_DAG_ID)
    assert finished is not None and finished >= started - 1
    assert value(stack, "push_time_seconds", procedure=rotation.AUDIT_DAG_ID) >= started - 1


def test_maintenance_pushes_its_end_with_its_summary(stack, ops, receiver):
    rt = env.runtime()
    started = datetime.now(UTC).timestamp()
    statements = {"installed": True, "preloaded": True, "warning": None}
    bloat = {"tables": 1, "warned_before": [], "still_bloated": [], "dead_tuples_removed": {}, "top": []}

    maintenance.send_summary(rt, statements, {"public.escrows": 0.2}, bloat)

    finished = value(stack, metrics.RUN_FINISHED, procedure=maintenance.DAG_ID)
    assert finished is not None and finished >= started - 1
    assert len(receiver.texts()) == 1
