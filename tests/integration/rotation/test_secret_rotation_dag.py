"""``secret_rotation`` under ``dag.test()`` against real servers: a PostgreSQL with twin login roles,
a Redis with ACL users, the Grafana stand-in, and moto's IAM; the API stand-in reads the key store
(its .env) and restarts through ``/_reload``.

A consumer opens a NEW connection every 50 ms with what the key store holds at that moment (as a
service re-reading its .env) for the whole run: not one may fail. Approvals are answered at once,
as Airflow's UI would. This package's own connections are switched through Airflow's REST API,
which needs an api-server that ``dag.test()`` does not run: here that one boundary is a recorder
(:class:`RecordedConnections`); the real switch is proven in tests/e2e/test_secret_rotation.py.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from stellar_ops.postgres.server import LocalPgServer
from stellar_ops.postgres.target import PgTarget, connect
from stellar_ops.rotation import ledger, progress, twins
from stellar_ops.rotation.credentials import Credential, generate_secret
from stellar_ops.rotation.redis_acl import RedisAclUser
from stellar_ops.rotation.secret_store import EnvSecretStore, secret_envs
from stellar_ops_dev.grafana_stub import GrafanaStub
from tests.support.credential_load import CredentialLoad
from tests.support.dagrun import Outcome, run_dag
from tests.support.fixtures import local_pg_server
from tests.support.rotation_servers import ALLOW_ALL, RedisServer, client, moto_iam

pytestmark = pytest.mark.integration

LEAD = "lead-rotation"


@dataclass
class RecordedConnections:
    """Airflow's connections as the REST API would hold them: what each was switched to."""

    held: dict[str, Credential] = field(default_factory=dict)
    switches: list[tuple[str, str]] = field(default_factory=list)  # (conn id, fingerprint)

    def defined_in_environment(self, conn_ids: list[str]) -> list[str]:
        return []

    def switch(self, conn_id: str, credential: Credential) -> bool:
        if self.holds(conn_id, credential):
            return False
        self.held[conn_id] = credential
        self.switches.append((conn_id, credential.fingerprint))
        return True

    def holds(self, conn_id: str, credential: Credential) -> bool:
        return self.held.get(conn_id) == credential


@dataclass
class Answers:
    """Who answers each approval: approve unless told otherwise; what was asked, in order."""

    reject: set[str] = field(default_factory=set)
    asked: list[str] = field(default_factory=list)


@pytest.fixture
def answers(monkeypatch) -> Answers:
    from stellar_ops.adapters.common.approvals import ANSWER, Approval

    given = Answers()

    # Approvals block under dag.test() (AIRFLOW_NOTES trap 5): answered at once, kept where the UI's are
    def answer(self: Any, context: Any) -> Any:
        given.asked.append(self.task_id)
        chosen = "Reject" if self.task_id in given.reject else "Approve"
        context["ti"].xcom_push(
            key=ANSWER, value={"chosen": chosen, "by": LEAD, "at": datetime.now(UTC).isoformat()}
        )
        if chosen == "Reject":
            from airflow.sdk.exceptions import AirflowSkipException

            raise AirflowSkipException(f"{self.task_id} rejected by {LEAD}")
        return {"chosen_options": [chosen], "params_input": {}}

    monkeypatch.setattr(Approval, "execute", answer)
    return given


@pytest.fixture
def connections(monkeypatch) -> RecordedConnections:
    from stellar_ops.adapters import secret_rotation

    recorded = RecordedConnections()
    monkeypatch.setattr(secret_rotation, "TaskConnections", lambda api_conn_id: recorded)
    return recorded


def set_connection(monkeypatch, conn_id: str, document: dict[str, Any]) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(document))


