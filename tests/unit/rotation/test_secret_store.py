"""The env-file secret store: the rotated secrets' credentials in the API's .env, the rotation's
state beside it, every step idempotent and resumable after a crash."""

from __future__ import annotations

import stat
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from stellar_ops.core.errors import ConfigError
from stellar_ops.registry import parse_config
from stellar_ops.rotation import secret_store
from stellar_ops.rotation.config import SECRETS, SecretEnv
from stellar_ops.rotation.credentials import Credential
from stellar_ops.rotation.keystore import KeyStoreError
from stellar_ops.rotation.secret_store import (
    EnvSecretStore,
    SecretsManagerSecretStore,
    build_secret_store,
    secret_envs,
    with_userinfo,
)

OLD_PG = Credential("stellar_blue", "old-pg-secret")
NEW_PG = Credential("stellar_green", "new-pg-secret")

ENV_TEXT = (
    "# the API's settings\n"
    "API_KEYS=a,b\n"
    "POSTGRES_USER=stellar_blue\n"
    "POSTGRES_PASSWORD=old-pg-secret\n"
    "DATABASE_URL=postgresql://stellar_blue:old-pg-secret@db.internal:5433/stellar?sslmode=verify-full\n"
    "export REDIS_PASSWORD='old-redis'\n"
    "REDIS_USER=stellar\n"
    "REDIS_URL=redis://stellar:old-redis@127.0.0.1:6379/0\n"
    'GRAFANA_ADMIN_PASSWORD="old-grafana"\n'
    "\n"
    "LOG_LEVEL=info\n"
)


def envs() -> dict[str, SecretEnv]:
    return secret_envs(parse_config(None).rotation)


@pytest.fixture
def env_file(tmp_path: Path) -> Path:
    path = tmp_path / "api.env"
    path.write_text(ENV_TEXT)
    path.chmod(0o600)
    return path


@pytest.fixture
def store(env_file: Path) -> EnvSecretStore:
    return EnvSecretStore(env_file, envs())


def lines_other_than(text: str, names: set[str]) -> list[str]:
    return [line for line in text.splitlines() if line.removeprefix("export ").partition("=")[0] not in names]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_secret_envs_names_every_rotated_secret_and_its_variables():
    found = envs()
    assert set(found) == set(SECRETS)
    assert found["POSTGRES_PASSWORD"] == SecretEnv(
        identity="POSTGRES_USER", secret="POSTGRES_PASSWORD", url="DATABASE_URL"
    )
    assert found["GRAFANA_ADMIN_PASSWORD"].identity is None


def test_current_reads_the_login_and_its_secret_and_grafana_is_admin(store, env_file):
    assert store.current("POSTGRES_PASSWORD") == OLD_PG
    assert store.current("REDIS_PASSWORD") == Credential("stellar", "old-redis")  # export, quotes
    assert store.current("GRAFANA_ADMIN_PASSWORD") == Credential("admin", "old-grafana")
    assert store.current("S3_CREDENTIALS") is None  # not in this .env
    assert store.pending("POSTGRES_PASSWORD") is None
    assert store.outgoing("POSTGRES_PASSWORD") is None and store.previous("POSTGRES_PASSWORD") is None

    env_file.write_text("AWS_SECRET_ACCESS_KEY=s3-secret\n")
    with pytest.raises(KeyStoreError, match="has AWS_SECRET_ACCESS_KEY but no AWS_ACCESS_KEY_ID") as info:
        store.current("S3_CREDENTIALS")
    assert "s3-secret" not in str(info.value)
    with pytest.raises(KeyStoreError, match="'API_KEYS' is not a secret of the key store"):
        store.current("API_KEYS")


def test_a_store_needs_the_env_file(tmp_path):
    with pytest.raises(ConfigError, match="is not a file"):
        EnvSecretStore(tmp_path / "missing.env", envs())


