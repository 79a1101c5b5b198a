"""Grafana's admin password through its API, against the stand-in (no Grafana server runs here):
what was sent is read back from the stand-in's record of the calls."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import requests

from stellar_ops.core.processes import free_port
from stellar_ops.rotation.credentials import generate_secret
from stellar_ops.rotation.grafana import GrafanaAdmin, GrafanaError
from stellar_ops.rotation.keys import fingerprint
from stellar_ops_dev.grafana_stub import GrafanaStub

pytestmark = pytest.mark.integration


@pytest.fixture
def old() -> str:
    return generate_secret()


@pytest.fixture
def grafana(old):
    stub = GrafanaStub(old, others={"viewer": "viewer-password"})
    try:
        yield stub
    finally:
        stub.stop()


def recorded(stub: GrafanaStub) -> list[tuple[str, str, str | None, str | None, str | None, int]]:
    calls = requests.get(stub.url + "/_calls", timeout=5).json()
    return [
        (c["method"], c["path"], c["user"], c["auth_fingerprint"], c["password_fingerprint"], c["status"])
        for c in calls
    ]


def test_the_change_goes_through_the_admin_api_and_is_proven_by_logins(grafana, old):
    new = generate_secret()
    admin = GrafanaAdmin(grafana.url)
    assert admin.change_password(old, new) is True
    fp_old, fp_new = fingerprint(old), fingerprint(new)
    assert recorded(grafana) == [
        ("GET", "/api/user", "admin", fp_old, None, 200),
        ("GET", "/api/users/lookup?loginOrEmail=admin", "admin", fp_old, None, 200),
        ("PUT", "/api/admin/users/1/password", "admin", fp_old, fp_new, 200),
        ("GET", "/api/user", "admin", fp_new, None, 200),
        ("GET", "/api/user", "admin", fp_old, None, 401),  # the only refused login it spends
    ]
    assert admin.logs_in(new) and not admin.logs_in(old)
    everything = requests.get(grafana.url + "/_calls", timeout=5).text
    assert old not in everything and new not in everything and new not in repr(admin)


def test_a_resumed_change_sees_it_is_done_and_changes_nothing(grafana, old):
    new = generate_secret()
    admin = GrafanaAdmin(grafana.url)
    admin.change_password(old, new)
    requests.delete(grafana.url + "/_calls", timeout=5)
    assert admin.change_password(old, new) is False  # a crash after the PUT: the re-run
    assert [(c[0], c[1], c[5]) for c in recorded(grafana)] == [
        ("GET", "/api/user", 401),
        ("GET", "/api/user", 200),
    ]
    # the rollback is a change back
    assert admin.change_password(new, old) is True
    assert admin.logs_in(old) and not admin.logs_in(new)


def test_neither_password_logging_in_is_named_by_fingerprints(grafana, old):
    wrong, new = generate_secret(), generate_secret()
    with pytest.raises(GrafanaError, match=f"{fingerprint(wrong)}.*{fingerprint(new)}") as caught:
        GrafanaAdmin(grafana.url).change_password(wrong, new)
    assert wrong not in str(caught.value) and new not in str(caught.value)
    assert not any(c[0] == "PUT" for c in recorded(grafana))
    assert GrafanaAdmin(grafana.url).logs_in(old)


def test_refusals_leave_the_password_unchanged(grafana, old):
    with pytest.raises(GrafanaError, match="looking up user 'viewer' answered 403"):
        GrafanaAdmin(grafana.url, "viewer").change_password("viewer-password", generate_secret())
    with pytest.raises(GrafanaError, match="answered 400: New password too short; the password is unchanged"):
        GrafanaAdmin(grafana.url).change_password(old, "abc")
    with pytest.raises(GrafanaError, match="is the current one"):
        GrafanaAdmin(grafana.url).change_password(old, old)
    assert GrafanaAdmin(grafana.url).logs_in(old)
    with pytest.raises(GrafanaError, match="GET /api/user failed: ConnectionError"):
        GrafanaAdmin(f"http://127.0.0.1:{free_port()}", timeout=2).logs_in(old)


def test_the_stand_in_blocks_a_login_after_five_failures_as_grafana_does(old):
    stub = GrafanaStub(old)
    try:
        admin = GrafanaAdmin(stub.url)
        for _ in range(5):
            assert not admin.logs_in(generate_secret())
        assert not admin.logs_in(old)  # blocked: why a rotation spends at most one refused login
    finally:
        stub.stop()


def test_the_stand_in_runs_as_a_program_with_the_password_from_its_environment(tmp_path, old):
    port = free_port()
    env = dict(os.environ, GF_SECURITY_ADMIN_PASSWORD=old, GF_SECURITY_ADMIN_USER="root")
    process = subprocess.Popen(
        [sys.executable, "-m", "stellar_ops_dev.grafana_stub", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                assert requests.get(url + "/api/health", timeout=1).json()["database"] == "ok"
                break
            except requests.RequestException:
                assert time.monotonic() < deadline and process.poll() is None
                time.sleep(0.1)
        assert GrafanaAdmin(url, "root").logs_in(old)
        assert old not in " ".join(process.args)  # type: ignore[arg-type]
        assert json.loads(requests.get(url + "/_calls", timeout=2).text)[0]["user"] == "root"
    finally:
        process.terminate()
        process.wait(timeout=10)
