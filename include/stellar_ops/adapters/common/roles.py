"""The roles of the operations manual as FAB roles, and the first users, set up from the environment.

Three roles for people:

- **On-call engineer**: what FAB's Viewer sees, plus triggering runs (and backfills), marking and
  clearing runs and task instances, and answering approvals. No connection, variable, pool or user
  is theirs to change, and no DAG's pause switch.
- **Platform lead**: all of the on-call engineer's, plus editing variables (``stellar_ops_config``)
  and connections, and pausing DAGs.
- **Admin**: FAB's own.

and one for a program, a service user's (:data:`SERVICE_ROLES`, nothing of the Viewer's):

- **Rotation service**: reading and editing connections, nothing else: the user a secret rotation
  calls Airflow's REST API as, to switch this package's own connections to the new credential
  (:mod:`stellar_ops.rotation.airflow_connections`; tasks cannot write connections).

Who answers which approval is not a permission: approvals are assigned by role
(``role:Platform lead``) and :class:`~stellar_ops.adapters.common.auth.StellarAuthManager` applies
the assignment, so a new lead needs only the role.

``python -m stellar_ops.adapters.common.roles`` is the set-up step of every deployment (compose's
``airflow-init``, the Helm chart's create-user job, ``make run``, the e2e harness), run after
``airflow db migrate``. It is idempotent:

1. FAB's built-in roles and permissions (what ``airflow sync-perm`` does);
2. the three roles above that are not FAB's, their permissions set to exactly the lists below (a
   permission added in the UI is taken away again: the roles are managed here);
3. the first users, from the environment: ``STELLAR_OPS_ADMINS``, ``STELLAR_OPS_ONCALL_ENGINEERS``,
   ``STELLAR_OPS_PLATFORM_LEADS`` and ``STELLAR_OPS_ROTATION_SERVICE_USERS`` name them
   (comma-separated usernames). A missing user is
   created with the password in ``STELLAR_OPS_USER_<USERNAME>_PASSWORD`` or, failing that, in the
   JSON object ``{"username": "password"}`` of the file ``STELLAR_OPS_USER_PASSWORDS_FILE``. A
   user who exists keeps their password (``--reset-passwords`` sets it again) and is given the
   role if they lack it; other roles they have are left alone. A password left at .env.example's
   placeholder (``change-me...``) is refused.

Passwords never come from the command line and are never printed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stellar_ops.core.approvals import ON_CALL, PLATFORM_LEAD
from stellar_ops.core.errors import ConfigError
from stellar_ops.rotation.airflow_connections import ROTATION_SERVICE

ADMIN = "Admin"
Permission = tuple[str, str]

# Pausing or unpausing a DAG, reparsing its file: FAB asks can_edit on "DAGs" for these and for
# every change below a DAG alike (a trigger, a clear, an answer), so the auth manager asks this one
# too for a change to the DAG itself, and only the platform lead has it (and FAB's Admin, User, Op).
RESOURCE_DAG_SETTINGS = "DAG Settings"
DAG_SETTINGS_EDIT: Permission = ("can_edit", RESOURCE_DAG_SETTINGS)
# FAB's built-in roles that could pause DAGs before the permission above existed, and still can
BUILTIN_ROLES_THAT_PAUSE = ("Admin", "Op", "User")

# FAB's Viewer role, spelled out so that the roles can be read here; a test checks it against FAB's.
VIEWER: tuple[Permission, ...] = (
    ("can_read", "DAGs"),
    ("can_read", "DAG Dependencies"),
    ("can_read", "DAG Code"),
    ("can_read", "DAG Runs"),
    ("can_read", "DAG Versions"),
    ("can_read", "DAG Warnings"),
    ("can_read", "Assets"),
    ("can_read", "Asset Aliases"),
    ("can_read", "Backfills"),
    ("can_read", "Cluster Activity"),
    ("can_read", "Pools"),
    ("can_read", "ImportError"),
    ("can_read", "Jobs"),
    ("can_read", "My Password"),
    ("can_edit", "My Password"),
    ("can_read", "My Profile"),
    ("can_edit", "My Profile"),
    ("can_read", "SLA Misses"),
    ("can_read", "Task Instances"),
    ("can_read", "Task Logs"),
    ("can_read", "XComs"),
    ("can_read", "HITL Detail"),
    ("can_read", "Website"),
    ("menu_access", "Browse"),
    ("menu_access", "DAGs"),
    ("menu_access", "DAG Dependencies"),
    ("menu_access", "DAG Runs"),
    ("menu_access", "Assets"),
    ("menu_access", "Cluster Activity"),
    ("menu_access", "Documentation"),
    ("menu_access", "Docs"),
    ("menu_access", "Jobs"),
    ("menu_access", "SLA Misses"),
    ("menu_access", "Task Instances"),
)

ON_CALL_ACTIONS: tuple[Permission, ...] = (
    # FAB asks can_edit on the DAG for every change below it; the DAG itself stays the lead's
    # (DAG Settings, above)
    ("can_edit", "DAGs"),
    ("can_create", "DAG Runs"),  # trigger a run, create a backfill
    ("can_edit", "DAG Runs"),  # mark a run, clear a run, pause or cancel a backfill
    ("can_edit", "Task Instances"),  # clear a task instance, mark it
    ("can_edit", "HITL Detail"),  # answer an approval: which ones, the auth manager decides
    ("menu_access", "HITL Detail"),  # the Required Actions page
)

PLATFORM_LEAD_ACTIONS: tuple[Permission, ...] = (
    DAG_SETTINGS_EDIT,
    ("menu_access", "Admin"),
    ("menu_access", "Variables"),
    ("can_read", "Variables"),
    ("can_create", "Variables"),
    ("can_edit", "Variables"),
    ("can_delete", "Variables"),
    ("menu_access", "Connections"),
    ("can_read", "Connections"),
    ("can_create", "Connections"),
    ("can_edit", "Connections"),
    ("can_delete", "Connections"),
)

ROLES: dict[str, tuple[Permission, ...]] = {
    ON_CALL: VIEWER + ON_CALL_ACTIONS,
    PLATFORM_LEAD: VIEWER + ON_CALL_ACTIONS + PLATFORM_LEAD_ACTIONS,
}

# A rotation's service user: GET /api/v2/connections/{id} asks can_read, PATCH asks can_edit (FAB's
# "PUT"); the token (POST /auth/token) needs no permission. No menu, no Viewer: not a person's role.
# FAB gives every custom role the home page (can_read on Website) at each API server start
# (add_homepage_access_to_custom_roles), so it is listed here rather than taken away and given back.
ROTATION_SERVICE_PERMISSIONS: tuple[Permission, ...] = (
    ("can_read", "Connections"),
    ("can_edit", "Connections"),
    ("can_read", "Website"),
)

# The roles of programs, each with only what its program needs; managed like ROLES
SERVICE_ROLES: dict[str, tuple[Permission, ...]] = {
    ROTATION_SERVICE: ROTATION_SERVICE_PERMISSIONS,
}

# The environment of the set-up step: which variable names the first users of which role
USERS_VARIABLES: dict[str, str] = {
    "STELLAR_OPS_ADMINS": ADMIN,
    "STELLAR_OPS_ONCALL_ENGINEERS": ON_CALL,
    "STELLAR_OPS_PLATFORM_LEADS": PLATFORM_LEAD,
    "STELLAR_OPS_ROTATION_SERVICE_USERS": ROTATION_SERVICE,
}
PASSWORDS_FILE_VARIABLE = "STELLAR_OPS_USER_PASSWORDS_FILE"
EMAIL_DOMAIN_VARIABLE = "STELLAR_OPS_USERS_EMAIL_DOMAIN"
DEFAULT_EMAIL_DOMAIN = "stellar-ops.invalid"
PLACEHOLDER = "change-me"  # .env.example's passwords: never one to log in with
USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")


def password_variable(username: str) -> str:
    """``STELLAR_OPS_USER_ONCALL2_PASSWORD`` for ``oncall2``: the variable holding a first password."""
    return f"STELLAR_OPS_USER_{re.sub(r'[^A-Z0-9]', '_', username.upper())}_PASSWORD"


@dataclass(frozen=True)
class FirstUser:
    """A user the set-up step makes sure of: their roles, and the password to create them with."""

    username: str
    roles: tuple[str, ...]
    email: str
    password: str | None  # None: only an existing user can be kept

    def __repr__(self) -> str:  # never the password, whatever prints this
        return f"FirstUser({self.username!r}, roles={self.roles!r}, email={self.email!r})"


def first_users(environ: Mapping[str, str]) -> list[FirstUser]:
    """The first users the environment names, in the order of :data:`USERS_VARIABLES`; a user
    named under several roles has them all."""
    roles: dict[str, list[str]] = {}
    for variable, role in USERS_VARIABLES.items():
        for username in (u.strip() for u in environ.get(variable, "").split(",")):
            if not username:
                continue
            if not USERNAME.fullmatch(username):
                raise ConfigError(
                    f"{variable}: {username!r} is not a username (letters, digits, . _ @ -, at most 64)"
                )
            roles.setdefault(username, [])
            if role not in roles[username]:
                roles[username].append(role)
    variables: dict[str, str] = {}
    for username in roles:
        other = variables.setdefault(password_variable(username), username)
        if other != username:
            raise ConfigError(
                f"users {other!r} and {username!r} would share the password variable "
                f"{password_variable(username)}: rename one"
            )
    from_file = _passwords_file(environ)
    domain = environ.get(EMAIL_DOMAIN_VARIABLE) or DEFAULT_EMAIL_DOMAIN
    return [
        FirstUser(
            username=username,
            roles=tuple(names),
            email=f"{username}@{domain}" if "@" not in username else username,
            password=environ.get(password_variable(username)) or from_file.get(username),
        )
        for username, names in roles.items()
    ]


def _passwords_file(environ: Mapping[str, str]) -> dict[str, str]:
    name = environ.get(PASSWORDS_FILE_VARIABLE)
    if not name:
        return {}
    path = Path(name)
    try:
        document = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{PASSWORDS_FILE_VARIABLE}: cannot read {path}: {exc.strerror}") from None
    except ValueError:
        # the parser's message quotes the text around the error, which may be a password
        raise ConfigError(
            f'{PASSWORDS_FILE_VARIABLE}: {path} is not JSON {{"username": "password"}}'
        ) from None
    if not isinstance(document, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in document.items()
    ):
        raise ConfigError(
            f'{PASSWORDS_FILE_VARIABLE}: {path} must be a JSON object {{"username": "password"}}'
        )
    return document


@dataclass
class Outcome:
    """What the set-up step did, one line each, fit to print (no password)."""

    lines: list[str]

    def add(self, line: str) -> None:
        self.lines.append(line)


@contextmanager
def _security_manager() -> Iterator[Any]:
    """FAB's security manager, on the metadata database Airflow is configured with."""
    from airflow.providers.fab.auth_manager.cli_commands.utils import get_application_builder

    with get_application_builder() as appbuilder:
        yield appbuilder


