"""The roles of the operations manual on a live Airflow with the deployment's auth manager.

- an on-call engineer triggers a DAG and clears a task (in Chromium and over REST), and is refused
  editing a variable or a connection, and pausing a DAG;
- a platform lead edits a variable (in Chromium and over REST) and a connection, and pauses a DAG;
- an approval assigned to ``role:Platform lead`` and ``not:lead2`` is answered by ``lead`` only:
  ``oncall``, ``lead2`` and ``admin`` are refused (403);
- the roles the harness runs (the service role ``Rotation service`` among them: see
  test_connection_switch.py) are the ones ``stellar_ops.adapters.common.roles`` defines, and its
  set-up step is idempotent: a second run creates nothing, resets no password, and only adds roles.

Users (tests/support/airflow_server.TEST_USERS): admin, oncall, oncall2, lead, lead2; each one's
password is the username.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests

from stellar_ops.adapters.common.roles import (
    ADMIN,
    ROLES,
    SERVICE_ROLES,
    VIEWER,
    password_variable,
)
from stellar_ops.core.approvals import ON_CALL, PLATFORM_LEAD
from tests.support.airflow_server import AUTH_MANAGER, VENV_BIN, AirflowClient
from tests.support.operator_ui import browser_sessions

pytestmark = pytest.mark.e2e

PROBE = "e2e_params_probe"
APPROVAL = "e2e_role_approval"


def status(client: AirflowClient, method: str, path: str, **kwargs: Any) -> int:
    """The HTTP status of one REST call (the client's ``request`` raises on refusals)."""
    response = client.session.request(method, f"{client.base_url}/api/v2{path}", timeout=30, **kwargs)
    return response.status_code


def unique(name: str) -> str:
    return f"e2e_roles_{name}_{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def browser_as(airflow, tmp_path_factory):
    """One logged-in Chromium session per user, opened when first asked for."""
    with browser_sessions(airflow.base_url, lambda user: tmp_path_factory.mktemp(f"roles-{user}")) as session:
        yield session


# -- the on-call engineer ------------------------------------------------------------------------


@pytest.mark.browser
def test_on_call_triggers_and_clears_in_the_browser_and_cannot_add_a_variable(browser_as, api):
    api.unpause(PROBE)  # unpausing is the lead's (or an admin's); the on-call engineer triggers
    oncall = browser_as("oncall")
    run_id = oncall.trigger(PROBE)
    assert oncall.wait_for_state(PROBE, run_id, timeout=180) == "success"
    assert api.request("GET", f"/dags/{PROBE}/dagRuns/{quote(run_id, safe='')}")["triggering_user_name"] == (
        "oncall"
    )

    assert oncall.clear_task(PROBE, run_id, "echo") == ["echo"]
    assert oncall.wait_for_state(PROBE, run_id, timeout=180) == "success"
    assert api.task_tries(PROBE, run_id)["echo"] == 2, "the clear did not run the task again"

    # the Variables page: the list is refused, and so is adding one
    key = unique("oncall_var")
    page = oncall.page
    oncall.open("/variables")
    page.get_by_text("403 Forbidden").first.wait_for()
    page.get_by_role("button", name="Add Variable").click()
    dialog = page.get_by_role("dialog")
    dialog.locator("[name=key]").fill(key)
    dialog.locator("[name=value]").fill("x")
    with page.expect_response(
        lambda r: r.request.method == "POST" and r.url.split("?")[0].endswith("/api/v2/variables")
    ) as answer:
        dialog.get_by_role("button", name="Save").click()
    assert answer.value.status == 403, answer.value.text()
    page.keyboard.press("Escape")
    assert status(api, "GET", f"/variables/{key}") == 404


def test_on_call_triggers_and_clears_over_rest_and_is_refused_variables_connections_and_pausing(api, api_as):
    oncall = api_as("oncall")
    api.unpause(PROBE)
    run_id = oncall.trigger(PROBE)
    assert oncall.wait_run(PROBE, run_id, timeout=180) == "success"
    assert [ti["task_id"] for ti in oncall.clear_tasks(PROBE, run_id, ["echo"])] == ["echo"]
    assert oncall.wait_run(PROBE, run_id, timeout=180) == "success"
    assert oncall.task_tries(PROBE, run_id)["echo"] == 2
    assert oncall.task_log(PROBE, run_id, "echo", 2), "an on-call engineer reads task logs"

    variable, connection = unique("var"), unique("conn")
    api.set_variable(variable, "before")
    api.request("POST", "/connections", json={"connection_id": connection, "conn_type": "http", "host": "a"})
    refused = {
        "read variables": status(oncall, "GET", "/variables"),
        "add a variable": status(oncall, "POST", "/variables", json={"key": unique("v"), "value": "1"}),
        "edit a variable": status(
            oncall, "PATCH", f"/variables/{variable}", json={"key": variable, "value": "after"}
        ),
        "delete a variable": status(oncall, "DELETE", f"/variables/{variable}"),
        "add a connection": status(
            oncall, "POST", "/connections", json={"connection_id": unique("c"), "conn_type": "http"}
        ),
        "edit a connection": status(
            oncall,
            "PATCH",
            f"/connections/{connection}",
            json={"connection_id": connection, "conn_type": "http", "host": "b"},
        ),
        "edit a pool": status(oncall, "POST", "/pools", json={"name": unique("pool"), "slots": 1}),
        "pause a DAG": status(oncall, "PATCH", f"/dags/{PROBE}", json={"is_paused": True}),
        "pause DAGs in bulk": status(
            oncall, "PATCH", "/dags", params={"dag_id_pattern": PROBE}, json={"is_paused": True}
        ),
    }
    assert refused == dict.fromkeys(refused, 403)
    assert api.request("GET", f"/variables/{variable}")["value"] == "before"
    assert api.request("GET", f"/connections/{connection}")["host"] == "a"
    assert api.request("GET", f"/dags/{PROBE}")["is_paused"] is False


# -- the platform lead --------------------------------------------------------------------------


@pytest.mark.browser
def test_a_platform_lead_edits_a_variable_in_the_browser(browser_as, api):
    key = unique("lead_var")
    api.set_variable(key, "before")
    lead = browser_as("lead")
    page = lead.page
    lead.open("/variables")
    row = page.get_by_role("row").filter(has_text=key)
    row.get_by_role("button", name="Edit Variable").click()
    dialog = page.get_by_role("dialog")
    dialog.locator("[name=value]").fill("after")
    with page.expect_response(
        lambda r: r.request.method == "PATCH" and f"/api/v2/variables/{key}" in r.url
    ) as answer:
        dialog.get_by_role("button", name="Save").click()
    assert answer.value.status == 200, answer.value.text()
    assert api.request("GET", f"/variables/{key}")["value"] == "after"


def test_a_platform_lead_edits_variables_and_connections_and_pauses_dags_over_rest(api, api_as):
    lead = api_as("lead")
    variable, connection = unique("var"), unique("conn")
    api.set_variable(variable, "before")
    assert status(lead, "PATCH", f"/variables/{variable}", json={"key": variable, "value": "after"}) == 200
    assert api.request("GET", f"/variables/{variable}")["value"] == "after"
    assert (
        status(
            lead, "POST", "/connections", json={"connection_id": connection, "conn_type": "http", "host": "a"}
        )
        == 201
    )
    assert (
        status(
            lead,
            "PATCH",
            f"/connections/{connection}",
            json={"connection_id": connection, "conn_type": "http", "host": "b"},
        )
        == 200
    )
    assert api.request("GET", f"/connections/{connection}")["host"] == "b"
    api.wait_for_dag(APPROVAL)
    try:
        assert status(lead, "PATCH", f"/dags/{APPROVAL}", json={"is_paused": False}) == 200
        assert api.request("GET", f"/dags/{APPROVAL}")["is_paused"] is False
        assert status(lead, "PATCH", f"/dags/{APPROVAL}", json={"is_paused": True}) == 200
        assert api.request("GET", f"/dags/{APPROVAL}")["is_paused"] is True
    finally:
        api.request("PATCH", f"/dags/{APPROVAL}", json={"is_paused": False})
    # still no pools, and no users: those are the admin's
    assert status(lead, "POST", "/pools", json={"name": unique("pool"), "slots": 1}) == 403
    users = requests.get(f"{api.base_url}/auth/fab/v1/users", headers=lead.session.headers, timeout=10)
    assert users.status_code == 403


# -- approvals assigned by role ------------------------------------------------------------------


def test_an_approval_for_any_lead_but_lead2_is_answered_by_lead_only(api, api_as):
    api.unpause(APPROVAL)
    run_id = api.trigger(APPROVAL)
    api.wait_for_approval(APPROVAL, run_id, "approve_by_lead")
    detail = api.request(
        "GET",
        f"/dags/{APPROVAL}/dagRuns/{quote(run_id, safe='')}/taskInstances/approve_by_lead/-1/hitlDetails",
    )
    assert {u["id"] for u in detail["assigned_users"]} == {"role:Platform lead", "not:lead2"}
    path = f"/dags/{APPROVAL}/dagRuns/{quote(run_id, safe='')}/taskInstances/approve_by_lead/-1/hitlDetails"
    body = {"chosen_options": ["Approve"], "params_input": {}}
    answers = {user: status(api_as(user), "PATCH", path, json=body) for user in ("oncall", "lead2", "admin")}
    assert answers == {"oncall": 403, "lead2": 403, "admin": 403}
    assert api.request("GET", path)["response_received"] is False
    answered = api_as("lead").request("PATCH", path, json=body)
    assert answered["chosen_options"] == ["Approve"]
    assert answered["responded_by"]["name"] == "lead"
    assert api.wait_run(APPROVAL, run_id, timeout=180) == "success"
    assert api.task_states(APPROVAL, run_id) == {"approve_by_lead": "success", "after_approval": "success"}


# -- the roles and their set-up step -------------------------------------------------------------


def test_the_viewer_permissions_of_the_roles_are_fab_s_viewer_role():
    from airflow.providers.fab.auth_manager.security_manager.override import (
        FabAirflowSecurityManagerOverride as Fab,
    )

    assert set(VIEWER) == set(Fab.VIEWER_PERMISSIONS)
    for name, permissions in ROLES.items():
        assert set(VIEWER) <= set(permissions), name
        assert len(set(permissions)) == len(permissions), f"{name} lists a permission twice"
    # nothing of the admin's
    for permissions in ROLES.values():
        assert not {p for p in permissions if p[1] in ("Users", "Roles", "Pools", "Configurations")} - set(
            VIEWER
        )


def test_the_roles_airflow_runs_are_the_ones_defined(api):
    roles = requests.get(
        f"{api.base_url}/auth/fab/v1/roles", headers=api.session.headers, params={"limit": 100}, timeout=10
    )
    roles.raise_for_status()
    found = {
        role["name"]: {(p["action"]["name"], p["resource"]["name"]) for p in role["actions"]}
        for role in roles.json()["roles"]
    }
    for name, permissions in {**ROLES, **SERVICE_ROLES}.items():
        assert found[name] == set(permissions), name
    assert ADMIN in found


def _airflow_env(home: Path) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "STELLAR_OPS_"))}
    return {
        **env,
        "PATH": f"{VENV_BIN}:{env.get('PATH', '/usr/bin:/bin')}",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__AUTH_MANAGER": AUTH_MANAGER,
    }


