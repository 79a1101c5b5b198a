"""``stellar-ops secrets setup-twins`` against a real PostgreSQL initdb'd for this module: it runs
as the admin connection the config names (``AIRFLOW_CONN_<ID>``, as ``.stack/env`` exports it) or
as ``--admin URL`` with ``PGPASSWORD``, and a second run changes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from stellar_ops.postgres.server import LocalPgServer
from stellar_ops.postgres.target import connect
from stellar_ops.rotation import twins
from stellar_ops.rotation.credentials import Credential, generate_secret
from tests.support.fixtures import local_pg_server

pytestmark = pytest.mark.integration

CLI = str(Path(sys.executable).parent / "stellar-ops")
ADMIN_CONN = "twins_admin"


@pytest.fixture(scope="module")
def server() -> Iterator[LocalPgServer]:
    with local_pg_server({"max_connections": "30"}) as pg:
        yield pg


@pytest.fixture
def app(server: LocalPgServer, request: pytest.FixtureRequest) -> Credential:
    """A LOGIN role named after the test that owns its database, with a table it made and a grant
    to a twin that exists before the setup (what the setup moves to the group)."""
    name = "cli_" + request.node.name.removeprefix("test_")[:20]
    secret = generate_secret()
    with connect(server.target()) as conn:
        verifier = conn.pgconn.encrypt_password(secret.encode(), name.encode(), b"scram-sha-256").decode()
        conn.execute(f"CREATE ROLE \"{name}\" LOGIN PASSWORD '{verifier}'")
        conn.execute(f'CREATE DATABASE "{name}" OWNER "{name}"')
    with connect(server.target(name)) as conn:
        conn.execute(f'SET ROLE "{name}"')
        conn.execute("CREATE TABLE trades (id serial PRIMARY KEY, note text)")
        conn.execute("RESET ROLE")
        conn.execute(f'CREATE ROLE "{name}_green" NOLOGIN')
        conn.execute(f'GRANT SELECT ON trades TO "{name}_green"')
    return Credential(name, secret)


def admin_connection(server: LocalPgServer) -> str:
    """The superuser as Airflow's JSON connection form (what ``AIRFLOW_CONN_*`` holds)."""
    target = server.target()
    return json.dumps(
        {
            "conn_type": "postgres",
            "host": target.host,
            "port": target.port,
            "login": target.user,
            "password": target.password,
            "schema": target.dbname,
        }
    )


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_", "PG"))}
    clean.pop("STELLAR_OPS_CONFIG", None)
    return subprocess.run(
        [CLI, "secrets", "setup-twins", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**clean, **env},
        stdin=subprocess.DEVNULL,
    )


def config_env(server: LocalPgServer, app: Credential) -> dict[str, str]:
    """The config names the admin connection and the app role; the connection is in the environment."""
    config = {"rotation": {"postgres": {"admin_conn_id": ADMIN_CONN, "app_role": app.identity}}}
    return {
        "STELLAR_OPS_CONFIG": json.dumps(config),
        f"AIRFLOW_CONN_{ADMIN_CONN.upper()}": admin_connection(server),
    }


