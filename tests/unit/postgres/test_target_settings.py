"""Every libpq setting of a connection's extras or a URL's query string reaches psycopg and the
client programs; secrets stay out of argv, reprs and messages; TLS failures name the setting."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from stellar_ops.core.errors import ConfigError, PrerequisiteError
from stellar_ops.postgres.target import (
    LIBPQ_SETTINGS,
    PgTarget,
    connection_error,
    libpq_settings,
    session_name,
    tls_failure,
)

SECRET = "k3y-s3cret"


def tls_target(tmp_path: Path, **extra: object) -> PgTarget:
    files = {name: tmp_path / f"{name}.pem" for name in ("sslrootcert", "sslcert", "sslkey")}
    for path in files.values():
        path.write_text("x")
    raw = {
        "sslmode": "verify-full",
        **{k: str(v) for k, v in files.items()},
        "sslpassword": SECRET,
        "keepalives_idle": 30,
        "options": "-c search_path=escrow",
        "connect_timeout": 7,
        "target_session_attrs": "read-write",
        **extra,
    }
    return PgTarget.build(
        host="db.internal",
        port=5433,
        user="stellar",
        dbname="stellar_escrow",
        password="pw",
        settings=libpq_settings(raw, source="connection 'stellar_db'"),
    )


def test_extras_become_settings_and_the_hooks_own_are_dropped() -> None:
    settings = libpq_settings(
        {
            "sslmode": "verify-full",
            "keepalives": True,
            "keepalives_idle": 30,
            "application_name": "escrow-ops",
            "cursor": "dictcursor",
            "iam": False,
            "aws_conn_id": "aws_default",
            "redshift": False,
            "sqlalchemy_scheme": "postgresql",
            "sqlalchemy_query": {"a": "b"},
            "sslcrl": None,
        },
        source="connection 'x'",
    )
    assert settings == {
        "sslmode": "verify-full",
        "keepalives": "1",
        "keepalives_idle": "30",
        "application_name": "escrow-ops",
    }


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"sslrootcrt": "/ca.pem"},
            r"'sslrootcrt' is not a libpq connection setting; supported: .*sslrootcert",
        ),
        ({"password": "x"}, r"'password' is not a setting: give it as the connection's password"),
        ({"host": "x"}, r"'host' is not a setting: give it as the connection's host"),
        ({"options": ["-c", "x"]}, r"options must be a string or a number, got list"),
    ],
)
def test_what_is_no_libpq_setting_is_refused_naming_it(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=rf"^connection 'x': {message}"):
        libpq_settings(raw, source="connection 'x'")


def test_url_query_carries_every_setting() -> None:
    target = PgTarget.from_url(
        "postgresql://stellar@db:5433/escrow?sslmode=verify-full&sslrootcert=/etc/ca.pem"
        "&sslcert=/etc/c.pem&sslkey=/etc/k.pem&keepalives_idle=20&application_name=cron"
        "&options=-c%20search_path%3Descrow&passfile=/etc/pgpass"
    )
    assert target.sslmode == "verify-full"
    assert target.passfile == "/etc/pgpass"
    assert dict(target.settings) == {
        "sslrootcert": "/etc/ca.pem",
        "sslcert": "/etc/c.pem",
        "sslkey": "/etc/k.pem",
        "keepalives_idle": "20",
        "application_name": "cron",
        "options": "-c search_path=escrow",
    }
    assert PgTarget.from_url("postgresql://u@h/db?ssl=true").sslmode == "require"


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("schema=public", r"'schema' is not a libpq connection setting"),
        ("sslmode=require&sslmode=disable", r"gives 'sslmode' twice"),
        ("ssl=false", r"ssl accepts only true"),
    ],
)
def test_url_query_errors_name_the_parameter(query: str, message: str) -> None:
    with pytest.raises(ConfigError, match=rf"^DATABASE_URL.*{message}"):
        PgTarget.from_url(f"postgresql://u:hunter2@h/db?{query}")


def test_connect_kwargs_carry_every_setting(tmp_path: Path) -> None:
    kwargs = tls_target(tmp_path).connect_kwargs()
    assert kwargs["sslmode"] == "verify-full"
    assert kwargs["sslpassword"] == SECRET
    assert kwargs["keepalives_idle"] == "30"
    assert kwargs["options"] == "-c search_path=escrow"
    assert kwargs["connect_timeout"] == "7"
    assert kwargs["target_session_attrs"] == "read-write"
    assert kwargs["sslrootcert"] == str(tmp_path / "sslrootcert.pem")
    assert kwargs["application_name"] == "stellar-ops"


def test_with_dbname_and_labels_keep_every_setting(tmp_path: Path) -> None:
    target = tls_target(tmp_path)
    other = target.with_dbname("postgres").for_session("db_backup", "manual__1")
    assert other.settings == target.settings and other.sslmode == target.sslmode
    assert other.password == target.password and other.dbname == "postgres"


def test_client_env_uses_the_environment_variables(tmp_path: Path) -> None:
    target = tls_target(tmp_path).with_settings(sslpassword=None, keepalives_idle=None)
    env = target.client_env({"PGSERVICE": "prod", "PGSERVICEFILE": "/x", "PATH": "/bin"})
    assert env["PGSSLMODE"] == "verify-full"
    assert env["PGSSLROOTCERT"] == str(tmp_path / "sslrootcert.pem")
    assert env["PGSSLCERT"] == str(tmp_path / "sslcert.pem")
    assert env["PGSSLKEY"] == str(tmp_path / "sslkey.pem")
    assert env["PGOPTIONS"] == "-c search_path=escrow"
    assert env["PGCONNECT_TIMEOUT"] == "7"
    assert env["PGTARGETSESSIONATTRS"] == "read-write"
    assert env["PGAPPNAME"] == "stellar-ops"
    assert "PGSERVICE" not in env and "PGSERVICEFILE" not in env


def test_client_env_refuses_settings_that_need_a_service_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="keepalives_idle, sslpassword reach client programs only"):
        tls_target(tmp_path).client_env({})


def test_client_session_writes_a_private_service_file_and_removes_it(tmp_path: Path) -> None:
    target = tls_target(tmp_path)
    with target.client_session({"PATH": "/bin"}) as env:
        path = Path(env["PGSERVICEFILE"])
        assert env["PGSERVICE"] == "stellar-ops"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert path.read_text() == f"[stellar-ops]\nkeepalives_idle=30\nsslpassword={SECRET}\n"
        assert [k for k, v in env.items() if SECRET in v] == []  # not in the environment
        assert env["PGPASSWORD"] == "pw" and env["PGSSLKEY"] == str(tmp_path / "sslkey.pem")
    assert not path.exists() and not path.parent.exists()


def test_client_session_removes_the_file_when_the_program_fails(tmp_path: Path) -> None:
    seen: list[Path] = []

    def run_failing_program() -> None:
        with tls_target(tmp_path).client_session({}) as env:
            seen.append(Path(env["PGSERVICEFILE"]))
            raise RuntimeError("pg_dump failed")

    with pytest.raises(RuntimeError):
        run_failing_program()
    assert seen and not seen[0].parent.exists()


def test_client_session_without_such_settings_writes_nothing(tmp_path: Path) -> None:
    with PgTarget("h", 5432, "u", "db").client_session({}) as env:
        assert "PGSERVICEFILE" not in env and "PGSERVICE" not in env


def test_a_service_file_value_on_two_lines_is_refused(tmp_path: Path) -> None:
    target = tls_target(tmp_path, sslpassword="a\nb")
    with (
        pytest.raises(ConfigError, match="sslpassword cannot reach the client programs"),
        target.client_session({}),
    ):
        pass


def test_secrets_are_absent_from_repr_and_errors(tmp_path: Path) -> None:
    target = tls_target(tmp_path)
    text = repr(target) + str(target) + target.describe() + repr(target.with_dbname("x"))
    assert SECRET not in text and "'pw'" not in text
    assert "'sslpassword': '***'" in repr(target)
    error = connection_error(
        f"connection to server failed: {SECRET} pw SSL error: certificate verify failed", target
    )
    assert SECRET not in str(error)


def test_missing_or_unreadable_files_are_named_with_their_path(tmp_path: Path) -> None:
    target = tls_target(tmp_path)
    missing = target.with_settings(sslcert=str(tmp_path / "gone.pem"))
    with pytest.raises(ConfigError, match=rf"^sslcert={tmp_path}/gone.pem does not exist"):
        missing.check_files()
    if os.geteuid() != 0:
        (tmp_path / "sslkey.pem").chmod(0)
        with pytest.raises(ConfigError, match=r"^sslkey=.* cannot be read"):
            target.check_files()
    target.with_settings(sslmode="disable", sslcert="/nowhere").check_files()  # not read without TLS
    target.with_settings(sslrootcert="system").check_files()  # libpq's word for the system's CAs


@pytest.mark.parametrize(
    ("text", "names"),
    [
        (
            'connection to server at "10.0.0.5", port 5433 failed: SSL error: certificate verify failed',
            ["sslrootcert=", "rootcert.pem"],
        ),
        (
            'connection to server at "db.internal" failed: server certificate for "127.0.0.1" does not '
            'match host name "db.internal"',
            ["'db.internal'", "sslmode=verify-full"],
        ),
        (
            'connection to server failed: could not load private key file "k": bad decrypt',
            ["sslkey=", "sslpassword"],
        ),
        (
            'connection to server failed: FATAL: certificate authentication failed for user "stellar"',
            ["sslcert=", "'stellar'"],
        ),
        ("connection to server failed: SSL error: tlsv1 alert unknown ca", ["sslcert="]),
    ],
)
def test_tls_failures_are_config_errors_naming_the_setting(
    tmp_path: Path, text: str, names: list[str]
) -> None:
    target = tls_target(tmp_path)
    error = connection_error(text, target)
    assert isinstance(error, ConfigError)
    for name in names:
        assert name in str(error)
    client = tls_failure(f"pg_dump: error: {text}", target)
    assert isinstance(client, ConfigError)


def test_an_ordinary_failure_to_connect_stays_a_prerequisite_error(tmp_path: Path) -> None:
    text = 'connection to server at "10.0.0.5", port 5433 failed: Connection refused'
    error = connection_error(text, tls_target(tmp_path))
    assert type(error) is PrerequisiteError
    assert (
        tls_failure(
            "pg_restore: error: COPY failed for table trades: bad certificate data", tls_target(tmp_path)
        )
        is None
    )


def test_session_names_say_procedure_and_run_within_63_bytes(tmp_path: Path) -> None:
    run_id = "manual__2026-12-07T00:40:00.123456+00:00"
    assert session_name(None, "db_backup", run_id) == f"stellar-ops/db_backup/{run_id}"
    long = session_name(None, "morning_health_check", run_id)
    assert len(long.encode()) == 63 and long.startswith(
        "stellar-ops/morning_health_check/manual__2026-12-07T"
    )
    assert session_name("escrow-ops", "db_backup", "r1") == "escrow-ops/db_backup/r1"
    assert session_name(None, "db_backup", "run-é") == "stellar-ops/db_backup/run-?"

    target = tls_target(tmp_path, application_name="escrow-ops")
    assert target.application_name == "escrow-ops"  # the connection's own, alone, outside a run
    labelled = target.for_session("db_backup", "r1").for_session("db_backup", "r2")
    assert labelled.application_name == "escrow-ops/db_backup/r2"  # labelling again replaces
    assert labelled.connect_kwargs()["application_name"] == "escrow-ops/db_backup/r2"
    with labelled.client_session({}) as env:
        assert env["PGAPPNAME"] == "escrow-ops/db_backup/r2"


def test_every_setting_has_a_known_environment_variable_or_none() -> None:
    assert all(v is None or v.startswith("PG") for v in LIBPQ_SETTINGS.values())
    assert LIBPQ_SETTINGS["sslpassword"] is None and LIBPQ_SETTINGS["keepalives_idle"] is None


def test_with_options_puts_the_connections_own_first(tmp_path: Path) -> None:
    target = tls_target(tmp_path).with_options("-c statement_timeout=5000")
    assert target.connect_kwargs()["options"] == "-c search_path=escrow -c statement_timeout=5000"
    assert PgTarget("h", 1, "u", "d").with_options("-c a=1").setting("options") == "-c a=1"


def test_a_bounded_target_gives_up_connecting_and_on_each_statement_after_its_seconds() -> None:
    bounded = PgTarget("h", 1, "u", "d").with_options("-c search_path=app").bounded(2.5)
    assert bounded.setting("connect_timeout") == "2"
    assert bounded.setting("options") == "-c search_path=app -c statement_timeout=2500"
    assert PgTarget("h", 1, "u", "d").bounded(0.2).setting("connect_timeout") == "1"  # libpq's least
