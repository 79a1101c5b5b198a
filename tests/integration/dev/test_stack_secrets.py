"""What the local stack gives secret_rotation, for real: Redis's ACL users (the application's
``stellar`` and the admin ``stellar_admin``) in an aclfile that ``ACL SAVE`` persists across a
restart, the Grafana stand-in with the stack's admin password, and the logins of the API's env
file, each through the connection Airflow reads."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests

from stellar_ops.cli.env import redis_target
from stellar_ops.core.processes import pid_alive
from stellar_ops.postgres.target import PgTarget, connect
from stellar_ops.rotation.credentials import Credential, generate_secret
from stellar_ops.rotation.grafana import GrafanaAdmin
from stellar_ops.rotation.keys import fingerprint
from stellar_ops.rotation.redis_acl import RedisAclUser

pytestmark = pytest.mark.integration


def api_env(stack) -> dict[str, str]:
    return dict(line.split("=", 1) for line in stack.api_env_file.read_text().splitlines() if "=" in line)


@pytest.fixture
def restored_redis_acl(stack_handle, stack) -> Iterator[None]:
    """The stack's ACL as it started, whatever the test did to it (in memory and saved)."""
    yield
    digest = hashlib.sha256(stack.redis_password.encode()).hexdigest()
    with stack.redis_admin.client(timeout=5) as admin:
        admin.execute_command("ACL", "SETUSER", "stellar", "resetpass", f"#{digest}")
        admin.execute_command("ACL", "SAVE")


def test_redis_has_the_application_and_admin_acl_users(stack):
    with stack.redis_admin.client(timeout=5) as admin:
        users = {line.split()[1]: line for line in admin.acl_list()}
        # the stack's users, and none other that can log in (a test may leave its own user off)
        enabled = {name for name, line in users.items() if " on " in f"{line} "}
        assert enabled == {"default", "stellar", "stellar_admin"}, users
        assert admin.config_get("aclfile")["aclfile"] == str(Path(stack.data_dir) / "redis" / "users.acl")
        assert admin.acl_getuser("stellar")["passwords"] == [
            hashlib.sha256(stack.redis_password.encode()).hexdigest()
        ]
        # the admin may change passwords, and nothing else
        with pytest.raises(redis.exceptions.NoPermissionError):
            admin.set("stellar-ops:admin-probe", "1")
        with pytest.raises(redis.exceptions.NoPermissionError):
            admin.flushall()
    # the application's user logs in and runs commands
    with stack.redis.client(timeout=5) as app:
        assert app.acl_whoami() == "stellar"
        assert app.set("stellar-ops:probe", "42", ex=60) and app.get("stellar-ops:probe") == b"42"
        assert "keyspace_hits" in app.info("stats")
        app.delete("stellar-ops:probe")
    wrong = Credential("stellar", "not-" + stack.redis_password)
    user = RedisAclUser(stack.redis_admin, "stellar")
    assert user.accepts(Credential("stellar", stack.redis_password)) and not user.accepts(wrong)
    # the default user is as it was: Celery's broker and the plain PING probe use it
    with redis.Redis(host="127.0.0.1", port=stack.ports["redis"], socket_timeout=5) as default:
        assert default.ping() and default.acl_whoami() == "default"
    # the aclfile holds the passwords' hashes only
    acl = (Path(stack.data_dir) / "redis" / "users.acl").read_text()
    assert stack.redis_password not in acl and stack.redis_admin_password not in acl


def test_acl_save_keeps_a_second_password_across_a_restart(stack_handle, stack, restored_redis_acl):
    user = RedisAclUser(stack.redis_admin, "stellar")
    old, new = Credential("stellar", stack.redis_password), Credential("stellar", generate_secret())
    assert user.add_password(new.secret) is True
    assert user.persist() is True  # ACL SAVE into the aclfile
    acl = Path(stack.data_dir) / "redis" / "users.acl"
    assert hashlib.sha256(new.secret.encode()).hexdigest() in acl.read_text()
    assert new.secret not in acl.read_text()
    pid = stack.pids["redis"]
    stack_handle.restart_redis()
    assert stack.pids["redis"] != pid and not pid_alive(pid)
    assert user.accepts(new) and user.accepts(old), "both passwords came back from the aclfile"
    assert user.passwords() == [fingerprint(old.secret), fingerprint(new.secret)]
    # and a removal saved is gone after the next restart
    assert user.remove_password(new.secret) is True and user.persist()
    stack_handle.restart_redis()
    assert user.accepts(old) and not user.accepts(new)


def test_airflow_connections_log_in_to_redis_as_their_users(stack):
    from airflow.providers.redis.hooks.redis import RedisHook

    from stellar_ops.adapters.common.connections import AirflowResources
    from stellar_ops.registry import parse_config

    app = RedisHook(redis_conn_id="stellar_redis").get_conn()
    assert app.acl_whoami() == "stellar"
    admin = RedisHook(redis_conn_id="stellar_redis_admin").get_conn()
    assert admin.acl_whoami() == "stellar_admin"
    # what the health check and perf read (connections.redis)
    target = AirflowResources(parse_config(None)).redis()
    assert target is not None and target.username == "stellar"
    with target.client(timeout=5) as client:
        assert client.ping()


def test_the_grafana_stand_in_answers_to_the_stacks_admin_password(stack):
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection("grafana")
    url = f"{conn.schema}://{conn.host}:{conn.port}"
    assert url == stack.url("grafana") and conn.login == "admin"
    assert conn.password == stack.grafana_admin_password
    assert stack.pids["grafana"] and pid_alive(stack.pids["grafana"])
    health = requests.get(url + "/api/health", timeout=5).json()
    assert health["database"] == "ok"
    grafana = GrafanaAdmin(url, conn.login)
    requests.delete(url + "/_calls", timeout=5)
    assert grafana.logs_in(stack.grafana_admin_password) is True
    assert grafana.logs_in("not-" + stack.grafana_admin_password) is False
    assert grafana.user_id(stack.grafana_admin_password) == 1
    calls = requests.get(url + "/_calls", timeout=5).json()
    assert [(c["path"], c["auth_fingerprint"], c["status"]) for c in calls] == [
        ("/api/user", fingerprint(stack.grafana_admin_password), 200),
        ("/api/user", fingerprint("not-" + stack.grafana_admin_password), 401),
        ("/api/users/lookup?loginOrEmail=admin", fingerprint(stack.grafana_admin_password), 200),
    ]
    requests.delete(url + "/_calls", timeout=5)


def test_the_api_env_file_logs_in_everywhere_it_names(stack):
    values = api_env(stack)
    assert values["API_KEYS"] == stack.api_key and values["ADMIN_KEYS"] == stack.admin_key
    assert values["POSTGRES_USER"] == "stellar" and values["POSTGRES_PASSWORD"] == stack.db_password
    with connect(PgTarget.from_url(values["DATABASE_URL"])) as conn:
        assert conn.execute("SELECT current_user, current_database()").fetchone() == (
            "stellar",
            "stellar_escrow",
        )
    assert values["REDIS_USER"] == "stellar" and values["REDIS_PASSWORD"] == stack.redis_password
    with redis_target(values["REDIS_URL"]).client(timeout=5) as client:
        assert client.acl_whoami() == "stellar"
    assert GrafanaAdmin(stack.url("grafana")).logs_in(values["GRAFANA_ADMIN_PASSWORD"])
    requests.delete(stack.url("grafana") + "/_calls", timeout=5)
