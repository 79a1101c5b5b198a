"""Redis ACL password rotation against a redis-server each test starts: a load of new connections
(AUTH, then SET/GET) every 50 ms through the whole rotation, with zero failures."""

from __future__ import annotations

import threading
import time

import pytest

from stellar_ops.core.http import RedisTarget
from stellar_ops.core.processes import free_port
from stellar_ops.rotation.credentials import Credential, generate_secret
from stellar_ops.rotation.keys import fingerprint
from stellar_ops.rotation.redis_acl import RedisAclError, RedisAclUser
from tests.support.rotation_servers import RedisServer, sha

pytestmark = pytest.mark.integration


@pytest.fixture
def server(tmp_path):
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    try:
        yield redis
    finally:
        redis.stop()


class Consumer(threading.Thread):
    """A client that opens a NEW connection every 50 ms with the credential it currently holds
    (as a service re-reading its secret), runs SET and GET, and counts what failed."""

    def __init__(self, server: RedisServer, credential: Credential) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.credential = credential
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.ok = 0
        self.used: dict[str, int] = {}
        self.failures: list[str] = []

    def switch(self, credential: Credential) -> None:
        with self.lock:
            self.credential = credential

    def run(self) -> None:
        n = 0
        while not self.stopping.is_set():
            with self.lock:
                credential = self.credential
            n += 1
            client = self.server.target(credential).client(timeout=2)
            try:
                client.set(f"load:{n}", n)
                if int(client.get(f"load:{n}")) != n:
                    raise AssertionError(f"GET load:{n} answered another value")
                self.ok += 1
                self.used[credential.fingerprint] = self.used.get(credential.fingerprint, 0) + 1
            except Exception as exc:  # every failure counts, whatever its kind
                self.failures.append(f"{credential.fingerprint}: {type(exc).__name__}: {exc}")
            finally:
                client.close()
            self.stopping.wait(0.05)

    def cycles(self, count: int) -> None:
        """Wait until ``count`` more connections have gone through."""
        goal = self.ok + len(self.failures) + count
        deadline = time.monotonic() + 30
        while self.ok + len(self.failures) < goal and time.monotonic() < deadline:
            time.sleep(0.02)


def test_a_rotation_under_load_fails_no_connection_and_the_old_password_is_refused(server):
    user = RedisAclUser(server.target(), "stellar")
    old = server.app
    new = Credential("stellar", generate_secret())
    consumer = Consumer(server, old)
    consumer.start()
    try:
        consumer.cycles(10)
        assert user.add_password(new.secret) is True
        assert user.passwords() == [old.fingerprint, new.fingerprint]
        assert user.accepts(new) and user.accepts(old)
        consumer.cycles(10)
        consumer.switch(new)
        consumer.cycles(10)
        assert user.remove_password(old.secret) is True
        consumer.cycles(20)
    finally:
        consumer.stopping.set()
        consumer.join(timeout=10)
    assert consumer.failures == []
    assert consumer.used[old.fingerprint] >= 20 and consumer.used[new.fingerprint] >= 30
    assert user.accepts(new) and not user.accepts(old)
    assert user.passwords() == [new.fingerprint]


def test_every_step_is_idempotent_so_a_resumed_rotation_repeats_it_harmlessly(server):
    user = RedisAclUser(server.target(), "stellar")
    old, new = server.app, Credential("stellar", generate_secret())
    assert user.add_password(new.secret) is True
    assert user.add_password(new.secret) is False  # a crash after the add: the re-run is a no-op
    assert user.passwords() == [old.fingerprint, new.fingerprint]
    assert user.remove_password(old.secret) is True
    assert user.remove_password(old.secret) is False
    assert user.passwords() == [new.fingerprint] and user.holds(new.secret) and not user.holds(old.secret)
    # the permissions were not touched by the password changes
    rules = server.target().client().acl_getuser("stellar")
    assert "on" in rules["flags"] and "-@dangerous" in str(rules["categories"])


