"""secret_rotation as an on-call engineer takes it through the UI, in Chromium on a live scheduler.

The form with its defaults picks the most overdue secret that can rotate here (Grafana's admin
password, against a stand-in of Grafana's admin API that this test starts); the roll-out is
approved under Required Actions; Grafana down at the change turns the run red naming it; Clear
in the UI once it is back; the removal refused to the first approver (four eyes) and approved by
another; the run green, the key store and this package's own Airflow connection switched for
real, through Airflow's REST API. A secret whose set-up is missing is red at the first step,
saying what to run.
"""

from __future__ import annotations

import pytest
import requests

from stellar_ops.registry import parse_config
from stellar_ops.rotation import ledger
from stellar_ops.rotation.credentials import generate_secret
from stellar_ops.rotation.secret_store import EnvSecretStore, secret_envs
from stellar_ops.storage.s3 import S3Store
from stellar_ops_dev.grafana_stub import GrafanaStub
from tests.support.operator_ui import OperatorUIError
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

DAG = "secret_rotation"
CONN = "e2e_grafana"


def logs_in(stub: GrafanaStub, password: str) -> bool:
    return requests.get(stub.url + "/api/user", auth=("admin", password), timeout=5).status_code == 200


@pytest.fixture
def grafana(api):
    old = generate_secret()
    stub = GrafanaStub(old)
    port = stub.server.server_address[1]
    api.request(
        "POST",
        "/connections",
        json={
            "connection_id": CONN,
            "conn_type": "http",
            "host": "127.0.0.1",
            "port": port,
            "schema": "http",
            "login": "admin",
            "password": old,
        },
    )
    state = {"stub": stub, "old": old, "port": port}
    try:
        yield state
    finally:
        state["stub"].stop()
        api.request("DELETE", f"/connections/{CONN}")


def test_the_form_s_defaults_rotate_grafana_red_while_it_is_down_cleared_approved_twice_and_green(
    ui, ui_as, api, airflow, stack, receiver, configure, e2e_prefix, grafana, tmp_path
):
    env_file = tmp_path / "api.env"
    env_file.write_text(f"LOG_LEVEL=info\nGRAFANA_ADMIN_PASSWORD={grafana['old']}\n")
    env_file.chmod(0o600)
    rotation = {
        "env_file": str(env_file),
        "grafana": {"conn_id": CONN},
        "secret_audit_prefix": f"{e2e_prefix}secret-rotation/",
        "ledger_key": f"{e2e_prefix}secrets-ledger.json",
        "secret_transition_hours": 20 / 3600,
    }
    configure(rotation=rotation)
    # Redis was rotated this week; the stack has no IAM and no twins: Grafana is what is due here
    store = S3Store(stack.s3_client(), "stellar-backups")
    from datetime import UTC, datetime

    ledger.record(store, rotation["ledger_key"], "REDIS_PASSWORD", at=datetime.now(UTC), by="e2e", how="test")
    api.unpause(DAG)

    run_id = ui.trigger_with_defaults(DAG)
    api.wait_for_approval(DAG, run_id, "approve_rollout", timeout=180)
    assert api.xcom(DAG, run_id, "check_rotation_due")["secret"] == "GRAFANA_ADMIN_PASSWORD"
    grafana["stub"].stop()  # Grafana is down when the rotation changes its password
    ui_as("oncall").approve(DAG, run_id, "approve_rollout")

    assert ui.wait_for_state(DAG, run_id, ("failed", "success")) == "failed", api.task_states(DAG, run_id)
    states = api.task_states(DAG, run_id)
    assert states["add_new_secret"] == "failed" and states["confirm_success"] == "upstream_failed", states
    alert = wait_for(
        lambda: [t for t in receiver.texts() if f"{DAG}.add_new_secret failed" in t], 90, "the failure alert"
    )[0]
    assert "Grafana" in alert and grafana["old"] not in alert
    assert logs_in_nowhere(grafana)

    grafana["stub"] = GrafanaStub(grafana["old"], port=grafana["port"])  # Grafana is back
    affected = ui.clear_task(DAG, run_id, "add_new_secret")
    assert "add_new_secret" in affected and "confirm_success" in affected, affected

    api.wait_for_approval(DAG, run_id, "approve_removal", timeout=240)
    new = EnvSecretStore(env_file, secret_envs(parse_config({}).rotation)).current("GRAFANA_ADMIN_PASSWORD")
    assert new is not None and new.secret != grafana["old"]
    assert logs_in(grafana["stub"], new.secret) and not logs_in(grafana["stub"], grafana["old"])
    held = airflow.stored_connection(CONN)
    assert held["login"] == "admin" and held["password"] == new.secret, "the connection was not switched"
    # four eyes: the roll-out's approver may not approve the removal; another on-call engineer may
    with pytest.raises(OperatorUIError, match="403|no way to answer"):
        ui_as("oncall").approve(DAG, run_id, "approve_removal")
    ui_as("oncall2").approve(DAG, run_id, "approve_removal")

    assert ui.wait_for_state(DAG, run_id, ("failed", "success")) == "success", api.task_states(DAG, run_id)
    assert api.task_states(DAG, run_id)["confirm_success"] == "success"
    wait_for(
        lambda: [t for t in receiver.texts() if "GRAFANA_ADMIN_PASSWORD rotated" in t],
        90,
        "the rotation's message",
    )
    entry = ledger.last_rotation(ledger.load(store, rotation["ledger_key"]), "GRAFANA_ADMIN_PASSWORD")
    assert entry is not None and entry["by"] == "oncall2"
    for text in receiver.texts():
        assert new.secret not in text and grafana["old"] not in text


def logs_in_nowhere(grafana) -> bool:
    """Grafana is down: neither password can log in (nothing half-changed can be seen)."""
    try:
        requests.get(f"http://127.0.0.1:{grafana['port']}/api/user", timeout=2)
    except requests.RequestException:
        return True
    return False


def test_the_database_password_without_its_twins_is_red_at_the_first_step_saying_what_to_run(
    ui, api, receiver, configure, e2e_prefix
):
    configure(
        rotation={
            "secret_audit_prefix": f"{e2e_prefix}secret-rotation/",
            "ledger_key": f"{e2e_prefix}secrets-ledger.json",
        }
    )
    api.unpause(DAG)
    run_id = ui.trigger(DAG, {"secret": "POSTGRES_PASSWORD"})
    assert ui.wait_for_state(DAG, run_id, ("failed", "success")) == "failed", api.task_states(DAG, run_id)
    states = api.task_states(DAG, run_id)
    assert states["check_rotation_due"] == "failed" and states["approve_rollout"] == "upstream_failed", states
    alert = wait_for(
        lambda: [t for t in receiver.texts() if f"{DAG}.check_rotation_due failed" in t],
        90,
        "the failure alert",
    )[0]
    assert "stellar-ops secrets setup-twins" in alert, alert