@pytest.fixture
def secrets_env(rotation, stand_in, monkeypatch, airflow_db):
    """The stand-in's .env as the key store, the DAG's API connection pointed at the stand-in, the
    rotation's records under the test's prefix, no window (the test does not wait for days)."""
    rotation.update(
        rotation={
            "secret_audit_prefix": f"{rotation.prefix}secret-rotation/",
            "secret_transition_hours": 0,
        }
    )
    set_connection(
        monkeypatch,
        "stellar_api",
        {
            "conn_type": "http",
            "host": "127.0.0.1",
            "port": stand_in.port,
            "schema": "http",
            "password": stand_in.api_keys[0],
        },
    )
    return rotation


def add_to_env(path: Path, values: dict[str, str]) -> None:
    path.write_text(path.read_text() + "".join(f"{name}={value}\n" for name, value in values.items()))


def key_store(ops, stand_in) -> EnvSecretStore:
    return EnvSecretStore(stand_in.env_file, secret_envs(ops.config.rotation))


class StoreHolder:
    """The consumer's credential: what the key store serves at this moment."""

    def __init__(self, store: EnvSecretStore, secret: str) -> None:
        self.store, self.secret = store, secret

    def get(self) -> Credential:
        found = self.store.current(self.secret)
        assert found is not None
        return found


def rotate(secret: str, **conf: Any) -> Outcome:
    return run_dag("secret_rotation", conf={"secret": secret, **conf})


def progress_of(ops, secret: str) -> progress.Progress:
    found = progress.load(ops.store(), f"{ops.prefix}secret-rotation/", secret)
    assert found is not None
    return found


def ledger_entry(ops, secret: str) -> dict[str, Any] | None:
    return ledger.last_rotation(ledger.load(ops.store(), f"{ops.prefix}secrets-ledger.json"), secret)


# -- PostgreSQL ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pg() -> Iterator[LocalPgServer]:
    with local_pg_server({"max_connections": "60"}) as server:
        yield server


@dataclass
class PgApp:
    server: LocalPgServer
    role: str
    login: Credential

    def target(self, credential: Credential) -> PgTarget:
        return replace(self.server.target(self.role), user=credential.identity, password=credential.secret)


