"""The secret store for real: Secrets Manager (moto's server) moving its staging labels through a
rotation, and the .env's switched URLs logging in to the stack's PostgreSQL and Redis with
passwords full of URL-special characters."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from stellar_ops.registry import parse_config
from stellar_ops.rotation.credentials import Credential
from stellar_ops.rotation.keystore import KeyStoreError
from stellar_ops.rotation.secret_store import EnvSecretStore, SecretsManagerSecretStore, secret_envs
from tests.support.rotation_servers import running_moto, secrets_client

pytestmark = pytest.mark.integration

ENVS = secret_envs(parse_config(None).rotation)
OLD = Credential("stellar_blue", "old-secret")
NEW = Credential("stellar_green", "new-secret")
NEWER = Credential("stellar_blue", "newer-secret")


@pytest.fixture(scope="module")
def secrets_manager(tmp_path_factory):
    with running_moto(tmp_path_factory.mktemp("moto")) as url:
        yield url


@pytest.fixture
def sm(secrets_manager, request):
    """A client, and a prefix of the test's own."""
    prefix = f"{request.node.name[:40]}-{os.getpid()}/"
    return secrets_client(secrets_manager), prefix


def postgres_document(credential: Credential) -> dict[str, str]:
    return {
        "POSTGRES_USER": credential.identity,
        "POSTGRES_PASSWORD": credential.secret,
        "DATABASE_URL": f"postgresql://{credential.identity}:{credential.secret}@db.internal:5432/stellar?sslmode=require",
        "LOG_LEVEL": "info",
    }


def staged(sm_client, secret_id: str) -> dict[str, dict]:
    """The document of each staging label."""
    found = {}
    for version in sm_client.list_secret_version_ids(SecretId=secret_id)["Versions"]:
        document = json.loads(
            sm_client.get_secret_value(SecretId=secret_id, VersionId=version["VersionId"])["SecretString"]
        )
        for stage in version.get("VersionStages", []):
            found[stage] = document
    return found


def test_a_rotation_moves_the_staging_labels_and_keeps_every_other_variable(sm):
    sm_client, prefix = sm
    secret_id = prefix + "POSTGRES_PASSWORD"
    sm_client.create_secret(Name=secret_id, SecretString=json.dumps(postgres_document(OLD)))
    store = SecretsManagerSecretStore(sm_client, prefix, ENVS)
    assert store.current("POSTGRES_PASSWORD") == OLD and store.pending("POSTGRES_PASSWORD") is None

    assert store.stage_pending("POSTGRES_PASSWORD", NEW, "POSTGRES_PASSWORD-r1") == NEW
    versions = len(sm_client.list_secret_version_ids(SecretId=secret_id)["Versions"])
    # a re-run of the step keeps the first credential and puts no new version
    assert store.stage_pending("POSTGRES_PASSWORD", Credential("x", "another"), "POSTGRES_PASSWORD-r1") == NEW
    assert len(sm_client.list_secret_version_ids(SecretId=secret_id)["Versions"]) == versions
    with pytest.raises(KeyStoreError, match="another rotation, POSTGRES_PASSWORD-r1") as info:
        store.stage_pending("POSTGRES_PASSWORD", Credential("x", "third"), "POSTGRES_PASSWORD-r2")
    assert "new-secret" not in str(info.value) and NEW.fingerprint in str(info.value)

    labels = staged(sm_client, secret_id)
    pending = labels["AWSPENDING"]
    assert pending["POSTGRES_USER"] == "stellar_green" and pending["POSTGRES_PASSWORD"] == "new-secret"
    assert (
        pending["DATABASE_URL"]
        == "postgresql://stellar_green:new-secret@db.internal:5432/stellar?sslmode=require"
    )
    assert pending["LOG_LEVEL"] == "info", "the other variables of the secret are carried over"
    assert pending["_rotation"]["rotation_id"] == "POSTGRES_PASSWORD-r1"
    assert labels["AWSCURRENT"] == postgres_document(OLD), "staging changes nothing the consumers read"
    assert store.current("POSTGRES_PASSWORD") == OLD and store.outgoing("POSTGRES_PASSWORD") is None

    store.switch("POSTGRES_PASSWORD")
    store.switch("POSTGRES_PASSWORD")
    labels = staged(sm_client, secret_id)
    assert labels["AWSCURRENT"]["POSTGRES_PASSWORD"] == "new-secret"
    assert labels["AWSPREVIOUS"] == postgres_document(OLD), "Secrets Manager moved AWSPREVIOUS by itself"
    assert store.current("POSTGRES_PASSWORD") == NEW and store.outgoing("POSTGRES_PASSWORD") == OLD
    assert store.pending("POSTGRES_PASSWORD") == (NEW, "POSTGRES_PASSWORD-r1")
    assert store.previous("POSTGRES_PASSWORD") is None, "no rotation finished before this one"

    store.finish("POSTGRES_PASSWORD")
    store.finish("POSTGRES_PASSWORD")
    labels = staged(sm_client, secret_id)
    assert "AWSPENDING" not in labels and labels["AWSPREVIOUS"] == postgres_document(OLD)
    assert store.current("POSTGRES_PASSWORD") == NEW and store.previous("POSTGRES_PASSWORD") == OLD
    assert store.pending("POSTGRES_PASSWORD") is None and store.outgoing("POSTGRES_PASSWORD") is None

    # the next rotation copies the current variables, not the last rotation's record
    store.stage_pending("POSTGRES_PASSWORD", NEWER, "POSTGRES_PASSWORD-r2")
    store.switch("POSTGRES_PASSWORD")
    assert store.previous("POSTGRES_PASSWORD") == OLD, "the one before the last finished rotation"
    assert store.outgoing("POSTGRES_PASSWORD") == NEW
    assert staged(sm_client, secret_id)["AWSCURRENT"]["_rotation"]["rotation_id"] == "POSTGRES_PASSWORD-r2"
    store.finish("POSTGRES_PASSWORD")
    assert store.previous("POSTGRES_PASSWORD") == NEW and store.current("POSTGRES_PASSWORD") == NEWER