def _set_up(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VENV_BIN / "python"), "-m", "stellar_ops.adapters.common.roles", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


CHECK = """
import json, os
from airflow.providers.fab.auth_manager.cli_commands.utils import get_application_builder
from airflow.utils.providers_configuration_loader import providers_configuration_loaded

@providers_configuration_loaded
def main():
    with get_application_builder() as appbuilder:
        sm = appbuilder.sm
        user = sm.find_user(username="alice")
        print(json.dumps({
            "roles": sorted(r.name for r in user.roles),
            "password": [p for p in json.loads(os.environ["CANDIDATES"]) if sm.check_password("alice", p)],
            "role_sizes": {r.name: len(r.permissions) for r in sm.get_all_roles()},
        }))
main()
"""


def _alice(env: dict[str, str], *candidates: str) -> dict[str, Any]:
    """alice's roles, which of ``candidates`` is her password, and the size of every role."""
    result = subprocess.run(
        [str(VENV_BIN / "python"), "-c", CHECK],
        env={**env, "CANDIDATES": json.dumps(candidates)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def test_the_set_up_step_is_idempotent_keeps_passwords_and_never_prints_one(tmp_path):
    env = _airflow_env(tmp_path / "home")
    migrated = subprocess.run(
        [str(VENV_BIN / "airflow"), "db", "migrate"], env=env, capture_output=True, text=True, timeout=300
    )
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    passwords = tmp_path / "passwords.json"
    passwords.write_text(json.dumps({"alice": "first-pw-7Qz"}))

    first = _set_up(
        {**env, "STELLAR_OPS_ONCALL_ENGINEERS": "alice", "STELLAR_OPS_USER_PASSWORDS_FILE": str(passwords)}
    )
    assert first.returncode == 0, first.stderr[-3000:]
    assert f"role {ON_CALL}: created" in first.stdout and f"role {PLATFORM_LEAD}: created" in first.stdout
    assert "user alice: created, On-call engineer" in first.stdout
    state = _alice(env, "first-pw-7Qz", "second-pw-4Kx")
    assert state["roles"] == [ON_CALL] and state["password"] == ["first-pw-7Qz"]
    sizes = state["role_sizes"]

    # again, with another password and a second role: the password stays, the role is added
    second_env = {
        **env,
        "STELLAR_OPS_ONCALL_ENGINEERS": "alice",
        "STELLAR_OPS_PLATFORM_LEADS": "alice",
        password_variable("alice"): "second-pw-4Kx",
    }
    second = _set_up(second_env)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"role {ON_CALL}: unchanged" in second.stdout
    assert "user alice: exists, given Platform lead" in second.stdout
    state = _alice(env, "first-pw-7Qz", "second-pw-4Kx")
    assert state["roles"] == sorted([ON_CALL, PLATFORM_LEAD]) and state["password"] == ["first-pw-7Qz"]
    assert state["role_sizes"] == sizes, "a second run changed the roles"

    reset = _set_up(second_env, "--reset-passwords")
    assert reset.returncode == 0, reset.stderr[-3000:]
    assert _alice(env, "first-pw-7Qz", "second-pw-4Kx")["password"] == ["second-pw-4Kx"]

    nobody_password = _set_up({**env, "STELLAR_OPS_PLATFORM_LEADS": "bob"})
    assert nobody_password.returncode == 2
    assert password_variable("bob") in nobody_password.stderr
    placeholder = _set_up({**env, "STELLAR_OPS_ADMINS": "root", password_variable("root"): "change-me"})
    assert placeholder.returncode == 2 and "placeholder" in placeholder.stderr
    for result in (first, second, reset, nobody_password):
        printed = result.stdout + result.stderr
        assert "first-pw-7Qz" not in printed and "second-pw-4Kx" not in printed, "a password was printed"
