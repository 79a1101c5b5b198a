"""A rotation's switch of this package's own connections, through the live Airflow's REST API.

Tasks cannot write connections, so ``stellar_ops.rotation.airflow_connections`` PATCHes them as
the API user of the ``airflow_api`` connection (airflow_settings.yaml: this Airflow, as its admin).
Each switch is proven through Airflow itself: ``airflow connections get`` in the harness's
environment, the lookup every Airflow process makes, shows the new login and password and every
other field as it was. A service user of the ``Rotation service`` role (created by the set-up step)
switches too and may do nothing else; a missing connection, a wrong password and a user without
the permission fail with messages that name them.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import requests

from stellar_ops.rotation.airflow_connections import (
    ROTATION_SERVICE,
    AirflowConnections,
    AirflowConnectionsError,
    ForbiddenError,
    NotInMetadataDbError,
    api_base_url,
)
from stellar_ops.rotation.credentials import generate_secret
from stellar_ops.rotation.keys import fingerprint
from tests.support.airflow_server import AirflowClient

pytestmark = pytest.mark.e2e

EXTRA = {"sslmode": "require", "application_name": "e2e"}


def stored(airflow, conn_id: str) -> dict[str, Any]:
    return airflow.stored_connection(conn_id)


def airflow_api(airflow) -> AirflowConnections:
    """The API as the ``airflow_api`` connection names it, its credentials as Airflow stores them."""
    conn = stored(airflow, "airflow_api")
    return AirflowConnections(
        api_base_url(conn["host"], conn["port"], conn["schema"]), conn["login"], conn["password"]
    )


def throwaway(api: AirflowClient, login: str, password: str) -> str:
    conn_id = f"e2e_switch_{uuid.uuid4().hex[:8]}"
    api.request(
        "POST",
        "/connections",
        json={
            "connection_id": conn_id,
            "conn_type": "postgres",
            "host": "db.internal",
            "port": 5432,
            "schema": "stellar_escrow",
            "login": login,
            "password": password,
            "extra": json.dumps(EXTRA),
            "description": "a connection the rotation switches",
        },
    )
    return conn_id


def the_rest_of(conn: dict[str, Any]) -> dict[str, Any]:
    return {k: conn[k] for k in ("conn_type", "host", "port", "schema", "extra_dejson", "description")}


def test_the_airflow_api_connection_is_this_airflow_as_its_admin(airflow):
    conn = stored(airflow, "airflow_api")
    assert (conn["conn_type"], conn["host"], conn["port"], conn["login"]) == (
        "http",
        "127.0.0.1",
        airflow.port,
        "admin",
    )
    api = airflow_api(airflow)
    assert api.base_url == airflow.base_url
    assert api.login_of("stellar_db") == "stellar", "airflow_settings.yaml's stellar_db, read through the API"


def test_a_switch_sets_the_login_and_password_and_nothing_else(airflow, api):
    old, new = generate_secret(), generate_secret()
    conn_id = throwaway(api, "stellar_blue", old)
    before = stored(airflow, conn_id)
    switcher = airflow_api(airflow)

    assert switcher.switch(conn_id, "stellar_green", new) is True

    after = stored(airflow, conn_id)
    assert (after["login"], after["password"]) == ("stellar_green", new)
    assert the_rest_of(after) == the_rest_of(before)
    assert the_rest_of(after)["extra_dejson"] == EXTRA
    shown = api.request("GET", f"/connections/{conn_id}")
    assert shown["login"] == "stellar_green" and shown["password"] == "***", "the API redacts the password"
    assert switcher.login_of(conn_id) == "stellar_green"

    # a resumed rotation switches again: same result (the API cannot show that it already was)
    assert switcher.switch(conn_id, "stellar_green", new) is True
    assert stored(airflow, conn_id) == after

    # the rollback: back to the old twin and its password
    assert switcher.switch(conn_id, "stellar_blue", old) is True
    assert (stored(airflow, conn_id)["login"], stored(airflow, conn_id)["password"]) == ("stellar_blue", old)


def test_a_connection_not_in_the_metadata_db_and_a_wrong_password_are_clear_errors(airflow, api):
    missing = f"e2e_missing_{uuid.uuid4().hex[:8]}"
    switcher = airflow_api(airflow)
    assert switcher.login_of(missing) is None
    with pytest.raises(NotInMetadataDbError) as info:
        switcher.switch(missing, "stellar_green", generate_secret())
    assert str(info.value).startswith(
        f"connection {missing} is not in Airflow's metadata DB: define it there, the rotation cannot "
        "switch a connection defined elsewhere"
    )

    conn_id = throwaway(api, "stellar_blue", "old-pw")
    wrong = "wrong-" + generate_secret(16)
    with pytest.raises(AirflowConnectionsError) as info:
        AirflowConnections(airflow.base_url, "admin", wrong).switch(
            conn_id, "stellar_green", generate_secret()
        )
    message = str(info.value)
    assert message.startswith(
        f"Airflow {airflow.base_url} refuses the login of user 'admin' (password {fingerprint(wrong)})"
    )
    assert "answered 401" in message and wrong not in message
    assert (stored(airflow, conn_id)["login"], stored(airflow, conn_id)["password"]) == (
        "stellar_blue",
        "old-pw",
    )


def test_a_user_who_may_not_touch_connections_is_named(airflow, api):
    conn_id = throwaway(api, "stellar_blue", "old-pw")
    oncall = AirflowConnections(airflow.base_url, "oncall", "oncall")  # an on-call engineer: no connections
    with pytest.raises(ForbiddenError, match=f"refuses user 'oncall' to read connection {conn_id}"):
        oncall.switch(conn_id, "stellar_green", generate_secret())

    # a role that may read connections but not edit them
    reader_role, reader = (
        f"e2e connection reader {uuid.uuid4().hex[:6]}",
        f"e2e-reader-{uuid.uuid4().hex[:6]}",
    )
    fab(api, "POST", "/roles", {"name": reader_role, "actions": [permission("can_read", "Connections")]})
    create_user(api, reader, reader_role, "reader-pw-3Jd")
    with pytest.raises(ForbiddenError) as info:
        AirflowConnections(airflow.base_url, reader, "reader-pw-3Jd").switch(
            conn_id, "stellar_green", generate_secret()
        )
    assert str(info.value) == (
        f"Airflow {airflow.base_url} refuses user '{reader}' to edit connection {conn_id}: the user needs "
        "the permission to edit connections (can_edit on Connections; the 'Rotation service' role has "
        "both read and edit)"
    )
    assert stored(airflow, conn_id)["login"] == "stellar_blue"


def test_a_rotation_service_user_switches_connections_and_may_do_nothing_else(airflow, api):
    username, password = f"e2e-rotation-{uuid.uuid4().hex[:6]}", generate_secret()
    create_user(api, username, ROTATION_SERVICE, password)
    conn_id = throwaway(api, "stellar_blue", "old-pw")
    new = generate_secret()

    assert (
        AirflowConnections(airflow.base_url, username, password).switch(conn_id, "stellar_green", new) is True
    )
    after = stored(airflow, conn_id)
    assert (after["login"], after["password"]) == ("stellar_green", new)

    service = AirflowClient(airflow.base_url, username, password)

    def status(method: str, path: str, **kwargs: Any) -> int:
        return service.session.request(
            method, f"{airflow.base_url}/api/v2{path}", timeout=30, **kwargs
        ).status_code

    refused = {
        "list DAGs": status("GET", "/dags"),
        "read a variable": status("GET", "/variables/stellar_ops_config"),
        "trigger a run": status("POST", "/dags/db_backup/dagRuns", json={"logical_date": None}),
        "add a connection": status(
            "POST", "/connections", json={"connection_id": f"{conn_id}_2", "conn_type": "http"}
        ),
        "delete a connection": status("DELETE", f"/connections/{conn_id}"),
        "read the pools": status("GET", "/pools"),
    }
    assert refused == dict.fromkeys(refused, 403)
    users = requests.get(f"{airflow.base_url}/auth/fab/v1/users", headers=service.session.headers, timeout=10)
    assert users.status_code == 403


# -- FAB's users and roles API, as the admin ----------------------------------------------------


def permission(action: str, resource: str) -> dict[str, Any]:
    return {"action": {"name": action}, "resource": {"name": resource}}


def fab(api: AirflowClient, method: str, path: str, body: dict[str, Any]) -> Any:
    response = api.send(method, f"{api.base_url}/auth/fab/v1{path}", json=body)
    assert response.status_code in (200, 201), (
        f"{method} {path} -> {response.status_code}: {response.text[:500]}"
    )
    return response.json()


def create_user(api: AirflowClient, username: str, role: str, password: str) -> None:
    fab(
        api,
        "POST",
        "/users",
        {
            "username": username,
            "email": f"{username}@e2e.invalid",
            "first_name": username,
            "last_name": username,
            "roles": [{"name": role}],
            "password": password,
        },
    )