def test_a_whole_rotation_switches_the_variables_keeps_the_rest_and_writes_0600(store, env_file):
    store.stage_pending("POSTGRES_PASSWORD", NEW_PG, "POSTGRES_PASSWORD-1")
    assert env_file.read_text() == ENV_TEXT, "staging writes only the sidecar"
    sidecar = env_file.with_name("api.env.secrets.json")
    assert mode(sidecar) == 0o600
    assert "new-pg-secret" not in env_file.read_text()
    assert store.pending("POSTGRES_PASSWORD") == (NEW_PG, "POSTGRES_PASSWORD-1")
    assert store.outgoing("POSTGRES_PASSWORD") is None, "nothing is outgoing before the switch"

    store.switch("POSTGRES_PASSWORD")
    text = env_file.read_text()
    assert mode(env_file) == 0o600
    assert env_file.with_name("api.env.previous").read_text() == ENV_TEXT
    assert "POSTGRES_USER=stellar_green\n" in text and "POSTGRES_PASSWORD=new-pg-secret\n" in text
    assert (
        "DATABASE_URL=postgresql://stellar_green:new-pg-secret@db.internal:5433/stellar?sslmode=verify-full\n"
        in text
    )
    names = {"POSTGRES_USER", "POSTGRES_PASSWORD", "DATABASE_URL"}
    assert lines_other_than(text, names) == lines_other_than(ENV_TEXT, names), "every other line as it was"
    assert [line.partition("=")[0] for line in text.splitlines()] == [
        line.partition("=")[0] for line in ENV_TEXT.splitlines()
    ], "lines keep their order"
    assert store.current("POSTGRES_PASSWORD") == NEW_PG
    assert store.outgoing("POSTGRES_PASSWORD") == OLD_PG
    assert store.pending("POSTGRES_PASSWORD") == (NEW_PG, "POSTGRES_PASSWORD-1"), "pending until finish"

    store.finish("POSTGRES_PASSWORD")
    assert store.pending("POSTGRES_PASSWORD") is None and store.outgoing("POSTGRES_PASSWORD") is None
    assert store.previous("POSTGRES_PASSWORD") == OLD_PG
    assert store.current("POSTGRES_PASSWORD") == NEW_PG
    assert mode(sidecar) == 0o600

    # the next rotation: previous is the one before the last finished rotation
    newest = Credential("stellar_blue", "newest-pg")
    store.stage_pending("POSTGRES_PASSWORD", newest, "POSTGRES_PASSWORD-2")
    store.switch("POSTGRES_PASSWORD")
    assert store.previous("POSTGRES_PASSWORD") == OLD_PG and store.outgoing("POSTGRES_PASSWORD") == NEW_PG
    store.finish("POSTGRES_PASSWORD")
    assert store.previous("POSTGRES_PASSWORD") == NEW_PG and store.current("POSTGRES_PASSWORD") == newest


def test_every_step_is_idempotent(store, env_file):
    first = store.stage_pending("POSTGRES_PASSWORD", NEW_PG, "r1")
    again = store.stage_pending("POSTGRES_PASSWORD", Credential("stellar_green", "another"), "r1")
    assert first == again == NEW_PG, "a re-run of the same rotation keeps the first credential"
    with pytest.raises(KeyStoreError, match="another rotation, r1") as info:
        store.stage_pending("POSTGRES_PASSWORD", Credential("x", "third-secret"), "r2")
    assert "new-pg-secret" not in str(info.value) and "third-secret" not in str(info.value)
    assert NEW_PG.fingerprint in str(info.value)

    store.switch("POSTGRES_PASSWORD")
    switched = env_file.read_text()
    previous_file = env_file.with_name("api.env.previous").read_text()
    store.switch("POSTGRES_PASSWORD")
    assert env_file.read_text() == switched
    assert env_file.with_name("api.env.previous").read_text() == previous_file, "a no-op writes nothing"
    assert store.outgoing("POSTGRES_PASSWORD") == OLD_PG, "a second switch keeps the first outgoing"

    store.unswitch("POSTGRES_PASSWORD")
    assert env_file.read_text() == ENV_TEXT, "switching back restores the very lines"
    store.unswitch("POSTGRES_PASSWORD")
    assert env_file.read_text() == ENV_TEXT
    assert store.pending("POSTGRES_PASSWORD") == (NEW_PG, "r1"), "kept, so a resume can switch again"
    assert store.outgoing("POSTGRES_PASSWORD") is None

    store.switch("POSTGRES_PASSWORD")
    store.finish("POSTGRES_PASSWORD")
    store.finish("POSTGRES_PASSWORD")
    assert store.previous("POSTGRES_PASSWORD") == OLD_PG and store.current("POSTGRES_PASSWORD") == NEW_PG
    store.unswitch("POSTGRES_PASSWORD")  # nothing switched any more: a no-op
    assert store.current("POSTGRES_PASSWORD") == NEW_PG


