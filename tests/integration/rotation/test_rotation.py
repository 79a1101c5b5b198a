"""Rotations against a real API stand-in, the stack's S3 and webhook receiver, through the CLI
(the same steps as the DAG), with consumers sending requests the whole time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from stellar_ops.rotation.keys import fingerprint
from stellar_ops.rotation.keystore import EnvFileStore
from stellar_ops_dev.load import Consumer, LoadGenerator
from tests.integration.rotation.conftest import CLI, argv_of_every_process, cli
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

WINDOW_SECONDS = 6.0


def days(seconds: float) -> str:
    return repr(seconds / 86400)


def added(stand_in):
    """The pending keys, once the stand-in accepts them (the new keys are served alongside)."""
    state = EnvFileStore(stand_in.env_file).state("API_KEYS")
    if state.pending and all(stand_in.status(k) == 200 for k in state.pending):
        return list(state.pending)
    return None


def start_rotation(*extra: str) -> subprocess.Popen[str]:
    argv = [CLI, "keys", "rotate", "--key-set", "API_KEYS", "--count", "3", "--yes", *extra]
    return subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ)
    )


def test_a_rotation_serves_only_the_new_keys_with_no_request_rejected(rotation, stand_in, receiver):
    old = list(stand_in.api_keys)
    load = LoadGenerator(stand_in.url, [Consumer(f"c{i}", k) for i, k in enumerate(old)], rate_per_second=60)
    load.start()
    process = start_rotation("--transition-days", days(WINDOW_SECONDS))
    new = wait_for(lambda: added(stand_in), 60, "new keys served", interval=0.05)
    now = time.time()
    load.schedule_switches(new, now, now + WINDOW_SECONDS - 1.5, seed=7)
    argvs = argv_of_every_process()
    out, err = process.communicate(timeout=120)
    report = load.stop()
    assert process.returncode == 0, err

    assert all(stand_in.status(k) == 200 for k in new)
    assert all(stand_in.status(k) == 403 for k in old)
    assert report.sent > 100 and report.by_key["old"] and report.by_key["new"]
    assert report.rejected == 0, report.as_dict()
    assert report.lost == 0, report.as_dict()
    state = EnvFileStore(stand_in.env_file).state("API_KEYS")
    assert state.served == tuple(new) and state.previous == tuple(old) and state.pending is None

    finished = json.loads(out)
    assert finished["current"] == [fingerprint(k) for k in new]
    store = rotation.store()
    (audit_key,) = [k for k in rotation.objects() if "/audit/" in k]
    audit = store.get_bytes(audit_key).decode()
    record = json.loads(audit)
    assert record["outcome"] == "rotated"
    assert record["approvals"]["approve_rollout"]["chosen"] == "Approve"
    assert set(record["steps"]["generate_keys"]["new"]) == {fingerprint(k) for k in new}
    ledger = store.get_json(rotation.prefix + "secrets-ledger.json")
    assert ledger["secrets"]["API_KEYS"]["audit"].endswith(audit_key)

    notice = [t for t in receiver.texts() if "API key rotation (API_KEYS, scheduled)" in t]
    assert len(notice) == 1 and all(fingerprint(k) in notice[0] for k in new)
    for key in old + new:
        assert key not in out + err, "a key in the CLI's output"
        assert key not in audit and key not in json.dumps(ledger), "a key in the audit record or the ledger"
        assert not any(key in argv for argv in argvs), "a key in a process's argv"
        assert not any(key in text for text in receiver.texts()), "a key in a notification"


def test_a_second_scheduled_run_in_the_quarter_does_nothing_but_a_compromise_rotates(
    rotation, stand_in, receiver
):
    first = cli(
        "keys",
        "rotate",
        "--key-set",
        "API_KEYS",
        "--count",
        "1",
        "--yes",
        "--transition-days",
        days(0.5),
        "--slot",
        "2026-10-01T09:00:00Z",
    )
    assert first.returncode == 0, first.stderr
    served = EnvFileStore(stand_in.env_file).state("API_KEYS").served
    again = cli("keys", "rotate", "--key-set", "API_KEYS", "--yes", "--slot", "2026-11-15T09:00:00Z")
    assert again.returncode == 0, again.stderr
    assert "already rotated in 2026-Q4" in again.stderr
    assert EnvFileStore(stand_in.env_file).state("API_KEYS").served == served
    receiver.clear()
    compromise = cli(
        "keys",
        "rotate",
        "--key-set",
        "API_KEYS",
        "--count",
        "1",
        "--yes",
        "--reason",
        "compromise",
        "--transition-days",
        days(0.5),
        "--slot",
        "2026-11-15T09:00:00Z",
    )
    assert compromise.returncode == 0, compromise.stderr
    now_served = EnvFileStore(stand_in.env_file).state("API_KEYS").served
    assert len(now_served) == 1 and now_served != served
    pages = [m for m in receiver.messages() if "B0PAGING" in m.get("path", "")]
    assert any("compromise" in m["json"]["text"] for m in pages), "a compromise rotation pages"


def test_a_failed_test_after_add_rolls_back_restarts_and_alerts_p2(rotation, stand_in, receiver):
    # a restart that does not restart: the API never loads the new keys, so the test must fail
    rotation.update(rotation={"restart": "command", "restart_command": ["true"]})
    old = list(stand_in.api_keys)
    before = stand_in.env_file.read_text()
    result = cli("keys", "rotate", "--key-set", "API_KEYS", "--yes", "--transition-days", days(1))
    assert result.returncode == 2
    assert "rolled back after add" in result.stderr
    state = EnvFileStore(stand_in.env_file).state("API_KEYS")
    assert state.served == tuple(old) and state.pending is None
    assert stand_in.env_file.read_text() == before
    assert all(stand_in.status(k) == 200 for k in old)
    alerts = [t for t in receiver.texts() if "KeyRotationRolledBack" in t]
    assert len(alerts) == 1 and "[P2]" in alerts[0]
    (audit_key,) = [k for k in rotation.objects() if "/audit/" in k]
    assert rotation.store().get_json(audit_key)["outcome"] == "rolled back after test_new_keys failed"
    assert (
        "API_KEYS"
        not in (
            rotation.store().get_json(rotation.prefix + "secrets-ledger.json")
            if rotation.store().exists(rotation.prefix + "secrets-ledger.json")
            else {"secrets": {}}
        )["secrets"]
    )


def test_a_rotation_killed_between_steps_resumes_with_the_same_keys(rotation, stand_in):
    old = list(stand_in.api_keys)
    load = LoadGenerator(stand_in.url, [Consumer(f"c{i}", k) for i, k in enumerate(old)], rate_per_second=30)
    load.start()
    process = start_rotation("--transition-days", days(60))
    new = wait_for(lambda: added(stand_in), 60, "new keys served", interval=0.05)
    wait_for(
        lambda: "waiting out the transition window" in _stderr_so_far(process),
        30,
        "the window wait",
        interval=0.05,
    )
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    # consumers switch while no rotation process runs: both sets are served, nothing is lost
    now = time.time()
    load.schedule_switches(new, now, now + WINDOW_SECONDS - 1.5, seed=3)
    resumed = cli(
        "keys",
        "rotate",
        "--key-set",
        "API_KEYS",
        "--count",
        "3",
        "--yes",
        "--transition-days",
        days(WINDOW_SECONDS),
    )
    report = load.stop()
    assert resumed.returncode == 0, resumed.stderr
    assert "already exist: reusing them" in resumed.stderr
    state = EnvFileStore(stand_in.env_file).state("API_KEYS")
    assert state.served == tuple(new) and state.previous == tuple(old)
    assert report.rejected == 0 and report.lost == 0, report.as_dict()


_STDERR: dict[int, str] = {}


def _stderr_so_far(process: subprocess.Popen[str]) -> str:
    """What the process wrote on stderr so far (read without blocking)."""
    import fcntl

    assert process.stderr is not None
    fd = process.stderr.fileno()
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
    try:
        chunk = os.read(fd, 65536).decode(errors="replace")
    except BlockingIOError:
        chunk = ""
    _STDERR[process.pid] = _STDERR.get(process.pid, "") + chunk
    return _STDERR[process.pid]


def test_keys_status_shows_fingerprints_only(rotation, stand_in):
    result = cli("keys", "status")
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["API_KEYS"]["served"] == [fingerprint(k) for k in stand_in.api_keys]
    assert status["ADMIN_KEYS"]["served"] == [fingerprint(k) for k in stand_in.admin_keys]
    assert all(k not in result.stdout for k in stand_in.api_keys + stand_in.admin_keys)


def test_a_removal_that_would_lock_out_the_projects_own_key_stops_and_resumes_once_it_is_switched(
    rotation, stand_in, monkeypatch
):
    old = list(stand_in.api_keys)
    monkeypatch.setenv("STELLAR_API_KEY", old[1])  # as the stellar_api connection often is: a served key
    argv = ("keys", "rotate", "--key-set", "API_KEYS", "--count", "2", "--yes", "--transition-days", days(1))
    stopped = cli(*argv)
    assert stopped.returncode != 0
    assert f"is API_KEYS key {fingerprint(old[1])}, which the removal would invalidate" in stopped.stderr
    new = list(EnvFileStore(stand_in.env_file).state("API_KEYS").pending or ())
    assert len(new) == 2 and all(fingerprint(k) in stopped.stderr for k in new)
    assert all(stand_in.status(k) == 200 for k in old + new), "both key sets are still served"
    assert all(k not in stopped.stdout + stopped.stderr for k in old + new)

    monkeypatch.setenv("STELLAR_API_KEY", new[0])  # switched, as the message asks
    resumed = cli(*argv)
    assert resumed.returncode == 0, resumed.stderr
    assert EnvFileStore(stand_in.env_file).state("API_KEYS").served == tuple(new)
    assert all(stand_in.status(k) == 200 for k in new) and all(stand_in.status(k) == 403 for k in old)


def test_admin_keys_rotate_the_same_way_and_are_tested_on_an_admin_path(rotation, stand_in, monkeypatch):
    old_admin = list(stand_in.admin_keys)
    monkeypatch.setenv("STELLAR_API_KEY", stand_in.api_keys[0])  # not one of the keys it removes
    result = cli(
        "keys", "rotate", "--key-set", "ADMIN_KEYS", "--count", "2", "--yes", "--transition-days", days(1)
    )
    assert result.returncode == 0, result.stderr
    state = EnvFileStore(stand_in.env_file).state("ADMIN_KEYS")
    assert len(state.served) == 2 and state.previous == tuple(old_admin)
    assert all(stand_in.status(k, "/api/metrics") == 200 for k in state.served)
    assert all(stand_in.status(k, "/api/metrics") == 403 for k in old_admin)
    assert all(stand_in.status(k) == 200 for k in stand_in.api_keys), "API_KEYS are untouched"
    assert all(k not in result.stdout + result.stderr for k in old_admin + list(state.served))


def test_a_dry_run_changes_nothing(rotation, stand_in):
    before = stand_in.env_file.read_text()
    result = cli("keys", "rotate", "--key-set", "API_KEYS", "--dry-run", "--yes")
    assert result.returncode == 0, result.stderr
    assert "dry run: rotation API_KEYS-" in result.stderr
    assert stand_in.env_file.read_text() == before
    assert EnvFileStore(stand_in.env_file).state("API_KEYS").pending is None
