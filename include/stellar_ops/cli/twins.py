"""``stellar-ops secrets setup-twins``: the twin login roles of the application's PostgreSQL role,
made once before its password can rotate (:func:`stellar_ops.rotation.twins.setup_twins`).

It runs as the admin connection ``rotation.postgres.admin_conn_id`` (a superuser), read from the
environment as Airflow reads it (``AIRFLOW_CONN_<ID>``, JSON or URI: what ``.stack/env`` exports),
so it works while Airflow is down; ``--admin URL`` names another, its password from
``PGPASSWORD`` or a passfile (argv is readable by every user of the machine). Safe to run again:
a run with nothing to do changes nothing and says so.

This module registers no command group of its own (it has no ``register``): ``cli/secrets.py``
adds the subcommand with :func:`add_setup_twins`.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

from stellar_ops.cli import env
from stellar_ops.cli.output import print_json, say
from stellar_ops.cli.terminal import ask
from stellar_ops.core.errors import ConfigError, MissingConnectionError
from stellar_ops.postgres.target import PgTarget, libpq_settings
from stellar_ops.rotation import twins

# what setup_twins says that is a warning (a rule of pg_hba.conf), not something it changed
HBA_WARNING = "pg_hba.conf line "
POSTGRES_CONN_TYPES = ("postgres", "postgresql")


def add_setup_twins(cmds: Any) -> None:
    """Add ``setup-twins`` to the ``secrets`` subcommands ``cmds``."""
    p = cmds.add_parser(
        "setup-twins",
        help="make the app role the group of two login twins (<role>_blue/_green), once before "
        "POSTGRES_PASSWORD rotates; safe to run again",
    )
    p.add_argument(
        "--app-role", default=None, help="the application's role (default rotation.postgres.app_role)"
    )
    p.add_argument(
        "--admin",
        metavar="URL",
        default=None,
        help="postgresql://superuser@host:port/db to run as, password from PGPASSWORD or a passfile "
        "(default: the connection rotation.postgres.admin_conn_id, from AIRFLOW_CONN_<ID>)",
    )
    p.add_argument("--yes", action="store_true", help="do not ask on the terminal before changing roles")
    p.add_argument("--json", action="store_true", help="print what was done and the roles' state as JSON")
    p.set_defaults(func=cmd_setup_twins)


def cmd_setup_twins(args: argparse.Namespace) -> int:
    settings = env.config_from_env().rotation.postgres
    app_role = args.app_role or settings.app_role
    admin = admin_url_target(args.admin) if args.admin else connection_target(settings.admin_conn_id)
    blue, green = twins.twin_names(app_role)
    question = (
        f"On {admin.describe()}: make {app_role} the group of the login roles {blue} and {green} "
        f"(created NOLOGIN if missing; what is granted to them directly, and what they own, moves to "
        f"{app_role}). {app_role} keeps its login until the first rotation."
    )
    if not args.yes and not ask(question):
        say("not approved: nothing changed")
        return 1
    said: list[str] = []
    state = twins.setup_twins(admin, app_role, said.append)
    changes = [line for line in said if not line.startswith(HBA_WARNING)]
    warnings = [line for line in said if line.startswith(HBA_WARNING)]
    if args.json:
        print_json(
            {
                "admin": admin.describe(),
                "changed": bool(changes),
                "changes": changes,
                "warnings": warnings,
                "state": state_document(state),
            }
        )
    else:
        print(report(state, changes, warnings))
    return 0


def report(state: twins.TwinState, changes: list[str], warnings: list[str]) -> str:
    """What was done, the warnings, and who logs in now, for a person."""
    lines = [f"changed: {line}" for line in changes] or [
        f"nothing to change: the twins of {state.app_role} were set up already"
    ]
    lines += [f"WARNING: {line}" for line in warnings]
    group = "LOGIN" if state.group_can_login else "NOLOGIN"
    lines.append(f"{state.app_role} (group): {group}, {state.group_sessions} session(s)")
    for twin in state.twins:
        login = "LOGIN" if twin.can_login else "NOLOGIN"
        lines.append(f"{twin.name} (twin): {login}, {twin.sessions} session(s)")
    lines.append(f"logs in now: {', '.join(state.logins) or 'nobody'}")
    return "\n".join(lines)


def state_document(state: twins.TwinState) -> dict[str, Any]:
    return {
        "app_role": state.app_role,
        "ready": state.ready,
        "group": {"can_login": state.group_can_login, "sessions": state.group_sessions},
        "twins": [
            {
                "name": t.name,
                "exists": t.exists,
                "can_login": t.can_login,
                "sessions": t.sessions,
                "valid_until": t.valid_until.isoformat() if t.valid_until else None,
            }
            for t in state.twins
        ],
        "logins": state.logins,
    }


def admin_url_target(url: str, environ: Mapping[str, str] | None = None) -> PgTarget:
    """``--admin``: a URL without its password, which comes from ``PGPASSWORD`` or a passfile."""
    environ = os.environ if environ is None else environ
    if urlsplit(url).password is not None:
        raise ConfigError(
            "--admin must not carry a password (argv is readable by every user of the machine): "
            "export PGPASSWORD or use a passfile (PGPASSFILE or ~/.pgpass)"
        )
    target = PgTarget.from_url(url, source="--admin")
    password = environ.get("PGPASSWORD") or None
    return replace(target, password=password, passfile=environ.get("PGPASSFILE") or target.passfile)


def connection_target(conn_id: str, environ: Mapping[str, str] | None = None) -> PgTarget:
    """The PostgreSQL connection ``conn_id`` as Airflow finds it in the environment:
    ``AIRFLOW_CONN_<ID>`` holding its JSON form or its URI (no Airflow needed)."""
    environ = os.environ if environ is None else environ
    variable = f"AIRFLOW_CONN_{conn_id.upper()}"
    raw = (environ.get(variable) or "").strip()
    if not raw:
        raise MissingConnectionError(
            f"connection {conn_id!r} (rotation.postgres.admin_conn_id) is not in the environment: "
            f"export {variable} (JSON or URI, as `source .stack/env` does), or give --admin URL"
        )
    source = f"{variable} (connection {conn_id!r})"
    if not raw.startswith("{"):
        return PgTarget.from_url(raw, source=source)
    try:
        conn = json.loads(raw)
    except ValueError as exc:
        # the message names the position only, never the text (which holds the password)
        raise ConfigError(f"{source} is not valid JSON: {exc}") from None
    if not isinstance(conn, dict):
        raise ConfigError(f"{source} must be a JSON object")
    conn_type = str(conn.get("conn_type") or "")
    if conn_type not in POSTGRES_CONN_TYPES:
        raise ConfigError(f"{source} is a {conn_type or 'typeless'} connection, not postgres")
    missing = [name for name in ("host", "login", "schema") if not conn.get(name)]
    if missing:
        raise ConfigError(f"{source} lacks {', '.join(missing)} (schema holds the database name)")
    extra = conn.get("extra") or {}
    if isinstance(extra, str):
        try:
            extra = json.loads(extra)
        except ValueError as exc:
            raise ConfigError(f"{source}: its extra is not valid JSON: {exc}") from None
    if not isinstance(extra, dict):
        raise ConfigError(f"{source}: its extra must be a JSON object")
    try:
        port = int(conn.get("port") or 5432)
    except (TypeError, ValueError):
        raise ConfigError(f"{source} has an invalid port: {conn.get('port')!r}") from None
    return PgTarget.build(
        host=str(conn["host"]),
        port=port,
        user=str(conn["login"]),
        dbname=str(conn["schema"]),
        password=conn.get("password") or None,
        settings=libpq_settings(extra, source=f"{source}'s extra"),
    )