def test_a_crash_between_the_sidecar_and_the_env_file_resumes_the_same_switch(store, env_file, monkeypatch):
    store.stage_pending("POSTGRES_PASSWORD", NEW_PG, "r1")
    real = secret_store.write_atomically

    def crash_on_the_env_file(path, text, mode=0o600):
        if path == env_file:
            raise OSError("the worker died")
        real(path, text, mode)

    monkeypatch.setattr(secret_store, "write_atomically", crash_on_the_env_file)
    with pytest.raises(OSError, match="died"):
        store.switch("POSTGRES_PASSWORD")
    monkeypatch.setattr(secret_store, "write_atomically", real)
    assert store.current("POSTGRES_PASSWORD") == OLD_PG, "the .env was not written"

    store.switch("POSTGRES_PASSWORD")  # the task cleared: the switch goes on
    assert store.current("POSTGRES_PASSWORD") == NEW_PG
    assert store.outgoing("POSTGRES_PASSWORD") == OLD_PG, "the outgoing one is the one before, not the new"


def test_discard_forgets_the_pending_before_the_switch_and_refuses_after(store, env_file):
    store.discard("REDIS_PASSWORD")  # nothing pending: a no-op
    new = Credential("stellar", "new-redis")
    store.stage_pending("REDIS_PASSWORD", new, "r1")
    store.switch("REDIS_PASSWORD")
    with pytest.raises(KeyStoreError, match="consumers already use it") as info:
        store.discard("REDIS_PASSWORD")
    assert "new-redis" not in str(info.value) and new.fingerprint in str(info.value)
    store.unswitch("REDIS_PASSWORD")
    store.discard("REDIS_PASSWORD")
    assert store.pending("REDIS_PASSWORD") is None
    assert env_file.read_text() == ENV_TEXT
    store.stage_pending("REDIS_PASSWORD", Credential("stellar", "fresh"), "r2")  # free for another rotation
    assert store.pending("REDIS_PASSWORD") == (Credential("stellar", "fresh"), "r2")


def test_finish_before_the_switch_is_refused(store):
    store.stage_pending("GRAFANA_ADMIN_PASSWORD", Credential("admin", "new-grafana"), "g1")
    with pytest.raises(KeyStoreError, match="was not switched"):
        store.finish("GRAFANA_ADMIN_PASSWORD")
    with pytest.raises(KeyStoreError, match="no pending credential"):
        store.switch("S3_CREDENTIALS")


def test_grafana_switches_only_its_password_and_keeps_the_export_of_redis(store, env_file):
    store.stage_pending("GRAFANA_ADMIN_PASSWORD", Credential("admin", "new-grafana"), "g1")
    store.switch("GRAFANA_ADMIN_PASSWORD")
    text = env_file.read_text()
    assert 'GRAFANA_ADMIN_PASSWORD="new-grafana"\n' in text, "in the quotes it had"
    assert store.current("GRAFANA_ADMIN_PASSWORD") == Credential("admin", "new-grafana")
    assert lines_other_than(text, {"GRAFANA_ADMIN_PASSWORD"}) == lines_other_than(
        ENV_TEXT, {"GRAFANA_ADMIN_PASSWORD"}
    )

    store.stage_pending("REDIS_PASSWORD", Credential("stellar", "new-redis"), "r1")
    store.switch("REDIS_PASSWORD")
    text = env_file.read_text()
    assert "export REDIS_PASSWORD='new-redis'\n" in text
    assert "REDIS_URL=redis://stellar:new-redis@127.0.0.1:6379/0\n" in text


def test_variables_missing_from_the_file_are_appended(store, env_file):
    key = Credential("AKIAEXAMPLE", "wJalr/K7MDENG+bPxRfiCY")
    store.stage_pending("S3_CREDENTIALS", key, "s1")
    store.switch("S3_CREDENTIALS")
    text = env_file.read_text()
    assert text.startswith(ENV_TEXT)
    assert text.endswith("AWS_SECRET_ACCESS_KEY=wJalr/K7MDENG+bPxRfiCY\nAWS_ACCESS_KEY_ID=AKIAEXAMPLE\n")
    assert store.current("S3_CREDENTIALS") == key
    assert store.outgoing("S3_CREDENTIALS") is None, "there was none before"
    with pytest.raises(KeyStoreError, match="none to switch back to"):
        store.unswitch("S3_CREDENTIALS")


