"""Where ``stellar-ops secrets setup-twins`` finds its admin: ``AIRFLOW_CONN_<ID>`` (JSON or URI,
as Airflow reads it, without Airflow) or ``--admin URL`` with the password from the environment."""

from __future__ import annotations

import json

import pytest

from stellar_ops.cli.twins import admin_url_target, connection_target
from stellar_ops.core.errors import ConfigError, MissingConnectionError

SECRET = "pa$$:w/rd@x"


def test_the_json_form_with_libpq_extras():
    conn = {
        "conn_type": "postgres",
        "host": "db.internal",
        "port": 6543,
        "login": "ops_admin",
        "password": SECRET,
        "schema": "postgres",
        "extra": json.dumps({"sslmode": "verify-full", "connect_timeout": 5}),
    }
    target = connection_target("pg_admin", {"AIRFLOW_CONN_PG_ADMIN": json.dumps(conn)})
    assert (target.host, target.port, target.user, target.dbname) == (
        "db.internal",
        6543,
        "ops_admin",
        "postgres",
    )
    assert target.password == SECRET and target.sslmode == "verify-full"
    assert target.setting("connect_timeout") == "5"
    assert SECRET not in repr(target)


def test_the_uri_form():
    uri = "postgres://ops_admin:pa%24%24%3Aw%2Frd%40x@db.internal:6543/postgres?sslmode=require"
    target = connection_target("pg_admin", {"AIRFLOW_CONN_PG_ADMIN": uri})
    assert (target.user, target.port, target.dbname, target.sslmode) == (
        "ops_admin",
        6543,
        "postgres",
        "require",
    )
    assert target.password == SECRET


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('{"conn_type": "postgres", "login": "a", "schema": "b", "password": "' + SECRET, "not valid JSON"),
        (
            '{"conn_type": "http", "host": "h", "login": "a", "schema": "b"}',
            "is a http connection, not postgres",
        ),
        ('{"conn_type": "postgres", "host": "h", "password": "x"}', "lacks login, schema"),
        (
            '{"conn_type": "postgres", "host": "h", "login": "a", "schema": "b", "extra": {"sslrootcrt": "x"}}',
            "'sslrootcrt' is not a libpq",
        ),
        ('{"conn_type": "postgres", "host": "h", "login": "a", "schema": "b", "port": "5x"}', "invalid port"),
    ],
)
def test_a_wrong_connection_is_named_without_its_password(value, message):
    with pytest.raises(ConfigError, match=message) as caught:
        connection_target("pg_admin", {"AIRFLOW_CONN_PG_ADMIN": value})
    assert "AIRFLOW_CONN_PG_ADMIN" in str(caught.value) and SECRET not in str(caught.value)


def test_a_missing_connection_says_how_to_give_one():
    with pytest.raises(
        MissingConnectionError, match=r"export AIRFLOW_CONN_STELLAR_RESTORE .* or give --admin URL"
    ):
        connection_target("stellar_restore", {})


def test_admin_url_takes_its_password_from_the_environment_never_argv():
    target = admin_url_target("postgresql://postgres@127.0.0.1:5432/postgres", {"PGPASSWORD": SECRET})
    assert target.user == "postgres" and target.password == SECRET
    with pytest.raises(ConfigError, match="must not carry a password") as caught:
        admin_url_target("postgresql://postgres:hunter2@127.0.0.1/postgres", {})
    assert "hunter2" not in str(caught.value)
    passfile = admin_url_target("postgresql://postgres@h/postgres", {"PGPASSFILE": "/run/pgpass"})
    assert passfile.password is None and passfile.passfile == "/run/pgpass"