@pytest.fixture
def pg_app(pg, secrets_env, stand_in, monkeypatch) -> PgApp:
    """An application role owning its database, its twins set up, in the key store and connections."""
    role = f"app_{uuid.uuid4().hex[:8]}"
    secret = generate_secret()
    with connect(pg.target()) as conn:
        verifier = conn.pgconn.encrypt_password(secret.encode(), role.encode(), b"scram-sha-256").decode()
        conn.execute(f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{verifier}'")
        conn.execute(f'CREATE DATABASE "{role}" OWNER "{role}"')
    app = PgApp(pg, role, Credential(role, secret))
    with connect(app.target(app.login)) as conn:
        conn.execute("CREATE TABLE trades (id serial PRIMARY KEY, note text)")
    twins.setup_twins(pg.target(role), role, lambda line: None)
    admin = pg.target("postgres")
    set_connection(
        monkeypatch,
        "sr_pg_admin",
        {
            "conn_type": "postgres",
            "host": admin.host,
            "port": admin.port,
            "login": admin.user,
            "password": admin.password,
            "schema": "postgres",
        },
    )
    set_connection(
        monkeypatch,
        "sr_app_db",
        {
            "conn_type": "postgres",
            "host": admin.host,
            "port": admin.port,
            "login": role,
            "password": secret,
            "schema": role,
        },
    )
    secrets_env.update(
        rotation={
            "postgres": {
                "admin_conn_id": "sr_pg_admin",
                "app_role": role,
                "connections": ["sr_app_db"],
                "drain_seconds": 30,
            }
        }
    )
    add_to_env(
        stand_in.env_file,
        {
            "POSTGRES_USER": role,
            "POSTGRES_PASSWORD": secret,
            "DATABASE_URL": f"postgresql://{role}:{secret}@{admin.host}:{admin.port}/{role}",
        },
    )
    return app


def pg_attempt(app: PgApp) -> Callable[[Credential], None]:
    def attempt(credential: Credential) -> None:
        with connect(app.target(credential)) as conn:
            conn.execute("INSERT INTO trades (note) VALUES ('load')")

    return attempt


def test_the_database_password_rotates_through_the_twins_with_no_failed_login(
    pg_app, secrets_env, stand_in, connections, answers, tmp_path
):
    # the CLI's exports: its DATABASE_URL is switched with the connections
    cli_env = tmp_path / "stellar-ops.env"
    url = f"postgresql://{pg_app.role}:{pg_app.login.secret}@127.0.0.1:{pg_app.server.target().port}/{pg_app.role}"
    cli_env.write_text(f"# the CLI's environment\nexport DATABASE_URL='{url}'\nexport LOG_LEVEL=info\n")
    secrets_env.update(rotation={"cli_env_file": str(cli_env)})
    store = key_store(secrets_env, stand_in)
    connections.held["sr_app_db"] = pg_app.login
    blue, green = twins.twin_names(pg_app.role)
    with CredentialLoad(StoreHolder(store, "POSTGRES_PASSWORD"), pg_attempt(pg_app)) as load:
        first = rotate("POSTGRES_PASSWORD")
        assert first.state == "success", first.tasks
        after_first = store.current("POSTGRES_PASSWORD")
        second = rotate("POSTGRES_PASSWORD")
        assert second.state == "success", second.tasks
    assert load.failures == [], load.failures[:5]
    assert load.attempts > 40
    # the group's own login, then blue, then green: each consumer moved with no refused login
    assert set(load.used) == {pg_app.role, blue, green}, load.used
    assert after_first is not None and after_first.identity == blue
    final = store.current("POSTGRES_PASSWORD")
    assert final is not None and final.identity == green
    assert not twins.accepts(pg_app.target(pg_app.login), pg_app.login), "the group's login is retired"
    assert not twins.accepts(pg_app.target(after_first), after_first), "blue is disabled"
    assert twins.accepts(pg_app.target(final), final)
    state = twins.state(pg_app.server.target("postgres"), pg_app.role)
    assert state.logins == [green]
    assert connections.held["sr_app_db"] == final
    assert f"postgresql://{green}:" in stand_in.env_file.read_text()
    exported = cli_env.read_text()
    assert f"export DATABASE_URL='postgresql://{green}:{final.secret}@" in exported, (
        "the CLI's URL is switched"
    )
    assert "export LOG_LEVEL=info" in exported and "POSTGRES_PASSWORD" not in exported
    assert answers.asked == ["approve_rollout", "approve_removal"] * 2
    record = progress_of(secrets_env, "POSTGRES_PASSWORD")
    assert record.phase == "finished" and record.new == {"identity": green, "fingerprint": final.fingerprint}
    entry = ledger_entry(secrets_env, "POSTGRES_PASSWORD")
    assert entry is not None and entry["by"] == LEAD and record.rotation_id in entry["how"]
    audit = second.xcom("record_audit")
    assert audit["outcome"] == "rotated"
    document = secrets_env.store().get_json(audit["key"])
    assert final.secret not in json.dumps(document) and after_first.secret not in json.dumps(document)


@pytest.mark.parametrize("step", ["generate", "add", "switch", "test", "remove", "verify", "finish"])
def test_a_crash_after_any_step_resumes_with_the_same_secret(
    step, pg_app, secrets_env, stand_in, connections, answers, monkeypatch
):
    """The worker dies right after the step did its work, before Airflow heard of it; the retry
    (as a cleared task) finds the work done and goes on with the same credential."""
    from stellar_ops.rotation import secret_flow

    real = getattr(secret_flow, step)
    crashed: list[str] = []

    def crash_once(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        if not crashed:
            crashed.append(step)
            raise SystemExit(f"the worker died after {step}")
        return result

    monkeypatch.setattr(secret_flow, step, crash_once)
    store = key_store(secrets_env, stand_in)
    connections.held["sr_app_db"] = pg_app.login
    with CredentialLoad(StoreHolder(store, "POSTGRES_PASSWORD"), pg_attempt(pg_app)) as load:
        outcome = rotate("POSTGRES_PASSWORD")
    assert crashed == [step]
    assert outcome.state == "success", outcome.tasks
    assert load.failures == [], load.failures[:5]
    generated = progress_of(secrets_env, "POSTGRES_PASSWORD").new
    final = store.current("POSTGRES_PASSWORD")
    assert final is not None and generated == {"identity": final.identity, "fingerprint": final.fingerprint}
    assert twins.state(pg_app.server.target("postgres"), pg_app.role).logins == [final.identity]


def test_a_connection_still_on_the_old_password_stops_the_removal_with_both_valid(
    pg_app, secrets_env, stand_in, connections, answers, monkeypatch
):
    store = key_store(secrets_env, stand_in)
    connections.held["sr_app_db"] = pg_app.login
    # a connection switch that never reaches Airflow: the connection keeps the old login
    monkeypatch.setattr(RecordedConnections, "switch", lambda self, conn_id, credential: False)
    outcome = rotate("POSTGRES_PASSWORD")
    assert outcome.state == "failed"
    assert outcome.tasks["test_new_secret"] == "failed", outcome.tasks
    assert outcome.tasks["remove_old_secret"] == "upstream_failed"
    # rolled back: the key store serves the old login again, and it logs in
    current = store.current("POSTGRES_PASSWORD")
    assert current == pg_app.login
    assert twins.accepts(pg_app.target(pg_app.login), pg_app.login)
    assert ledger_entry(secrets_env, "POSTGRES_PASSWORD") is None


# -- Redis -----------------------------------------------------------------------------------------


@pytest.fixture
def redis_app(tmp_path, secrets_env, stand_in, monkeypatch) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    set_connection(
        monkeypatch,
        "sr_redis_admin",
        {
            "conn_type": "redis",
            "host": "127.0.0.1",
            "port": server.port,
            "login": server.admin.identity,
            "password": server.admin.secret,
        },
    )
    secrets_env.update(
        rotation={
            "redis": {"admin_conn_id": "sr_redis_admin", "user": "stellar", "connections": ["sr_redis"]}
        }
    )
    add_to_env(
        stand_in.env_file,
        {
            "REDIS_USER": "stellar",
            "REDIS_PASSWORD": server.app.secret,
            "REDIS_URL": f"redis://stellar:{server.app.secret}@127.0.0.1:{server.port}/0",
        },
    )
    try:
        yield server
    finally:
        server.stop()


def redis_attempt(server: RedisServer) -> Callable[[Credential], None]:
    def attempt(credential: Credential) -> None:
        with server.target(credential).client(timeout=2) as redis_client:
            redis_client.set("load", "1")

    return attempt


def test_the_redis_password_rotates_with_no_failed_auth_and_the_old_one_is_refused(
    redis_app, secrets_env, stand_in, connections, answers, receiver
):
    store = key_store(secrets_env, stand_in)
    connections.held["sr_redis"] = redis_app.app
    with CredentialLoad(StoreHolder(store, "REDIS_PASSWORD"), redis_attempt(redis_app)) as load:
        outcome = rotate("REDIS_PASSWORD")
    assert outcome.state == "success", outcome.tasks
    assert load.failures == [], load.failures[:5]
    new = store.current("REDIS_PASSWORD")
    assert new is not None and new.secret != redis_app.app.secret
    acl = RedisAclUser(redis_app.target(), "stellar")
    assert acl.accepts(new) and not acl.accepts(redis_app.app)
    assert acl.passwords() == [new.fingerprint]
    # persisted: a restart of Redis keeps the new password (CONFIG REWRITE of its config file)
    redis_app.stop()
    redis_app.start()
    assert acl.accepts(new) and not acl.accepts(redis_app.app)
    assert connections.held["sr_redis"] == new
    assert f"redis://stellar:{new.secret}@" in stand_in.env_file.read_text()
    texts = "\n".join(receiver.texts())
    assert "REDIS_PASSWORD rotated" in texts and new.secret not in texts and redis_app.app.secret not in texts


def test_a_rejected_removal_leaves_both_passwords_valid_and_the_ledger_unchanged(
    redis_app, secrets_env, stand_in, connections, answers
):
    answers.reject.add("approve_removal")
    store = key_store(secrets_env, stand_in)
    connections.held["sr_redis"] = redis_app.app
    outcome = rotate("REDIS_PASSWORD")
    assert outcome.state == "success", outcome.tasks  # a rejection is an answer, not a failure
    assert outcome.tasks["remove_old_secret"] == "skipped"
    new = store.current("REDIS_PASSWORD")
    acl = RedisAclUser(redis_app.target(), "stellar")
    assert new is not None and acl.accepts(new) and acl.accepts(redis_app.app)
    assert ledger_entry(secrets_env, "REDIS_PASSWORD") is None
    record = progress_of(secrets_env, "REDIS_PASSWORD")
    assert record.phase == "switched" and record.open
    assert outcome.xcom("record_audit")["outcome"] == "stopped: approve_removal rejected"
    # a new rotation of the same secret is refused while this one is open
    again = rotate("REDIS_PASSWORD")
    assert again.state == "failed" and again.tasks["check_rotation_due"] == "failed"


def test_a_rejected_rollout_changes_nothing(redis_app, secrets_env, stand_in, connections, answers):
    answers.reject.add("approve_rollout")
    before = stand_in.env_file.read_text()
    outcome = rotate("REDIS_PASSWORD")
    assert outcome.state == "success", outcome.tasks
    assert stand_in.env_file.read_text() == before
    assert key_store(secrets_env, stand_in).pending("REDIS_PASSWORD") is None
    assert RedisAclUser(redis_app.target(), "stellar").passwords() == [redis_app.app.fingerprint]
    assert progress_of(secrets_env, "REDIS_PASSWORD").phase == "discarded"


# -- Grafana and S3 --------------------------------------------------------------------------------


def test_grafanas_admin_password_changes_through_its_api_and_the_connection_follows(
    secrets_env, stand_in, connections, answers, monkeypatch
):
    import requests

    old = generate_secret()
    stub = GrafanaStub(old)
    try:
        set_connection(
            monkeypatch,
            "sr_grafana",
            {
                "conn_type": "http",
                "host": "127.0.0.1",
                "port": stub.server.server_address[1],
                "schema": "http",
                "login": "admin",
                "password": old,
            },
        )
        secrets_env.update(rotation={"grafana": {"conn_id": "sr_grafana"}})
        add_to_env(stand_in.env_file, {"GRAFANA_ADMIN_PASSWORD": old})
        connections.held["sr_grafana"] = Credential("admin", old)
        outcome = rotate("GRAFANA_ADMIN_PASSWORD")
        assert outcome.state == "success", outcome.tasks
        new = key_store(secrets_env, stand_in).current("GRAFANA_ADMIN_PASSWORD")
        assert new is not None and new.secret != old
        assert connections.held["sr_grafana"] == new
        calls = requests.get(stub.url + "/_calls", timeout=5).json()
        assert any(call["method"] == "PUT" and "/password" in call["path"] for call in calls), calls
        assert requests.get(stub.url + "/api/user", auth=("admin", new.secret), timeout=5).status_code == 200
        assert requests.get(stub.url + "/api/user", auth=("admin", old), timeout=5).status_code == 401
    finally:
        stub.stop()


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    with moto_iam(tmp_path_factory.mktemp("moto")) as started:
        yield started


def test_s3_keys_rotate_through_iam_and_the_old_key_is_deleted(
    moto, secrets_env, stand_in, connections, answers, monkeypatch
):
    url, admin = moto
    iam = client("iam", url, admin)
    user = f"backups-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=user)
    iam.put_user_policy(UserName=user, PolicyName="all", PolicyDocument=ALLOW_ALL)
    made = iam.create_access_key(UserName=user)["AccessKey"]
    old = Credential(made["AccessKeyId"], made["SecretAccessKey"])
    set_connection(
        monkeypatch,
        "sr_iam",
        {
            "conn_type": "aws",
            "login": admin.identity,
            "password": admin.secret,
            "extra": {"endpoint_url": url, "region_name": "us-east-1"},
        },
    )
    secrets_env.update(rotation={"s3": {"iam_conn_id": "sr_iam", "user": user, "connections": ["sr_s3"]}})
    add_to_env(stand_in.env_file, {"AWS_ACCESS_KEY_ID": old.identity, "AWS_SECRET_ACCESS_KEY": old.secret})
    connections.held["sr_s3"] = old
    client("s3", url, old).create_bucket(Bucket=user)
    counter = iter(range(10**9))

    def s3_attempt(credential: Credential) -> None:
        n = next(counter)
        s3 = client("s3", url, credential)
        s3.put_object(Bucket=user, Key=f"load/{n}", Body=str(n).encode())
        assert s3.get_object(Bucket=user, Key=f"load/{n}")["Body"].read() == str(n).encode()

    store = key_store(secrets_env, stand_in)
    with CredentialLoad(StoreHolder(store, "S3_CREDENTIALS"), s3_attempt) as load:
        outcome = rotate("S3_CREDENTIALS")
    assert outcome.state == "success", outcome.tasks
    assert load.failures == [], load.failures[:5]
    new = store.current("S3_CREDENTIALS")
    assert new is not None and set(load.used) == {old.identity, new.identity}, load.used
    assert new is not None and new.identity != old.identity
    keys = [k["AccessKeyId"] for k in iam.list_access_keys(UserName=user)["AccessKeyMetadata"]]
    assert keys == [new.identity]
    assert client("sts", url, new).get_caller_identity()["Arn"].endswith(f"/{user}")
    assert connections.held["sr_s3"] == new


# -- which secret, and what cannot rotate -----------------------------------------------------------


def test_the_scheduled_choice_is_the_most_overdue_secret_that_can_rotate_here(
    redis_app, secrets_env, stand_in, connections, answers
):
    store = secrets_env.store()
    key = f"{secrets_env.prefix}secrets-ledger.json"
    now = datetime.now(UTC)
    for fresh in ("POSTGRES_PASSWORD", "GRAFANA_ADMIN_PASSWORD"):
        ledger.record(store, key, fresh, at=now, by="test", how="by hand")
    # S3_CREDENTIALS was never rotated, so it is the most overdue; but no IAM connection is defined
    connections.held["sr_redis"] = redis_app.app
    outcome = run_dag("secret_rotation")  # the form's defaults: secret auto
    assert outcome.state == "success", outcome.tasks
    assert outcome.xcom("check_rotation_due")["secret"] == "REDIS_PASSWORD"
    assert ledger_entry(secrets_env, "REDIS_PASSWORD") is not None


def test_a_secret_that_cannot_rotate_here_is_refused_by_name_before_anything_changes(
    pg_app, secrets_env, stand_in, connections, answers
):
    s3 = rotate("S3_CREDENTIALS")
    assert s3.state == "failed" and s3.tasks["check_rotation_due"] == "failed", s3.tasks
    assert answers.asked == []
    secrets_env.update(rotation={"postgres": {"app_role": "stellar_nobody"}})
    before = stand_in.env_file.read_text()
    pg = rotate("POSTGRES_PASSWORD")
    assert pg.state == "failed" and pg.tasks["check_rotation_due"] == "failed", pg.tasks
    assert stand_in.env_file.read_text() == before
    assert answers.asked == []
