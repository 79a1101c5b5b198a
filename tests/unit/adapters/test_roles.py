"""The service role of stellar_ops.adapters.common.roles: what a rotation's service user may do,
and how the set-up step learns who it is. (The roles on a live Airflow: tests/e2e/test_roles.py
and tests/e2e/test_connection_switch.py.)"""

from __future__ import annotations

from stellar_ops.adapters.common.roles import (
    ADMIN,
    ROLES,
    ROTATION_SERVICE_PERMISSIONS,
    SERVICE_ROLES,
    USERS_VARIABLES,
    VIEWER,
    first_users,
    password_variable,
)
from stellar_ops.rotation.airflow_connections import ROTATION_SERVICE


def test_the_rotation_service_may_only_read_and_edit_connections_as_fab_names_them():
    from airflow.providers.fab.www.security import permissions
    from airflow.providers.fab.www.utils import get_fab_action_from_method_map

    assert SERVICE_ROLES == {ROTATION_SERVICE: ROTATION_SERVICE_PERMISSIONS}
    connections = permissions.RESOURCE_CONNECTION
    # the API's GET asks can_read, its PATCH asks "PUT", which FAB maps to can_edit
    actions = get_fab_action_from_method_map()
    # and the home page, which FAB's sync gives every custom role whatever the set-up step says
    home = (permissions.ACTION_CAN_READ, permissions.RESOURCE_WEBSITE)
    assert set(ROTATION_SERVICE_PERMISSIONS) == {
        (actions["GET"], connections),
        (actions["PUT"], connections),
        home,
    }
    assert set(ROTATION_SERVICE_PERMISSIONS) & set(VIEWER) == {home}, "a program's role sees no page"
    assert ROTATION_SERVICE not in ROLES and ROTATION_SERVICE != ADMIN


def test_a_rotation_service_user_is_a_first_user_like_the_others():
    variable = next(name for name, role in USERS_VARIABLES.items() if role == ROTATION_SERVICE)
    assert variable == "STELLAR_OPS_ROTATION_SERVICE_USERS"

    users = first_users(
        {
            variable: "stellar-rotation",
            "STELLAR_OPS_ADMINS": "root",
            password_variable("stellar-rotation"): "svc-pw-9Xq",
            password_variable("root"): "root-pw",
        }
    )

    by_name = {user.username: user for user in users}
    assert by_name["stellar-rotation"].roles == (ROTATION_SERVICE,)
    assert by_name["stellar-rotation"].password == "svc-pw-9Xq"
    assert password_variable("stellar-rotation") == "STELLAR_OPS_USER_STELLAR_ROTATION_PASSWORD"
    assert "svc-pw-9Xq" not in repr(users)