def test_the_plaintext_never_reaches_an_acl_command(server):
    admin = server.target().client()
    admin.config_set("slowlog-log-slower-than", 0)  # every command in the slow log
    admin.slowlog_reset()
    monitor_lines: list[str] = []
    stop = threading.Event()

    def watch() -> None:
        with server.target().client().monitor() as monitor:
            for command in monitor.listen():
                monitor_lines.append(str(command))
                if stop.is_set():
                    return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    time.sleep(0.3)
    user = RedisAclUser(server.target(), "stellar")
    new = generate_secret()
    user.add_password(new)
    user.remove_password(server.app.secret)
    stop.set()
    admin.ping()  # wakes the monitor so it returns
    watcher.join(timeout=5)
    logged = " ".join(str(entry) for entry in admin.slowlog_get(1000)) + " ".join(monitor_lines)
    assert "ACL SETUSER" in logged  # the log did see the changes
    assert new not in logged and server.app.secret not in logged
    assert new not in repr(user) and "'stellar'" in repr(user)


def test_persist_writes_the_rotated_password_to_the_config_so_a_restart_keeps_it(server):
    user = RedisAclUser(server.target(), "stellar")
    new = Credential("stellar", generate_secret())
    user.add_password(new.secret)
    user.remove_password(server.app.secret)
    assert user.persist() is True
    written = (server.dir / "redis.conf").read_text()
    assert sha(new.secret) in written and sha(server.app.secret) not in written and new.secret not in written
    server.stop()
    server.start()
    assert user.accepts(new) and not user.accepts(server.app)


def test_the_default_users_requirepass_rotates_with_the_admin_switching_too(tmp_path):
    """REDIS_PASSWORD: every client, this package's too, logs in as ``default``; the admin's own
    credential moves to the new password during the window, as the other consumers' do."""
    server = RedisServer(tmp_path / "requirepass", requirepass=True)
    server.start()
    old, new = server.app, Credential("default", generate_secret())
    try:
        assert RedisAclUser(server.target(old), "default").add_password(new.secret)
        user = RedisAclUser(server.target(new), "default")  # the switch: the admin uses the new one
        assert user.remove_password(old.secret) and user.persist()
        # redis.conf keeps its stale requirepass line: the user line CONFIG REWRITE adds wins
        server.stop()
        server.start()
        assert user.accepts(new) and not user.accepts(old)
        assert user.passwords() == [new.fingerprint]
    finally:
        server.stop()


def test_persist_says_so_when_the_server_has_nowhere_to_save(tmp_path):
    server = RedisServer(tmp_path / "argv", config_file=False)
    server.start()
    try:
        assert RedisAclUser(server.target(), "stellar").persist() is False
    finally:
        server.stop()


def test_refusals_name_the_user_and_never_the_secret(server):
    admin = server.target().client()
    admin.execute_command("ACL", "SETUSER", "idle", "off", f"#{sha('x' * 20)}")
    admin.execute_command("ACL", "SETUSER", "open", "on", "nopass")
    secret = generate_secret()
    with pytest.raises(RedisAclError, match="no ACL user 'ghost'") as missing:
        RedisAclUser(server.target(), "ghost").add_password(secret)
    with pytest.raises(RedisAclError, match="'idle' .* disabled") as off:
        RedisAclUser(server.target(), "idle").add_password(secret)
    with pytest.raises(RedisAclError, match="'open' .* nopass"):
        RedisAclUser(server.target(), "open").add_password(secret)
    with pytest.raises(RedisAclError, match=f"{server.app.fingerprint} is its only password") as last:
        RedisAclUser(server.target(), "stellar").remove_password(server.app.secret)
    for caught in (missing, off, last):
        assert secret not in str(caught.value) and server.app.secret not in str(caught.value)
    assert admin.acl_getuser("ghost") is None  # a refusal creates nothing


def test_accepts_tells_a_refused_login_from_an_unreachable_server(server):
    user = RedisAclUser(server.target(), "stellar")
    assert user.accepts(server.app)
    assert not user.accepts(Credential("stellar", generate_secret()))
    assert not user.accepts(Credential("ghost", server.app.secret))
    gone = RedisAclUser(RedisTarget("127.0.0.1", free_port(), username="ops", password="x"), "stellar")
    with pytest.raises(RedisAclError, match="could not be asked") as caught:
        gone.accepts(server.app)
    assert server.app.secret not in str(caught.value) and fingerprint(server.app.secret) in str(caught.value)