def test_the_url_gets_the_new_login_url_quoted_and_keeps_everything_else(store, env_file):
    special = Credential("stellar green", "p@ss:w/rd?#% x&y=z")
    store.stage_pending("POSTGRES_PASSWORD", special, "r1")
    store.switch("POSTGRES_PASSWORD")
    assert store.current("POSTGRES_PASSWORD") == special, "the variables themselves are not quoted"
    url = store._values()["DATABASE_URL"]  # noqa: SLF001 - what the API reads
    parts = urlsplit(url)
    assert (
        unquote(parts.username or "") == "stellar green" and unquote(parts.password or "") == special.secret
    )
    assert (parts.scheme, parts.hostname, parts.port, parts.path, parts.query) == (
        "postgresql",
        "db.internal",
        5433,
        "/stellar",
        "sslmode=verify-full",
    )
    # a value the shell or Compose would read otherwise is written in single quotes
    assert "POSTGRES_PASSWORD='p@ss:w/rd?#% x&y=z'\n" in env_file.read_text()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://:old@127.0.0.1:6379/0", "redis://stellar:n%2Fw%40%3A@127.0.0.1:6379/0"),
        ("redis://127.0.0.1:6379", "redis://stellar:n%2Fw%40%3A@127.0.0.1:6379"),
        (
            "postgresql://u:p@[::1]:5432/db?sslmode=require&application_name=api#x",
            "postgresql://stellar:n%2Fw%40%3A@[::1]:5432/db?sslmode=require&application_name=api#x",
        ),
        ("rediss://stellar:old@cache.example/3", "rediss://stellar:n%2Fw%40%3A@cache.example/3"),
    ],
)
def test_with_userinfo_replaces_only_the_login(url, expected):
    assert with_userinfo(url, "stellar", "n/w@:") == expected


def test_with_userinfo_never_echoes_the_url():
    with pytest.raises(KeyStoreError, match="no scheme") as info:
        with_userinfo("stellar:hunter2@db", "u", "p")
    assert "hunter2" not in str(info.value)


def test_a_value_with_a_quote_is_refused_without_showing_it(store, env_file):
    store.stage_pending("REDIS_PASSWORD", Credential("stellar", "it's-secret"), "r1")
    with pytest.raises(KeyStoreError, match="REDIS_PASSWORD cannot be written") as info:
        store.switch("REDIS_PASSWORD")
    assert "it's-secret" not in str(info.value)
    assert env_file.read_text() == ENV_TEXT
    # in the double quotes GRAFANA_ADMIN_PASSWORD has, a single quote is fine
    store.stage_pending("GRAFANA_ADMIN_PASSWORD", Credential("admin", "it's-fine"), "g1")
    store.switch("GRAFANA_ADMIN_PASSWORD")
    assert store.current("GRAFANA_ADMIN_PASSWORD") == Credential("admin", "it's-fine")


def test_no_secret_in_a_repr(store):
    store.stage_pending("POSTGRES_PASSWORD", NEW_PG, "r1")
    shown = " ".join(
        [
            repr(store),
            repr(store.pending("POSTGRES_PASSWORD")),
            str(NEW_PG),
            repr(store.current("POSTGRES_PASSWORD")),
        ]
    )
    assert "new-pg-secret" not in shown and "old-pg-secret" not in shown
    assert NEW_PG.fingerprint in shown


def test_build_secret_store_follows_the_key_store_setting(env_file):
    env_settings = parse_config(None).rotation
    built = build_secret_store(
        env_settings,
        secrets_client=lambda: pytest.fail("no client"),
        env={"STELLAR_API_ENV_FILE": str(env_file)},
    )
    assert isinstance(built, EnvSecretStore) and built.path == env_file
    with pytest.raises(ConfigError, match="STELLAR_API_ENV_FILE"):
        build_secret_store(env_settings, secrets_client=lambda: None, env={})

    sm_settings = parse_config(
        {"rotation": {"key_store": "aws_secrets_manager", "secret_prefix": "p/"}}
    ).rotation
    client = object()
    sm = build_secret_store(sm_settings, secrets_client=lambda: client, env={})
    assert isinstance(sm, SecretsManagerSecretStore) and sm.client is client
    assert sm.secret_id("REDIS_PASSWORD") == "p/REDIS_PASSWORD"
