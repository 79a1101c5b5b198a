"""stellar_ops.postgres.target.PgTarget: URLs, secret-free descriptions, client environments; identifier quoting."""

from __future__ import annotations

from pathlib import Path

import pytest

from stellar_ops.core.errors import ConfigError
from stellar_ops.postgres.binaries import PgBinaries
from stellar_ops.postgres.target import PgTarget, major_of, qualified, quote_ident

PASSWORD = "p@ss:w/rd %s3cr3t"
URL = "postgresql://stellar:p%40ss%3Aw%2Frd%20%25s3cr3t@db.example.org:6543/stellar_escrow?sslmode=require"


def test_from_url_reads_every_part() -> None:
    target = PgTarget.from_url(URL)

    assert target.host == "db.example.org"
    assert target.port == 6543
    assert target.user == "stellar"
    assert target.dbname == "stellar_escrow"
    assert target.password == PASSWORD  # percent-decoded
    assert target.sslmode == "require"


@pytest.mark.parametrize(
    ("url", "host", "port"),
    [
        ("postgresql://u@h/db", "h", 5432),
        ("postgres://u@h:5433/db", "h", 5433),
        ("postgresql+psycopg://u@h:1/db", "h", 1),
        ("postgresql://u@h:65535/db", "h", 65535),
        ("postgresql://u@[::1]:5434/db", "::1", 5434),
        ("postgresql://u@DB.Example.ORG/db", "db.example.org", 5432),
    ],
)
def test_from_url_hosts_and_ports(url: str, host: str, port: int) -> None:
    target = PgTarget.from_url(url)
    assert (target.host, target.port) == (host, port)
    assert target.password is None
    assert target.sslmode is None


def test_from_url_decodes_user_and_database() -> None:
    target = PgTarget.from_url("postgresql://us%40er@h/my%20db")
    assert target.user == "us@er"
    assert target.dbname == "my db"


def test_empty_password_is_kept_as_empty() -> None:
    assert PgTarget.from_url("postgresql://u:@h/db").password == ""


@pytest.mark.parametrize("url", ["mysql://u@h/db", "http://u@h/db", "", "localhost:5432/db", "h/db"])
def test_wrong_scheme(url: str) -> None:
    with pytest.raises(ConfigError, match=r"^DATABASE_URL must be a postgresql:// URL, got scheme '"):
        PgTarget.from_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://h/db",
        "postgresql://u@/db",
        "postgresql://u:pw@h/",
        "postgresql://u:pw@h",
        "postgresql:///db",
    ],
)
def test_missing_parts(url: str) -> None:
    with pytest.raises(ConfigError, match="must name a host, a user and a database"):
        PgTarget.from_url(url)


@pytest.mark.parametrize("port", ["abc", "99999", "-1"])
def test_invalid_port(port: str) -> None:
    with pytest.raises(ConfigError, match="^DATABASE_URL has an invalid port$"):
        PgTarget.from_url(f"postgresql://u:{port}secret@h:{port}/db")


def test_port_zero_is_invalid() -> None:
    with pytest.raises(ConfigError, match="invalid port"):
        PgTarget.from_url("postgresql://u@h:0/db")


def test_errors_name_the_source_and_never_the_password() -> None:
    for url in ("postgresql://u:hunter2@h:bad/db", "postgresql://:hunter2@h/db", "mysql://u:hunter2@h/db"):
        with pytest.raises(ConfigError) as info:
            PgTarget.from_url(url, source="connection stellar_db")
        assert str(info.value).startswith("connection stellar_db ")
        assert "hunter2" not in str(info.value)


def test_repr_and_describe_never_show_the_password() -> None:
    target = PgTarget.from_url(URL)

    assert target.describe() == "stellar@db.example.org:6543/stellar_escrow"
    for text in (repr(target), str(target), target.describe(), repr(target.with_dbname("postgres"))):
        assert "s3cr3t" not in text
        assert "p@ss" not in text
        assert "password" not in text


def test_with_dbname_keeps_the_rest() -> None:
    target = PgTarget.from_url(URL)

    other = target.with_dbname("postgres")

    assert other.dbname == "postgres"
    assert (other.host, other.port, other.user, other.password, other.sslmode) == (
        target.host,
        target.port,
        target.user,
        target.password,
        target.sslmode,
    )
    assert target.dbname == "stellar_escrow"


def test_client_env_puts_the_password_only_in_pgpassword() -> None:
    inherited = {
        "PATH": "/usr/bin",
        "PGPASSWORD": "inherited-secret",
        "PGSERVICE": "prod",
        "PGPASSFILE": "/root/.pgpass",
        "PGDATABASE": "other",
        "PGOPTIONS": "-c search_path=evil",
        "PGCONNECT_TIMEOUT": "3",
    }
    target = PgTarget.from_url(URL)

    env = target.client_env(inherited)

    assert env["PGPASSWORD"] == PASSWORD
    assert [name for name, value in env.items() if PASSWORD in value] == ["PGPASSWORD"]
    assert "inherited-secret" not in env.values()
    for dropped in ("PGSERVICE", "PGPASSFILE", "PGOPTIONS"):
        assert dropped not in env
    assert env["PGHOST"] == "db.example.org"
    assert env["PGPORT"] == "6543"
    assert env["PGUSER"] == "stellar"
    assert env["PGDATABASE"] == "stellar_escrow"
    assert env["PGSSLMODE"] == "require"
    assert env["PGAPPNAME"] == "stellar-ops"
    assert env["PGCONNECT_TIMEOUT"] == "3"  # an operator's choice is kept
    assert env["PATH"] == "/usr/bin"
    assert inherited["PGPASSWORD"] == "inherited-secret"  # the base is not modified


def test_client_env_without_password_drops_the_inherited_one() -> None:
    env = PgTarget.from_url("postgresql://u@h/db").client_env({"PGPASSWORD": "inherited", "PGSERVICE": "x"})

    assert "PGPASSWORD" not in env
    assert "PGSERVICE" not in env
    assert "PGSSLMODE" not in env
    assert env["PGCONNECT_TIMEOUT"] == "10"


def test_client_env_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGPASSWORD", "inherited")
    monkeypatch.setenv("PGPASSFILE", "/tmp/pgpass")
    monkeypatch.setenv("STELLAR_UNIT_MARKER", "kept")

    env = PgTarget.from_url("postgresql://u:mine@h/db").client_env()

    assert env["PGPASSWORD"] == "mine"
    assert "PGPASSFILE" not in env
    assert env["STELLAR_UNIT_MARKER"] == "kept"


def test_connect_kwargs() -> None:
    assert PgTarget.from_url(URL).connect_kwargs() == {
        "host": "db.example.org",
        "port": 6543,
        "user": "stellar",
        "dbname": "stellar_escrow",
        "connect_timeout": 10,
        "application_name": "stellar-ops",
        "password": PASSWORD,
        "sslmode": "require",
    }
    bare = PgTarget.from_url("postgresql://u@h/db").connect_kwargs()
    assert "password" not in bare
    assert "sslmode" not in bare


def test_quoting() -> None:
    assert quote_ident("trades") == '"trades"'
    assert quote_ident('we"ird') == '"we""ird"'
    assert qualified("public", "Trades") == '"public"."Trades"'


def test_major_of() -> None:
    assert major_of(160004) == 16
    assert major_of(90624) == 9


def test_binaries_path() -> None:
    assert (
        PgBinaries(Path("/usr/lib/postgresql/16/bin")).path("pg_dump") == "/usr/lib/postgresql/16/bin/pg_dump"
    )
