"""The pure parts of the Redis, Grafana and S3 backends: how a secret is named, never shown."""

from __future__ import annotations

from datetime import UTC, datetime

from stellar_ops.core.http import RedisTarget
from stellar_ops.rotation.credentials import Credential, generate_secret
from stellar_ops.rotation.grafana import GrafanaAdmin, _message
from stellar_ops.rotation.redis_acl import RedisAclUser, password_hash
from stellar_ops.rotation.s3_keys import AccessKey, IamAccessKeys


def test_the_hash_redis_lists_starts_with_the_secrets_fingerprint():
    secret = generate_secret()
    assert password_hash(secret)[:8] == Credential("u", secret).fingerprint
    assert password_hash("abc").startswith("ba7816bf")


class FakeResponse:
    def __init__(self, payload: object = None, text: str = "") -> None:
        self.payload, self.text = payload, text

    def json(self) -> object:
        if self.payload is None:
            raise ValueError("no JSON")
        return self.payload


def test_a_message_that_echoes_a_password_shows_its_fingerprint():
    secret = generate_secret()
    fp = Credential("admin", secret).fingerprint
    assert _message(FakeResponse({"message": f"bad {secret}"}), secret) == f"bad {fp}"
    assert _message(FakeResponse(text=f"<html>{secret}</html>"), secret) == f"<html>{fp}</html>"
    assert _message(FakeResponse(["not", "a", "dict"], text="[1]"), secret) == "[1]"


def test_reprs_name_the_place_and_never_a_secret():
    secret = generate_secret()
    target = RedisTarget("127.0.0.1", 6380, username="ops", password=secret)
    for thing in (
        RedisAclUser(target, "stellar"),
        GrafanaAdmin("http://grafana:3000/", "admin"),
        IamAccessKeys(object(), "stellar-s3"),
    ):
        assert secret not in repr(thing)
    assert repr(RedisAclUser(target, "stellar")) == "RedisAclUser(redis://127.0.0.1:6380/0, user='stellar')"
    assert GrafanaAdmin("http://grafana:3000/").url == "http://grafana:3000"


def test_an_access_key_reads_as_its_id_status_and_age():
    key = AccessKey("AKIAEXAMPLE", "Inactive", datetime(2026, 12, 7, 9, 30, tzinfo=UTC))
    assert str(key) == "AKIAEXAMPLE (Inactive since 2026-12-07 09:30 UTC)"
