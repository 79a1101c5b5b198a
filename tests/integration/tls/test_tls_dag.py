"""``tls_cert_check`` through ``dag.test()`` against the stack's nginx (certificate from pebble)."""

from __future__ import annotations

import pytest

from stellar_ops.probes.tls import probe
from stellar_ops_dev.acme import AcmeLab
from tests.support.dagrun import run_dag

pytestmark = pytest.mark.integration


def _served(stack) -> str | None:
    (domain,) = stack.tls["domains"]
    return probe(
        domain["host"], domain["port"], server_name=domain["server_name"], ca_bundle=domain["ca_bundle"]
    ).serial


def _grid_labels(outcome, task_id: str) -> list[str]:
    """What the grid shows for each mapped instance of ``task_id``."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(TaskInstance).filter_by(
            dag_id=outcome.dag_id, run_id=outcome.run_id, task_id=task_id
        )
        return [ti.rendered_map_index for ti in rows.order_by(TaskInstance.map_index)]


def _latest(ops) -> dict:
    return ops.store().get_json(f"{ops.prefix}tls/latest.json")


def test_a_scheduled_check_probes_and_records_without_renewing(airflow_db, stack, ops, receiver):
    # The stack's own thresholds fit pebble's 20-day certificates: ok, renewal under 10 days.
    assert stack.tls["renew_below_days"] < 20
    ops.update(tls=stack.tls)
    served = _served(stack)

    outcome = run_dag("tls_cert_check")

    assert outcome.state == "success", outcome.tasks
    assert outcome.tasks["probe_certificate"] == "success"
    assert outcome.tasks["renew_certificate"] == "skipped"
    assert outcome.tasks["record_results"] == "success"
    assert _served(stack) == served
    latest = _latest(ops)
    (entry,) = latest["domains"]
    assert entry["state"] == "ok" and entry["server_name"] == "escrow.test"
    assert 19 < entry["days_left"] < 20.01
    assert latest["checked_at"].endswith("+00:00")
    assert receiver.texts() == []
    label = f"escrow.test@127.0.0.1:{stack.tls['domains'][0]['port']}"
    assert _grid_labels(outcome, "probe_certificate") == [f"{label}: ok, {entry['days_left']:.1f} days"]
    assert _grid_labels(outcome, "renew_certificate") == [f"{label}: not due (ok)"]


def test_force_renewal_serves_a_new_certificate(airflow_db, stack, ops, receiver):
    ops.update(tls=stack.tls)
    served = _served(stack)

    outcome = run_dag("tls_cert_check", conf={"force_renewal": True})

    assert outcome.state == "success", outcome.tasks
    assert outcome.tasks["renew_certificate"] == "success"
    assert _served(stack) != served
    (entry,) = _latest(ops)["domains"]
    assert entry["state"] == "ok"
    assert any("TLS certificate renewed" in text for text in receiver.texts())
    assert not any("TLSCertShortLifetime" in text for text in receiver.texts())


def test_a_failed_renewal_turns_the_run_red_and_still_records(airflow_db, stack, ops, receiver):
    ops.update(tls={**stack.tls, "certbot_server": "https://127.0.0.1:1/dir"})
    served = _served(stack)

    outcome = run_dag("tls_cert_check", conf={"force_renewal": True})

    assert outcome.state == "failed"
    assert outcome.tasks["renew_certificate"] == "failed"
    assert outcome.tasks["record_results"] == "success"
    assert _served(stack) == served
    (entry,) = _latest(ops)["domains"]
    assert entry["state"] == "ok"  # the old certificate, still served


def test_an_unknown_domain_in_the_form_is_named(airflow_db, stack, ops):
    ops.update(tls=stack.tls)

    outcome = run_dag("tls_cert_check", conf={"domains": ["nope.test"]})

    assert outcome.state == "failed"
    assert outcome.tasks["list_domains"] == "failed"


def test_acme_lab_is_part_of_the_stack(stack):
    assert stack.tls["domains"][0]["server_name"] == AcmeLab(stack.data_dir).domain


def test_each_domain_has_its_own_mapped_task_and_entry(airflow_db, stack, ops, receiver, endpoints):
    ops.update(
        tls={
            **stack.tls,
            "renew_below_days": 10,
            "warning_days": 30,
            "critical_days": 14,
            "handshake_timeout_seconds": 1,
            "domains": [
                *stack.tls["domains"],
                {
                    "host": "127.0.0.1",
                    "port": endpoints.ports["nothing_listening"],
                    "server_name": "down.test",
                },
                {
                    "host": "127.0.0.1",
                    "port": endpoints.ports["valid_7"],
                    "server_name": "escrow.test",
                    "ca_bundle": str(endpoints.ca_bundle),
                    "cert_name": "loopback",
                },
            ],
        }
    )

    outcome = run_dag("tls_cert_check")

    # the 7-day loopback certificate is due, but no certbot lineage "loopback" exists: red
    assert outcome.state == "failed"
    labels = _grid_labels(outcome, "probe_certificate")
    assert [label.split(": ", 1)[1].split(",")[0] for label in labels] == [
        "warning",
        "unreachable",
        "critical",
    ]
    renewals = _grid_labels(outcome, "renew_certificate")
    assert renewals[0].endswith("not due (warning)") and renewals[1].endswith("not due (unreachable)")
    entries = {(e["server_name"], e["port"]): e["state"] for e in _latest(ops)["domains"]}
    assert entries == {
        ("escrow.test", stack.tls["domains"][0]["port"]): "warning",
        ("down.test", endpoints.ports["nothing_listening"]): "unreachable",
        ("escrow.test", endpoints.ports["valid_7"]): "critical",
    }
    texts = receiver.texts()
    assert sum("TLSEndpointUnreachable: down.test@" in t for t in texts) == 1
    assert sum("TLSCertExpiringSoon: escrow.test@127.0.0.1:" in t for t in texts) == 1


def test_a_run_for_one_domain_keeps_the_others_entries(airflow_db, stack, ops, endpoints):
    down = {"host": "127.0.0.1", "port": endpoints.ports["nothing_listening"], "server_name": "down.test"}
    ops.update(tls={**stack.tls, "renew_below_days": 10, "domains": [*stack.tls["domains"], down]})
    assert run_dag("tls_cert_check").state == "success"
    first = _latest(ops)

    outcome = run_dag("tls_cert_check", conf={"domains": ["down.test"]})

    assert outcome.state == "success"
    second = _latest(ops)
    assert second["checked_at"] > first["checked_at"]
    assert [e["server_name"] for e in second["domains"]] == ["escrow.test", "down.test"]
    assert second["domains"][0] == first["domains"][0]  # kept as it was


def test_the_dag_and_stellar_ops_certs_check_record_and_alert_the_same(
    airflow_db, stack, ops, receiver, endpoints
):
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    down = {"host": "127.0.0.1", "port": endpoints.ports["nothing_listening"], "server_name": "down.test"}
    ops.update(tls={**stack.tls, "renew": False, "domains": [*stack.tls["domains"], down]})

    assert run_dag("tls_cert_check").state == "success"
    from_dag, dag_texts = _latest(ops), receiver.texts()
    receiver.clear()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_"))}
    cli = Path(sys.executable).parent / "stellar-ops"
    result = subprocess.run(
        [str(cli), "certs", "check", "--json"], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 1, result.stderr  # one domain is unreachable
    from_cli, cli_texts = _latest(ops), receiver.texts()

    def comparable(document: dict) -> list[dict]:
        return [
            {**e, "days_left": round(e["days_left"], 2) if e["days_left"] is not None else None}
            for e in document["domains"]
        ]

    assert comparable(from_cli) == comparable(from_dag)
    assert [row["state"] for row in json.loads(result.stdout)] == ["ok", "unreachable"]
    assert cli_texts == dag_texts and len(dag_texts) == 1 and "TLSEndpointUnreachable" in dag_texts[0]


def _short_alerts(receiver) -> list[str]:
    return [text for text in receiver.texts() if "TLSCertShortLifetime" in text]


def test_renewal_is_idempotent_across_runs_and_short_certificates_alert_once(
    airflow_db, stack, ops, receiver
):
    # renew_below_days (30) above pebble's 20-day lifetime: every new certificate is still due.
    ops.update(tls={**stack.tls, "renew_below_days": 30, "warning_days": 30, "critical_days": 14})
    label = f"escrow.test@127.0.0.1:{stack.tls['domains'][0]['port']}"
    served = _served(stack)

    first = run_dag("tls_cert_check")

    assert first.state == "success", first.tasks
    assert first.tasks["renew_certificate"] == "success"
    renewed = _served(stack)
    assert renewed != served
    (alert,) = _short_alerts(receiver)
    assert "the CA issues 20-day certificates" in alert
    assert "lower tls.renew_below_days below 20" in alert
    (entry,) = _latest(ops)["domains"]
    assert entry["state"] == "warning"  # still under the threshold, and shown so

    second = run_dag("tls_cert_check")

    assert second.state == "success", second.tasks
    assert second.tasks["renew_certificate"] == "skipped"
    (skipped,) = _grid_labels(second, "renew_certificate")
    assert skipped.startswith(f"{label}: not renewed: renewed ")
    assert skipped.endswith("within tls.min_renewal_interval (24h)")
    assert _served(stack) == renewed
    assert len(_short_alerts(receiver)) == 1
    assert sum("TLS certificate renewed" in text for text in receiver.texts()) == 1
    (entry,) = _latest(ops)["domains"]
    assert entry["state"] == "warning"

    forced = run_dag("tls_cert_check", conf={"force_renewal": True})

    assert forced.state == "success", forced.tasks
    assert forced.tasks["renew_certificate"] == "success"
    assert _served(stack) not in (served, renewed)
    assert len(_short_alerts(receiver)) == 1  # the same CA, the same threshold: said once
    assert sum("TLS certificate renewed" in text for text in receiver.texts()) == 2
    record = ops.store().get_json(f"{ops.prefix}tls/renewals/{stack.tls['domains'][0]['cert_name']}.json")
    assert record["serial"] == _served(stack) and record["lifetime_days"] == 20


def test_the_runbook_names_the_tasks_in_their_order():
    from tests.support.dagrun import get_dag

    dag = get_dag("tls_cert_check")
    numbered = [line for line in dag.doc_md.splitlines() if line[:1].isdigit() and ". `" in line[:5]]
    steps = [line.split("`")[1] for line in numbered]
    assert sorted(steps) == sorted(dag.task_ids)
    for position, task_id in enumerate(steps):  # each step comes after every step it waits for
        assert dag.get_task(task_id).upstream_task_ids <= set(steps[:position]), task_id
    assert steps[:4] == ["list_domains", "probe_certificate", "renew_certificate", "record_results"]
    for words in ("tls.min_renewal_interval", "force_renewal", "TLSCertShortLifetime", "once"):
        assert words in dag.doc_md