def test_switching_back_restores_current_and_previous_and_keeps_the_pending(sm):
    sm_client, prefix = sm
    secret_id = prefix + "REDIS_PASSWORD"
    first = {
        "REDIS_USER": "stellar",
        "REDIS_PASSWORD": "first",
        "REDIS_URL": "redis://stellar:first@cache:6379/0",
    }
    sm_client.create_secret(Name=secret_id, SecretString=json.dumps(first))
    store = SecretsManagerSecretStore(sm_client, prefix, ENVS)
    # one finished rotation, so there is a previous version to keep in place
    store.stage_pending("REDIS_PASSWORD", Credential("stellar", "second"), "r1")
    store.switch("REDIS_PASSWORD")
    store.finish("REDIS_PASSWORD")
    second = staged(sm_client, secret_id)["AWSCURRENT"]

    new = Credential("stellar", "th!rd/p@ss")
    store.stage_pending("REDIS_PASSWORD", new, "r2")
    store.switch("REDIS_PASSWORD")
    assert (
        staged(sm_client, secret_id)["AWSCURRENT"]["REDIS_URL"]
        == "redis://stellar:th%21rd%2Fp%40ss@cache:6379/0"
    )
    with pytest.raises(KeyStoreError, match="consumers already use it"):
        store.discard("REDIS_PASSWORD")

    store.unswitch("REDIS_PASSWORD")
    store.unswitch("REDIS_PASSWORD")
    labels = staged(sm_client, secret_id)
    assert labels["AWSCURRENT"] == second
    assert labels["AWSPREVIOUS"] == first, "AWSPREVIOUS back where it was before the switch"
    assert labels["AWSPENDING"]["REDIS_PASSWORD"] == new.secret
    assert store.pending("REDIS_PASSWORD") == (new, "r2") and store.outgoing("REDIS_PASSWORD") is None

    store.switch("REDIS_PASSWORD")  # the resumed rotation switches again
    assert store.current("REDIS_PASSWORD") == new
    store.unswitch("REDIS_PASSWORD")
    store.discard("REDIS_PASSWORD")
    store.discard("REDIS_PASSWORD")
    labels = staged(sm_client, secret_id)
    assert "AWSPENDING" not in labels and labels["AWSCURRENT"] == second and labels["AWSPREVIOUS"] == first


