"""The DR test's docker scratch backend, against a Docker Engine API stand-in (no daemon here)."""

from __future__ import annotations

import json

import pytest

from tests.support.dagrun import run_dag
from tests.support.fake_docker import FakeDockerDaemon

pytestmark = pytest.mark.integration


@pytest.fixture
def daemon(monkeypatch):
    with FakeDockerDaemon() as fake:
        monkeypatch.setenv(
            "AIRFLOW_CONN_STELLAR_DOCKER", json.dumps({"conn_type": "docker", "host": fake.url})
        )
        yield fake


def test_the_docker_backend_restores_in_a_container_and_removes_it(daemon, stack, ops, backup_key):
    outcome = run_dag("dr_restore_test", conf={"scratch_backend": "docker"})
    assert outcome.state == "success", outcome.tasks
    assert set(outcome.tasks.values()) == {"success"}

    (create,) = daemon.calls("POST", r"/containers/create\?name=stellar-dr-")
    spec = create[2]
    assert spec["Image"] == "postgres:15"
    assert spec["Labels"] == {"stellar-ops.role": "dr-scratch"}
    assert spec["HostConfig"]["PortBindings"] == {"5432/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]}
    assert any(e.startswith("POSTGRES_PASSWORD=") for e in spec["Env"])
    assert "fsync=off" in spec["Cmd"]
    (pull,) = daemon.calls("POST", r"/images/create\?")
    assert "fromImage=postgres" in pull[1] and "tag=15" in pull[1]
    name = create[1].split("name=")[1]
    (delete,) = daemon.calls("DELETE", rf"/containers/{name}")
    assert "force=True" in delete[1] or "force=1" in delete[1]
    assert daemon.containers == {}

    handle = outcome.xcom("create_scratch")
    assert handle["backend"] == "docker" and handle["name"] == name and handle["host"] == "127.0.0.1"
    password = spec["Env"][0].split("=", 1)[1]
    for task_id in outcome.tasks:
        assert password not in json.dumps(outcome.xcom(task_id)), (
            f"the scratch password leaked into {task_id}'s XCom"
        )
    restored = outcome.xcom("restore_backup")  # the observation waited in the bucket: XCom has where
    assert restored["tables"] == len(ops.store().get_json(backup_key + ".manifest.json")["row_counts"])
    assert outcome.xcom("verify_row_counts")["passed"] is True


def test_a_container_whose_server_dies_is_still_removed(daemon, ops, backup_key):
    ops.update(dr={"scratch_settings": {"no_such_setting": "1"}})
    outcome = run_dag("dr_restore_test", conf={"scratch_backend": "docker"})
    assert outcome.state == "failed"
    assert outcome.tasks["create_scratch"] == "success"
    assert outcome.tasks["restore_backup"] == "failed"
    assert outcome.tasks["drop_scratch"] == "success"
    assert daemon.calls("DELETE", r"/containers/stellar-dr-")
    assert daemon.containers == {}


def test_keep_scratch_on_failure_keeps_the_container_for_debugging(daemon, ops, backup_key):
    manifest = ops.store().get_json(backup_key + ".manifest.json")
    manifest["row_counts"]["public.events"] += 1
    ops.store().put_json(backup_key + ".manifest.json", manifest)
    outcome = run_dag("dr_restore_test", conf={"scratch_backend": "docker", "keep_scratch_on_failure": True})
    assert outcome.state == "failed" and outcome.tasks["verify_row_counts"] == "failed"
    assert outcome.tasks["drop_scratch"] == "success"
    assert daemon.calls("DELETE", r"/containers/") == []
    (kept,) = daemon.containers.values()
    assert kept.status == "running"