def set_up(users: Sequence[FirstUser], *, reset_passwords: bool = False) -> Outcome:
    """Built-in roles and permissions, the roles of the manual and the service roles, then
    ``users``; idempotent."""
    missing = [u.username for u in users if not u.password]
    outcome = Outcome([])
    with _security_manager() as appbuilder:
        sm = appbuilder.sm
        # what `airflow sync-perm` does: FAB's own views and roles (Admin among them)
        appbuilder.add_permissions(update_perms=True)
        sm.sync_roles()
        dag_settings = sm.create_permission(*DAG_SETTINGS_EDIT)
        if dag_settings is None:
            raise ConfigError(f"FAB could not create the permission {DAG_SETTINGS_EDIT} (see the log above)")
        for name in BUILTIN_ROLES_THAT_PAUSE:
            role = sm.find_role(name)
            if role is not None and dag_settings not in role.permissions:
                sm.add_permission_to_role(role, dag_settings)
        for name, permissions in {**ROLES, **SERVICE_ROLES}.items():
            outcome.add(_sync_role(sm, name, permissions))
        for user in users:
            outcome.add(_sync_user(sm, user, reset_passwords=reset_passwords, missing=missing))
    return outcome


def _sync_role(sm: Any, name: str, permissions: Iterable[Permission]) -> str:
    role = sm.find_role(name)
    created = role is None
    if role is None:
        role = sm.add_role(name)
    # FAB's helpers log their failures and go on: each outcome is checked here
    made = {pair: sm.create_permission(*pair) for pair in permissions}
    failed = sorted(pair for pair, permission in made.items() if permission is None)
    if failed:
        raise ConfigError(f"role {name}: FAB could not create the permissions {failed} (see the log above)")
    wanted = set(made.values())
    current = set(role.permissions)
    for permission in wanted - current:
        sm.add_permission_to_role(role, permission)
    for permission in current - wanted:
        sm.remove_permission_from_role(role, permission)
    if set(role.permissions) != wanted:
        raise ConfigError(f"role {name}: its permissions could not be set (see the log above)")
    verb = "created" if created else "updated" if wanted != current else "unchanged"
    return f"role {name}: {verb}, {len(wanted)} permissions"