def test_a_first_rotation_switched_back_leaves_no_previous(sm):
    sm_client, prefix = sm
    secret_id = prefix + "GRAFANA_ADMIN_PASSWORD"
    sm_client.create_secret(Name=secret_id, SecretString=json.dumps({"GRAFANA_ADMIN_PASSWORD": "old"}))
    store = SecretsManagerSecretStore(sm_client, prefix, ENVS)
    assert store.current("GRAFANA_ADMIN_PASSWORD") == Credential("admin", "old"), "Grafana's login is admin"
    store.stage_pending("GRAFANA_ADMIN_PASSWORD", Credential("admin", "new"), "g1")
    assert "GRAFANA_ADMIN_PASSWORD" in staged(sm_client, secret_id)["AWSPENDING"]
    store.switch("GRAFANA_ADMIN_PASSWORD")
    assert "AWSPREVIOUS" in staged(sm_client, secret_id)
    store.unswitch("GRAFANA_ADMIN_PASSWORD")
    labels = staged(sm_client, secret_id)
    assert "AWSPREVIOUS" not in labels and labels["AWSCURRENT"] == {"GRAFANA_ADMIN_PASSWORD": "old"}
    assert store.previous("GRAFANA_ADMIN_PASSWORD") is None


def test_a_crash_inside_finish_resumes(sm):
    sm_client, prefix = sm
    secret_id = prefix + "S3_CREDENTIALS"
    old = {"AWS_ACCESS_KEY_ID": "AKIAOLD", "AWS_SECRET_ACCESS_KEY": "old/secret+key"}
    sm_client.create_secret(Name=secret_id, SecretString=json.dumps(old))
    store = SecretsManagerSecretStore(sm_client, prefix, ENVS)
    assert store.current("S3_CREDENTIALS") == Credential("AKIAOLD", "old/secret+key")
    store.stage_pending("S3_CREDENTIALS", Credential("AKIANEW", "new/secret+key"), "s1")
    store.switch("S3_CREDENTIALS")
    store.unswitch("S3_CREDENTIALS")
    with pytest.raises(KeyStoreError, match="was not switched") as info:
        store.finish("S3_CREDENTIALS")
    assert "new/secret+key" not in str(info.value)
    store.switch("S3_CREDENTIALS")

    # the worker died after the first label move of the finish (AWSPREVIOUS onto the outgoing)
    labels = store.labels("S3_CREDENTIALS")
    record = staged(sm_client, secret_id)["AWSPENDING"]["_rotation"]
    store.move_label("S3_CREDENTIALS", "AWSPREVIOUS", record["outgoing_version"], labels.get("AWSPREVIOUS"))
    store.finish("S3_CREDENTIALS")
    labels = staged(sm_client, secret_id)
    assert "AWSPENDING" not in labels and labels["AWSPREVIOUS"] == old
    assert store.previous("S3_CREDENTIALS") == Credential("AKIAOLD", "old/secret+key")


def test_a_current_moved_since_staging_is_not_overwritten_by_the_switch(sm):
    sm_client, prefix = sm
    secret_id = prefix + "POSTGRES_PASSWORD"
    sm_client.create_secret(Name=secret_id, SecretString=json.dumps(postgres_document(OLD)))
    store = SecretsManagerSecretStore(sm_client, prefix, ENVS)
    store.stage_pending("POSTGRES_PASSWORD", NEW, "r1")
    by_hand = {**postgres_document(OLD), "LOG_LEVEL": "debug"}
    sm_client.put_secret_value(
        SecretId=secret_id, SecretString=json.dumps(by_hand), VersionStages=["AWSCURRENT"]
    )
    with pytest.raises(KeyStoreError, match="AWSCURRENT of .* moved .* since rotation r1 staged"):
        store.switch("POSTGRES_PASSWORD")
    assert staged(sm_client, secret_id)["AWSCURRENT"] == by_hand
    store.discard("POSTGRES_PASSWORD")
    store.stage_pending("POSTGRES_PASSWORD", NEWER, "r2")
    store.switch("POSTGRES_PASSWORD")
    assert staged(sm_client, secret_id)["AWSCURRENT"]["LOG_LEVEL"] == "debug", "carries the hand-made change"


