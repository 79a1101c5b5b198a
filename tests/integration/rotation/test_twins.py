"""PostgreSQL twin login roles against a real server initdb'd for this module.

The server logs every statement (``log_statement = all``) and tracks them in pg_stat_statements,
so a test can look for a password where a careless ALTER ROLE would leave it. Each test has an
application role (and a database it owns, with a demo table) of its own.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import replace

import psycopg
import pytest

from stellar_ops.postgres.server import LocalPgServer
from stellar_ops.postgres.target import PgTarget, connect
from stellar_ops.rotation import twins
from stellar_ops.rotation.credentials import Credential, generate_secret
from tests.support.credential_load import CredentialHolder, CredentialLoad
from tests.support.fixtures import local_pg_server
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server() -> Iterator[LocalPgServer]:
    settings = {
        "log_statement": "'all'",
        "shared_preload_libraries": "'pg_stat_statements'",
        "pg_stat_statements.track_utility": "on",
        "max_connections": "40",
    }
    with local_pg_server(settings) as pg:
        yield pg


@pytest.fixture
def app(server: LocalPgServer, request: pytest.FixtureRequest) -> Credential:
    """A LOGIN REPLICATION role named after the test, owning its database and a demo table."""
    name = "app_" + request.node.name.removeprefix("test_")[:20]
    secret = generate_secret()
    with connect(server.target()) as conn:
        conn.execute(f'CREATE ROLE "{name}" LOGIN REPLICATION')
        conn.execute(
            f"ALTER ROLE \"{name}\" PASSWORD '{conn.pgconn.encrypt_password(secret.encode(), name.encode(), b'scram-sha-256').decode()}'"
        )
        conn.execute(f'CREATE DATABASE "{name}" OWNER "{name}"')
    with connect(server.target(name)) as conn:
        conn.execute("CREATE EXTENSION pg_stat_statements")
    with connect(as_login(server, name, Credential(name, secret))) as conn:
        conn.execute("CREATE TABLE demo (id serial PRIMARY KEY, note text NOT NULL)")
        conn.execute("INSERT INTO demo (note) VALUES ('before the twins')")
    return Credential(name, secret)


def as_login(server: LocalPgServer, dbname: str, credential: Credential) -> PgTarget:
    return replace(server.target(dbname), user=credential.identity, password=credential.secret)


def admin(server: LocalPgServer, app: Credential) -> PgTarget:
    return server.target(app.identity)


def test_setup_is_idempotent_and_leaves_both_twins_disabled(server, app):
    said: list[str] = []
    state = twins.setup_twins(admin(server, app), app.identity, said.append)
    blue, green = twins.twin_names(app.identity)
    assert any(f"created {blue}" in line for line in said) and any(
        f"created {green}" in line for line in said
    )
    assert state.ready and state.group_can_login
    assert [t.can_login for t in state.twins] == [False, False]
    again: list[str] = []
    assert twins.setup_twins(admin(server, app), app.identity, again.append) == state
    assert again == [], "a second setup has nothing to do"
    with connect(server.target()) as conn:
        for twin in (blue, green):
            inherit, replication = conn.execute(
                "SELECT rolinherit, rolreplication FROM pg_roles WHERE rolname = %s", (twin,)
            ).fetchone()
            assert inherit and replication, "REPLICATION is copied from the group"
            assert conn.execute("SELECT pg_has_role(%s, %s, 'MEMBER')", (twin, app.identity)).fetchone()[0]
    # the group still logs in: consumers keep working until the first rotation switches them
    assert twins.accepts(server.target(app.identity), app)
    with pytest.raises(twins.TwinError, match="no twin .* can log in"):
        twins.retire_group_login(admin(server, app), app.identity)


def test_setup_moves_what_was_granted_to_a_twin_to_the_group(server, app):
    green = twins.twin_names(app.identity)[1]
    with connect(server.target(app.identity)) as conn:
        conn.execute(f'CREATE ROLE "{green}" NOLOGIN')
        conn.execute(f'GRANT pg_read_all_stats TO "{green}"')
        conn.execute("CREATE TABLE audit_only (id int, secret_note text)")  # the superuser's
        conn.execute(f'GRANT SELECT ON audit_only TO "{green}"')
        conn.execute(f'GRANT UPDATE (secret_note) ON audit_only TO "{green}"')
        conn.execute(f'CREATE TABLE twin_made (id int); ALTER TABLE twin_made OWNER TO "{green}"')
    said: list[str] = []
    twins.setup_twins(admin(server, app), app.identity, said.append)
    report = "\n".join(said)
    assert f"membership in pg_read_all_stats moved to {app.identity}" in report
    assert "SELECT on table audit_only" in report and "UPDATE on column audit_only (secret_note)" in report
    assert "1 object(s) it owned" in report
    with connect(server.target(app.identity)) as conn:
        left = conn.execute(
            "SELECT count(*) FROM pg_shdepend WHERE refobjid = (SELECT oid FROM pg_roles WHERE rolname = %s)",
            (green,),
        ).fetchone()[0]
        assert left == 0, "the twin holds nothing of its own"
        assert conn.execute(
            "SELECT has_table_privilege(%s, 'audit_only', 'SELECT')", (app.identity,)
        ).fetchone()[0]
        assert conn.execute(
            "SELECT has_column_privilege(%s, 'audit_only', 'secret_note', 'UPDATE')", (app.identity,)
        ).fetchone()[0]
        assert (
            conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'twin_made'").fetchone()[0]
            == app.identity
        )
        assert conn.execute(
            "SELECT pg_has_role(%s, 'pg_read_all_stats', 'MEMBER')", (app.identity,)
        ).fetchone()[0]


def test_setup_refuses_a_twin_named_in_a_row_level_security_policy(server, app):
    blue = twins.twin_names(app.identity)[0]
    with connect(server.target(app.identity)) as conn:
        conn.execute(f'CREATE ROLE "{blue}" NOLOGIN')
        conn.execute(f'CREATE POLICY by_blue ON demo TO "{blue}" USING (true)')
    with pytest.raises(twins.TwinError, match=f"{blue} is named in row-level security policies in database"):
        twins.setup_twins(admin(server, app), app.identity, lambda _: None)
    with connect(server.target(app.identity)) as conn:
        assert (
            conn.execute("SELECT count(*) FROM pg_policies WHERE policyname = 'by_blue'").fetchone()[0] == 1
        )


def test_a_twin_works_as_the_application_and_what_it_creates_is_the_groups(server, app):
    twins.setup_twins(admin(server, app), app.identity, lambda _: None)
    blue, green = (Credential(name, generate_secret()) for name in twins.twin_names(app.identity))
    for twin in (blue, green):
        twins.set_password(admin(server, app), twin.identity, twin.secret)
    with connect(as_login(server, app.identity, blue)) as conn:
        assert conn.execute("SELECT session_user, current_user").fetchone() == (blue.identity, app.identity)
        conn.execute("INSERT INTO demo (note) VALUES ('written by blue')")
        assert conn.execute("SELECT count(*) FROM demo").fetchone()[0] == 2
        conn.execute("CREATE TABLE made_by_blue (id int)")
        owner = conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'made_by_blue'").fetchone()[
            0
        ]
        assert owner == app.identity
    with connect(as_login(server, app.identity, green)) as conn:
        conn.execute("ALTER TABLE made_by_blue ADD COLUMN note text")  # the owner's right, through the group
        conn.execute("DROP TABLE made_by_blue")
    # a replication connection (db_base_backup's) logs in as a twin: the attribute was copied
    psql = str(server.binaries.bin_dir / "psql")  # type: ignore[union-attr]
    env = as_login(server, app.identity, blue).client_env()
    env["PGDATABASE"] = "replication"
    result = subprocess.run(
        [psql, "-X", "-At", "-d", "replication=true", "-c", "IDENTIFY_SYSTEM"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    refused = twins.accepts(server.target(app.identity), Credential(blue.identity, "not-its-password"))
    assert not refused and "password authentication failed" in refused.reason
    assert "not-its-password" not in refused.reason


def test_set_password_keeps_the_secret_out_of_the_log_and_pg_stat_statements(server, app):
    twins.setup_twins(admin(server, app), app.identity, lambda _: None)
    blue = twins.twin_names(app.identity)[0]
    secret = generate_secret()
    assert twins.set_password(admin(server, app), blue, secret) is True
    assert twins.set_password(admin(server, app), blue, secret) is False  # resumed: already done
    assert twins.holds_password(admin(server, app), blue, secret)
    assert not twins.holds_password(admin(server, app), blue, secret + "x")
    assert twins.accepts(server.target(app.identity), Credential(blue, secret))
    log = server.log_path.read_text(errors="replace")
    assert f'CREATE ROLE "{blue}" NOLOGIN INHERIT' in log, "the server logs every statement"
    assert secret not in log
    assert (
        f'ALTER ROLE "{blue}" LOGIN PASSWORD' not in log
        and "SCRAM-SHA-256$" not in log.split("before the twins")[-1]
    )
    with connect(server.target(app.identity)) as conn:
        queries = [row[0] for row in conn.execute("SELECT query FROM pg_stat_statements")]
    assert any("CREATE ROLE" in q for q in queries), "pg_stat_statements tracks utility statements"
    assert not [
        q for q in queries if secret in q or (blue in q and ("SCRAM-SHA-256$" in q or " PASSWORD " in q))
    ]


class Pool:
    """A consumer's pooled connection: recycled (new one first) once the credential it reads changes."""

    def __init__(self, server: LocalPgServer, dbname: str) -> None:
        self.server, self.dbname = server, dbname
        self.conn: psycopg.Connection | None = None
        self.credential: Credential | None = None

    def attempt(self, credential: Credential) -> None:
        if credential != self.credential:
            fresh = psycopg.connect(
                autocommit=True, **as_login(self.server, self.dbname, credential).connect_kwargs()
            )
            if self.conn is not None:
                self.conn.close()
            self.conn, self.credential = fresh, credential
        assert self.conn is not None
        self.conn.execute("SELECT count(*) FROM demo").fetchone()

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


