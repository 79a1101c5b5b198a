"""What the local stack hands out for secret_rotation, without starting it: the connections of
Redis and Grafana agree between the stack's exports and airflow_settings.yaml, the API's env file
holds every rotated login, and no password reaches a repr or the Redis aclfile."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from urllib.parse import urlsplit

from stellar_ops.cli.env import redis_target
from stellar_ops.postgres.target import PgTarget
from stellar_ops.rotation.config import RotationConfig
from stellar_ops_dev.airflow_settings import load
from stellar_ops_dev.stack import PREFERRED_PORTS, StackInfo, redis_acl

REPO_SETTINGS = Path(__file__).resolve().parents[3] / "airflow_settings.yaml"


def info(tmp_path: Path) -> StackInfo:
    return StackInfo(
        state_dir=str(tmp_path / "state"),
        data_dir=str(tmp_path / "data"),
        ports={name: 40000 + n for n, name in enumerate(PREFERRED_PORTS)},
        db_password="db-pw_1",
        api_key="sk_live_a",
        admin_key="sk_admin_b",
        redis_password="redis-pw_2",
        redis_admin_password="redis-admin-pw_3",
        grafana_admin_password="grafana-pw_4",
    )


def test_the_settings_file_gives_airflow_the_stacks_redis_and_grafana_connections(tmp_path):
    stack = info(tmp_path)
    names = set(re.findall(r"\$\{([A-Z0-9_]+)\}", REPO_SETTINGS.read_text()))
    env = {**{name: "1" for name in names}, **stack.env()}  # another helper's variables: any value
    from_file = load(REPO_SETTINGS, env)["connections"]
    ours = stack.airflow_connections()
    for conn_id in ("stellar_redis", "stellar_redis_admin", "grafana"):
        assert from_file[conn_id] == ours[conn_id], conn_id
        assert json.loads(stack.env()[f"AIRFLOW_CONN_{conn_id.upper()}"]) == ours[conn_id]
    assert ours["stellar_redis"]["login"] == "stellar" and ours["stellar_redis"]["password"] == "redis-pw_2"
    assert ours["stellar_redis_admin"]["login"] == "stellar_admin"
    assert ours["grafana"] == {
        "conn_type": "http",
        "host": "127.0.0.1",
        "port": stack.ports["grafana"],
        "schema": "http",
        "login": "admin",
        "password": "grafana-pw_4",
    }
    # the rotation's config names these connections
    rotation = RotationConfig()
    assert rotation.redis.admin_conn_id in ours and rotation.redis.connections == ["stellar_redis"]
    assert rotation.grafana.conn_id in ours


def test_the_api_env_file_holds_every_rotated_login_under_the_configured_names(tmp_path):
    stack = info(tmp_path)
    lines = dict(line.split("=", 1) for line in stack.api_env().splitlines())
    rotation = RotationConfig()
    pg, redis, grafana = rotation.postgres.env, rotation.redis.env, rotation.grafana.env
    assert lines["API_KEYS"] == "sk_live_a" and lines["ADMIN_KEYS"] == "sk_admin_b"
    assert lines[pg.identity] == "stellar" and lines[pg.secret] == "db-pw_1"
    database = PgTarget.from_url(lines[pg.url])
    assert (database.user, database.password, database.port, database.dbname) == (
        "stellar",
        "db-pw_1",
        stack.ports["postgres"],
        "stellar_escrow",
    )
    assert lines[redis.identity] == "stellar" and lines[redis.secret] == "redis-pw_2"
    target = redis_target(lines[redis.url])
    assert (target.username, target.password, target.port) == ("stellar", "redis-pw_2", stack.ports["redis"])
    assert lines[grafana.secret] == "grafana-pw_4"
    # the CLI's exports log in as the same users
    assert urlsplit(stack.env()["REDIS_URL"]).username == "stellar"
    assert stack.env()["DATABASE_URL"] == lines["DATABASE_URL"]


def test_no_password_in_a_repr_or_the_aclfile(tmp_path):
    stack = info(tmp_path)
    shown = repr(stack) + repr(stack.redis) + repr(stack.redis_admin)
    for secret in ("redis-pw_2", "redis-admin-pw_3", "grafana-pw_4", "db-pw_1"):
        assert secret not in shown
    acl = redis_acl("redis-pw_2", "redis-admin-pw_3")
    assert "redis-pw_2" not in acl and "redis-admin-pw_3" not in acl
    assert f"user stellar on #{hashlib.sha256(b'redis-pw_2').hexdigest()} " in acl
    assert "user default on nopass" in acl