def _sync_user(sm: Any, user: FirstUser, *, reset_passwords: bool, missing: list[str]) -> str:
    roles = []
    for name in user.roles:
        role = sm.find_role(name)
        if role is None:
            raise ConfigError(f"user {user.username}: there is no role {name!r}")
        roles.append(role)
    existing = sm.find_user(username=user.username)
    if user.password and user.password.startswith(PLACEHOLDER) and (existing is None or reset_passwords):
        raise ConfigError(
            f"user {user.username}: the password is still the placeholder of .env.example "
            f"({password_variable(user.username)}); set a real one"
        )
    if existing is None:
        if not user.password:
            raise ConfigError(
                f"user {user.username} does not exist and has no password: set "
                f"{password_variable(user.username)} or add it to the file named by "
                f"{PASSWORDS_FILE_VARIABLE} (users without one: {', '.join(missing)})"
            )
        if sm.find_user(email=user.email) is not None:
            raise ConfigError(f"user {user.username}: the e-mail {user.email} belongs to another user")
        sm.add_user(
            user.username,
            user.username,
            user.username,
            user.email,
            roles,
            user.password,
        )
        if sm.find_user(username=user.username) is None:
            raise ConfigError(f"user {user.username} could not be created (see the log above)")
        return f"user {user.username}: created, {', '.join(user.roles)}"
    changes = []
    lacking = [role for role in roles if role not in existing.roles]
    if lacking:
        existing.roles = [*existing.roles, *lacking]
        if not sm.update_user(existing):
            raise ConfigError(f"user {user.username}: could not add the roles {[r.name for r in lacking]}")
        changes.append("given " + ", ".join(r.name for r in lacking))
    if reset_passwords and user.password:
        if not sm.reset_password(existing.id, user.password):
            raise ConfigError(f"user {user.username}: could not set the password")
        changes.append("password set")
    return f"user {user.username}: exists, " + ("; ".join(changes) if changes else "unchanged")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m stellar_ops.adapters.common.roles",
        description="Create or update the roles of the operations manual, the service roles and the "
        "first users (from STELLAR_OPS_ADMINS, STELLAR_OPS_ONCALL_ENGINEERS, STELLAR_OPS_PLATFORM_LEADS, "
        "STELLAR_OPS_ROTATION_SERVICE_USERS and their STELLAR_OPS_USER_<USERNAME>_PASSWORD or "
        "STELLAR_OPS_USER_PASSWORDS_FILE). Run after "
        "`airflow db migrate`, with [core] auth_manager set to the package's.",
    )
    parser.add_argument(
        "--reset-passwords",
        action="store_true",
        help="also set the password of users who exist, from the same variables",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        users = first_users(os.environ)
        outcome = _set_up_with_providers(users, reset_passwords=args.reset_passwords)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for line in outcome.lines:
        print(line)
    return 0


def _set_up_with_providers(users: Sequence[FirstUser], *, reset_passwords: bool) -> Outcome:
    from airflow.utils.providers_configuration_loader import providers_configuration_loaded

    result: list[Outcome] = []

    @providers_configuration_loaded  # type: ignore[untyped-decorator]
    def run() -> None:
        result.append(set_up(users, reset_passwords=reset_passwords))

    run()
    return result[0]


if __name__ == "__main__":
    sys.exit(main())