def test_two_rotations_under_a_load_of_new_connections_fail_nothing(server, app):
    """Group login -> blue -> green while a consumer opens a new connection every 50 ms with the
    credential it re-reads, and a pool keeps one: zero failures, every old password refused."""
    target = server.target(app.identity)
    adm = admin(server, app)
    holder = CredentialHolder(app)

    def new_connection(credential: Credential) -> None:
        with connect(as_login(server, app.identity, credential)) as conn:
            conn.execute("INSERT INTO demo (note) VALUES ('load')")

    def gone(role: str) -> Callable[[], bool]:
        return lambda: twins.sessions(adm, role) == 0

    pool = Pool(server, app.identity)
    with CredentialLoad(holder, new_connection) as load, CredentialLoad(holder, pool.attempt, 0.3) as pooled:
        wait_for(lambda: load.attempts > 5 and pooled.attempts > 1, 10, "load", interval=0.1)
        previous = app
        state = twins.setup_twins(adm, app.identity, lambda _: None)
        for _ in range(2):
            twin = twins.idle_twin(state)
            new = Credential(twin, generate_secret())
            twins.set_password(adm, twin, new.secret)
            with pytest.raises(twins.TwinError, match="under way"):
                twins.idle_twin(twins.state(adm, app.identity))  # two logins: only the rotation knows
            assert twins.accepts(target, new)
            if previous.identity != app.identity:
                with pytest.raises(twins.TwinError, match="session"):
                    twins.disable(adm, previous.identity)  # the pool is still on it
            time.sleep(0.5)  # the consumers keep using the old one a while: both log in
            holder.switch(new)
            wait_for(gone(previous.identity), 20, f"the end of {previous.identity}'s sessions", interval=0.1)
            if previous.identity == app.identity:
                twins.retire_group_login(adm, app.identity)
            else:
                twins.disable(adm, previous.identity)
                twins.disable(adm, previous.identity)  # resumed after a crash: nothing changes
            wait_for(
                lambda new=new: load.used.get(new.identity, 0) > 5, 10, "logins as the new twin", interval=0.1
            )
            state = twins.state(adm, app.identity)
            assert state.logins == [new.identity]
            refused = twins.accepts(target, previous)
            assert not refused, f"{previous} still logs in"
            previous = new
    pool.close()
    assert load.failures == [] and pooled.failures == []
    blue, green = twins.twin_names(app.identity)
    assert set(load.used) == {app.identity, blue, green}
    assert load.attempts > 30
    assert twins.idle_twin(state) == blue
    with pytest.raises(twins.TwinError, match="only role"):
        twins.disable(adm, green)
    with pytest.raises(twins.TwinError, match=f"{green} logs in with another password"):
        twins.set_password(adm, green, generate_secret())  # never the twin in use
    assert twins.set_password(adm, green, previous.secret) is False  # a resumed step changes nothing


def test_a_twin_acts_as_the_group_so_procedures_that_run_as_production_s_role_find_it(server, app):
    """What ``db_migration`` rehearses as after a rotation: the group, not the twin's own name."""
    from stellar_ops.postgres.target import acting_role

    twins.setup_twins(admin(server, app), app.identity, lambda line: None)
    blue = twins.twin_names(app.identity)[0]
    credential = Credential(blue, generate_secret())
    twins.set_password(admin(server, app), blue, credential.secret)
    assert acting_role(as_login(server, app.identity, credential)) == app.identity
    assert acting_role(as_login(server, app.identity, app)) == app.identity
