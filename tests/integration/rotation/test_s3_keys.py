"""S3 access key rotation through IAM, against moto's server with IAM authentication on: a key
that is deleted (or never existed) is refused by STS and S3 as AWS refuses it."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime

import pytest

from stellar_ops.rotation.credentials import Credential
from stellar_ops.rotation.s3_keys import AccessKeyError, IamAccessKeys
from tests.support.rotation_servers import ALLOW_ALL, client, moto_iam

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    with moto_iam(tmp_path_factory.mktemp("moto")) as started:
        yield started


@pytest.fixture
def setup(moto):
    """A fresh IAM user with one key (the one consumers use now) and its own bucket."""
    url, admin = moto
    iam = client("iam", url, admin)
    user = f"stellar-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=user)
    iam.put_user_policy(UserName=user, PolicyName="s3", PolicyDocument=ALLOW_ALL)
    made = iam.create_access_key(UserName=user)["AccessKey"]
    old = Credential(made["AccessKeyId"], made["SecretAccessKey"])
    client("s3", url, old).create_bucket(Bucket=user)
    return IamAccessKeys(iam, user, sts_endpoint_url=url), old, url


class Consumer(threading.Thread):
    """S3 PUT then GET every 50 ms with the credential it currently holds; counts failures."""

    def __init__(self, url: str, bucket: str, credential: Credential) -> None:
        super().__init__(daemon=True)
        self.url, self.bucket, self.credential = url, bucket, credential
        self.stopping = threading.Event()
        self.ok = 0
        self.failures: list[str] = []

    def run(self) -> None:
        n = 0
        while not self.stopping.is_set():
            credential = self.credential
            n += 1
            try:
                s3 = client("s3", self.url, credential)
                s3.put_object(Bucket=self.bucket, Key=f"load/{n}", Body=str(n).encode())
                assert s3.get_object(Bucket=self.bucket, Key=f"load/{n}")["Body"].read() == str(n).encode()
                self.ok += 1
            except Exception as exc:  # every failure counts
                self.failures.append(f"{credential}: {type(exc).__name__}: {exc}")
            self.stopping.wait(0.05)

    def cycles(self, count: int) -> None:
        goal = self.ok + len(self.failures) + count
        deadline = time.monotonic() + 60
        while self.ok + len(self.failures) < goal and time.monotonic() < deadline:
            time.sleep(0.02)


def test_a_rotation_under_load_fails_no_request_and_the_old_key_is_refused(setup):
    keys, old, url = setup
    consumer = Consumer(url, keys.user, old)
    consumer.start()
    try:
        consumer.cycles(6)
        new = keys.create()
        assert [key.id for key in keys.keys()]  # noqa: SIM118 - a list of AccessKey == [old.identity, new.identity]
        assert keys.accepts(new) and keys.accepts(old)
        consumer.credential = new  # the consumers switched
        consumer.cycles(6)
        assert keys.deactivate(old.identity) is True
        consumer.cycles(6)
        assert keys.delete(old.identity) is True
        consumer.cycles(6)
    finally:
        consumer.stopping.set()
        consumer.join(timeout=20)
    assert consumer.failures == [] and consumer.ok >= 24
    assert keys.accepts(new) and not keys.accepts(old)
    assert [(key.id, key.status) for key in keys.keys()]  # noqa: SIM118 - a list of AccessKey == [(new.identity, "Active")]
    with pytest.raises(Exception, match="InvalidAccessKeyId|InvalidClientTokenId"):
        client("s3", url, old).list_objects_v2(Bucket=keys.user)


def test_steps_after_the_creation_are_idempotent_and_the_rollback_reactivates(setup):
    keys, old, _ = setup
    new = keys.create()
    assert keys.deactivate(old.identity) is True
    assert keys.deactivate(old.identity) is False
    assert keys.key(old.identity).status == "Inactive"  # type: ignore[union-attr]
    assert keys.reactivate(old.identity) is True  # the rollback before the deletion
    assert keys.reactivate(old.identity) is False
    keys.deactivate(old.identity)
    assert keys.delete(old.identity) is True
    assert keys.delete(old.identity) is False
    assert keys.strangers([new.identity]) == []


def test_a_third_key_is_refused_naming_the_two_and_a_lost_one_is_found(setup):
    keys, old, _ = setup
    lost = keys.create()  # a crash before its secret was stored
    with pytest.raises(
        AccessKeyError, match=f"already has 2 access keys \\({old.identity} \\(Active.*{lost.identity}"
    ):
        keys.create()
    assert [key.id for key in keys.strangers([old.identity])] == [lost.identity]


def test_refusals_protect_the_keys_in_use_and_never_show_a_secret(setup):
    keys, old, _ = setup
    with pytest.raises(AccessKeyError, match="only Active key") as only:
        keys.deactivate(old.identity)
    new = keys.create()
    with pytest.raises(AccessKeyError, match=f"{old.identity} .*still Active") as active:
        keys.delete(old.identity)
    with pytest.raises(AccessKeyError, match="has no access key AKIANOSUCHKEY"):
        keys.deactivate("AKIANOSUCHKEY")
    for caught in (only, active):
        assert old.secret not in str(caught.value) and new.secret not in str(caught.value)
    assert old.secret not in repr(old) and new.secret not in repr(keys)
    assert not keys.accepts(Credential(new.identity, "wrong" + new.secret[5:]))
    assert not keys.accepts(Credential("AKIANOSUCHKEY00000000", new.secret))
    assert keys.accepts(new) and keys.accepts(old)


def test_a_key_of_another_user_is_not_taken_for_this_ones(setup, moto):
    keys, old, url = setup
    _, admin = moto
    with pytest.raises(AccessKeyError, match="ops-admin, not to IAM user"):
        keys.accepts(admin)
    used = keys.last_used(old.identity)  # the bucket was made with it
    assert used is not None and abs((datetime.now(UTC) - used).total_seconds()) < 600