def test_what_cannot_be_read_is_named_without_its_value(sm):
    sm_client, prefix = sm
    store = SecretsManagerSecretStore(sm_client, prefix, ENVS)
    # (moto answers 500 here, AWS ResourceNotFoundException)
    with pytest.raises(KeyStoreError, match=f"listing the versions of '{prefix}REDIS_PASSWORD' failed"):
        store.current("REDIS_PASSWORD")
    sm_client.create_secret(Name=prefix + "REDIS_PASSWORD", SecretString="plain-password-text")
    with pytest.raises(KeyStoreError, match="is not a JSON object of variables") as info:
        store.current("REDIS_PASSWORD")
    assert "plain-password-text" not in str(info.value)
    sm_client.create_secret(
        Name=prefix + "S3_CREDENTIALS", SecretString=json.dumps({"AWS_SECRET_ACCESS_KEY": "s"})
    )
    with pytest.raises(KeyStoreError, match="has AWS_SECRET_ACCESS_KEY but no AWS_ACCESS_KEY_ID"):
        store.current("S3_CREDENTIALS")
    assert "s3cr" not in repr(store)


# --- the switched .env, read by real clients --------------------------------------------------

SPECIAL = "p@ss:w/rd?#%&=+ 'x\"$"


@pytest.fixture
def api_env(tmp_path: Path, stack) -> Path:
    path = tmp_path / "api.env"
    path.write_text(
        f"API_KEYS=k\nPOSTGRES_USER={stack.db.user}\nPOSTGRES_PASSWORD=unused\n"
        f"DATABASE_URL=postgresql://{stack.db.user}:unused@127.0.0.1:{stack.ports['postgres']}/{stack.db.dbname}"
        "?connect_timeout=5&application_name=secret-store-test\n"
        f"REDIS_USER=stellar\nREDIS_PASSWORD=unused\nREDIS_URL=redis://stellar:unused@127.0.0.1:{stack.ports['redis']}/0\n"
    )
    path.chmod(0o600)
    return path


def test_the_switched_database_url_logs_in_with_a_password_full_of_url_characters(stack, api_env):
    import psycopg

    from stellar_ops.postgres.target import PgTarget, connect

    role = f"store_test_{os.getpid()}"
    password = SPECIAL.replace("'", "").replace('"', "")  # a quote cannot go into an .env line
    with connect(stack.superuser.with_dbname("postgres")) as conn:
        conn.execute(f'DROP ROLE IF EXISTS "{role}"')
        verifier = conn.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256").decode()
        conn.execute(f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{verifier}'")
    try:
        store = EnvSecretStore(api_env, ENVS)
        store.stage_pending("POSTGRES_PASSWORD", Credential(role, password), "r1")
        store.switch("POSTGRES_PASSWORD")
        url = store._values()["DATABASE_URL"]  # noqa: SLF001 - what the API reads
        assert "application_name=secret-store-test" in url
        with psycopg.connect(url) as conn:  # libpq's own URL parser
            assert conn.execute("SELECT current_user").fetchone() == (role,)
        with connect(PgTarget.from_url(url)) as conn:  # the CLI's, from DATABASE_URL
            assert conn.execute("SELECT current_user").fetchone() == (role,)
        assert store.current("POSTGRES_PASSWORD") == Credential(role, password)
    finally:
        with connect(stack.superuser.with_dbname("postgres")) as conn:
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')


def test_the_switched_redis_url_logs_in_with_a_password_full_of_url_characters(stack, api_env):
    import redis

    user = f"store_test_{os.getpid()}"
    password = SPECIAL.replace("'", "")
    admin = stack.redis_admin.client(timeout=5)
    admin.execute_command("ACL", "SETUSER", user, "on", f">{password}", "~*", "+ping", "+acl|whoami")
    try:
        store = EnvSecretStore(api_env, ENVS)
        store.stage_pending("REDIS_PASSWORD", Credential(user, password), "r1")
        store.switch("REDIS_PASSWORD")
        url = store._values()["REDIS_URL"]  # noqa: SLF001 - what the API reads
        consumer = redis.Redis.from_url(url, socket_timeout=5)
        try:
            assert consumer.ping() is True
            assert consumer.execute_command("ACL", "WHOAMI") in (user, user.encode())
        finally:
            consumer.close()
        assert store.current("REDIS_PASSWORD") == Credential(user, password)
    finally:
        # the stack's admin may change users but not delete them: this one is left off, passwordless
        admin.execute_command("ACL", "SETUSER", user, "off", "resetpass")
        admin.close()