def test_setup_twins_through_the_configured_connection_then_again_changing_nothing(server, app):
    env = config_env(server, app)
    blue, green = twins.twin_names(app.identity)
    first = run_cli("--yes", "--json", env=env)
    assert first.returncode == 0, first.stderr
    done = json.loads(first.stdout)
    assert done["changed"] is True and done["admin"] == f"postgres@127.0.0.1:{server.port}/postgres"
    report = "\n".join(done["changes"])
    assert f"created {blue}" in report and f"created {green}" not in report  # green existed
    assert f"{green}: SELECT on table trades (database {app.identity}) moved to {app.identity}" in report
    assert done["warnings"] == []
    state = done["state"]
    assert state["ready"] is True and state["logins"] == [app.identity]
    assert [(t["name"], t["exists"], t["can_login"]) for t in state["twins"]] == [
        (blue, True, False),
        (green, True, False),
    ]
    assert state["group"] == {"can_login": True, "sessions": 0}
    with connect(server.target(app.identity)) as conn:
        grantees = {
            r[0]
            for r in conn.execute(
                "SELECT a.grantee::regrole::text FROM pg_class c, aclexplode(c.relacl) a "
                "WHERE c.oid = 'trades'::regclass"
            ).fetchall()
        }
    assert green not in grantees and app.identity in grantees
    # nothing of the admin's password anywhere the command wrote
    assert server.password not in first.stdout + first.stderr

    second = run_cli("--yes", "--json", env=env)
    assert second.returncode == 0, second.stderr
    again = json.loads(second.stdout)
    assert again["changed"] is False and again["changes"] == []
    assert again["state"] == state

    text = run_cli("--yes", env=env)
    assert text.returncode == 0, text.stderr
    assert f"nothing to change: the twins of {app.identity} were set up already" in text.stdout
    assert f"logs in now: {app.identity}" in text.stdout
    assert f"{blue} (twin): NOLOGIN, 0 session(s)" in text.stdout


def test_admin_url_with_pgpassword_and_an_explicit_app_role_and_hba_warnings(server, app):
    hba = server.data_dir / "pg_hba.conf"
    original = hba.read_text()
    # a rule naming the app role alone: its twins would not get in through it (read, not reloaded)
    hba.write_text(original + f"host all {app.identity} 127.0.0.1/32 scram-sha-256\n")
    try:
        done = run_cli(
            "--admin",
            f"postgresql://postgres@127.0.0.1:{server.port}/postgres",
            "--app-role",
            app.identity,
            "--yes",
            "--json",
            env={"PGPASSWORD": server.password},
        )
    finally:
        hba.write_text(original)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["changed"] is True and result["state"]["ready"] is True
    (warning,) = result["warnings"]
    assert warning.startswith("pg_hba.conf line ") and f"+{app.identity}" in warning
    assert not any(line.startswith("pg_hba.conf") for line in result["changes"])


def test_refusals_name_what_is_wrong_and_change_nothing(server, app):
    blue = twins.twin_names(app.identity)[0]

    def blue_exists() -> bool:
        with connect(server.target()) as conn:
            return conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (blue,)).fetchone() is not None

    # a password in argv is refused before anything connects
    leaky = run_cli(
        "--admin",
        f"postgresql://postgres:{server.password}@127.0.0.1:{server.port}/postgres",
        "--app-role",
        app.identity,
        "--yes",
        env={},
    )
    assert leaky.returncode == 2 and "--admin must not carry a password" in leaky.stderr
    assert server.password not in leaky.stderr
    # the configured connection is not in the environment
    config = json.dumps({"rotation": {"postgres": {"admin_conn_id": ADMIN_CONN, "app_role": app.identity}}})
    missing = run_cli("--yes", env={"STELLAR_OPS_CONFIG": config})
    assert missing.returncode == 2
    assert f"export AIRFLOW_CONN_{ADMIN_CONN.upper()}" in missing.stderr
    # the app role itself is no superuser: the twins need one to manage them
    as_app = json.dumps(
        {
            "conn_type": "postgres",
            "host": "127.0.0.1",
            "port": server.port,
            "login": app.identity,
            "password": app.secret,
            "schema": app.identity,
        }
    )
    not_super = run_cli(
        "--app-role",
        app.identity,
        "--yes",
        env={f"AIRFLOW_CONN_{ADMIN_CONN.upper()}": as_app, "STELLAR_OPS_CONFIG": config},
    )
    assert not_super.returncode == 2 and "is not a superuser" in not_super.stderr
    assert app.secret not in not_super.stderr
    # without --yes and without a terminal to ask on, nothing is done
    unasked = run_cli(env=config_env(server, app))
    assert unasked.returncode == 2 and "run with --yes" in unasked.stderr
    assert not blue_exists()
