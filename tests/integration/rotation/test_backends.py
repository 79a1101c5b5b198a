"""The key stores and restart backends for real: Secrets Manager (moto's server), the stand-in's
reload, a command, the Docker daemon's API (the fake daemon: no Docker engine runs here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import requests

from stellar_ops.core.http import HttpEndpoint
from stellar_ops.core.processes import free_port
from stellar_ops.rotation.keystore import KeyStoreError, SecretsManagerStore
from stellar_ops.rotation.restart import CommandRestart, DockerRestart, HttpReload, RestartError
from tests.support.fake_docker import Container, FakeDockerDaemon

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def secrets_manager(tmp_path_factory):
    """moto in server mode: a Secrets Manager endpoint on loopback."""
    import moto.server  # noqa: F401 - pinned in requirements.txt: the local Secrets Manager

    port = free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "wb")  # noqa: SIM115 - handed to the child
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            requests.get(url + "/moto-api/", timeout=1)
            break
        except requests.RequestException:
            time.sleep(0.2)
    try:
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def client(url: str):
    import boto3

    return boto3.client(
        "secretsmanager",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def labels(sm, secret_id: str) -> dict[str, list[str]]:
    versions = sm.list_secret_version_ids(SecretId=secret_id)["Versions"]
    found: dict[str, list[str]] = {}
    for version in versions:
        value = json.loads(
            sm.get_secret_value(SecretId=secret_id, VersionId=version["VersionId"])["SecretString"]
        )
        for stage in version.get("VersionStages", []):
            found[stage] = value["keys"]
    return found


def test_secrets_manager_store_moves_the_staging_labels_as_a_rotation_does(secrets_manager):
    sm = client(secrets_manager)
    name = f"t{os.getpid()}/"
    sm.create_secret(Name=f"{name}API_KEYS", SecretString=json.dumps({"keys": ["a", "b"]}))
    sm.create_secret(Name=f"{name}ADMIN_KEYS", SecretString=json.dumps({"keys": ["adm"]}))
    store = SecretsManagerStore(sm, name)
    assert store.state("API_KEYS").served == ("a", "b") and store.admin_key() == "adm"

    store.stage_pending("API_KEYS", ["n1", "n2"], "API_KEYS-2026-Q4")
    store.stage_pending("API_KEYS", ["n1", "n2"], "API_KEYS-2026-Q4")  # a re-run: the same version
    state = store.state("API_KEYS")
    assert (
        state.pending == ("n1", "n2")
        and state.rotation_id == "API_KEYS-2026-Q4"
        and state.outgoing == ("a", "b")
    )
    assert labels(sm, f"{name}API_KEYS")["AWSPENDING"] == ["n1", "n2"]

    store.serve("API_KEYS", ["a", "b", "n1", "n2"])
    store.serve("API_KEYS", ["a", "b", "n1", "n2"])
    assert labels(sm, f"{name}API_KEYS")["AWSCURRENT"] == ["a", "b", "n1", "n2"]
    store.serve("API_KEYS", ["n1", "n2"])  # AWSCURRENT moves onto the pending version
    store.finish("API_KEYS")
    final = labels(sm, f"{name}API_KEYS")
    assert final["AWSCURRENT"] == ["n1", "n2"] and final["AWSPREVIOUS"] == ["a", "b"]
    assert "AWSPENDING" not in final
    state = store.state("API_KEYS")
    assert state.served == ("n1", "n2") and state.previous == ("a", "b") and state.pending is None


def test_secrets_manager_rollback_serves_the_outgoing_version_again(secrets_manager):
    sm = client(secrets_manager)
    name = f"r{os.getpid()}/"
    sm.create_secret(Name=f"{name}API_KEYS", SecretString=json.dumps({"keys": ["a"]}))
    store = SecretsManagerStore(sm, name)
    store.stage_pending("API_KEYS", ["n"], "r1")
    store.serve("API_KEYS", ["a", "n"])
    store.serve("API_KEYS", ["a"])
    store.discard_pending("API_KEYS")
    found = labels(sm, f"{name}API_KEYS")
    assert found["AWSCURRENT"] == ["a"] and "AWSPENDING" not in found
    with pytest.raises(KeyStoreError, match=f"{name}ADMIN_KEYS"):
        store.state("ADMIN_KEYS")


def test_the_amazon_providers_hook_reaches_the_same_endpoint(secrets_manager, monkeypatch):
    from stellar_ops.adapters.rotation import secrets_client
    from stellar_ops.registry import parse_config
    from stellar_ops.runtime import Runtime

    conn = {
        "conn_type": "aws",
        "login": "test",
        "password": "test",
        "extra": {"endpoint_url": secrets_manager, "region_name": "us-east-1"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_STELLAR_SECRETS", json.dumps(conn))
    sm = secrets_client(Runtime(parse_config(None), resources=None))  # type: ignore[arg-type]
    sm.create_secret(Name=f"hook{os.getpid()}", SecretString="{}")
    assert (
        client(secrets_manager).describe_secret(SecretId=f"hook{os.getpid()}")["Name"] == f"hook{os.getpid()}"
    )


def test_http_reload_makes_the_stand_in_read_its_keys_again(stand_in):
    stand_in.env_file.write_text(stand_in.env_file.read_text().replace(stand_in.api_keys[0], "sk_new"))
    assert stand_in.status("sk_new") == 403
    reload = HttpReload(HttpEndpoint(stand_in.url))
    assert reload.restart(lambda: stand_in.admin_keys[0]) >= 0
    assert stand_in.status("sk_new") == 200 and stand_in.status(stand_in.api_keys[0]) == 403
    with pytest.raises(RestartError, match="403"):
        reload.restart(lambda: "not-an-admin-key")


def test_a_restart_command_runs_without_a_shell_and_its_failure_is_named(tmp_path):
    marker = tmp_path / "restarted"
    CommandRestart([sys.executable, "-c", f"open({str(marker)!r}, 'w').write('x')"]).restart(lambda: None)
    assert marker.read_text() == "x"
    with pytest.raises(RestartError, match="exited 3: boom"):
        CommandRestart(
            [sys.executable, "-c", "import sys; print('boom', file=sys.stderr); sys.exit(3)"]
        ).restart(lambda: None)
    with pytest.raises(RestartError, match="restart_command is empty"):
        CommandRestart([])


def test_docker_restart_asks_the_daemon_to_restart_the_api_container():
    import docker

    with FakeDockerDaemon() as daemon:
        daemon.containers["stellar-escrow-api-1"] = Container("stellar-escrow-api-1", {}, daemon.root)
        api = docker.APIClient(base_url=daemon.url, version="1.41", timeout=10)
        DockerRestart(api, "stellar-escrow-api-1").restart(lambda: None)
        assert daemon.calls("POST", r"/containers/stellar-escrow-api-1/restart")
        with pytest.raises(RestartError, match="no-such-api"):
            DockerRestart(api, "no-such-api").restart(lambda: None)


class DeployFromSecretsManager:
    """A restart as a deployment that reads AWSCURRENT does it: write the API's env, restart."""

    name = "deploy"

    def __init__(self, sm, prefix: str, stand_in) -> None:
        self.sm, self.prefix, self.stand_in = sm, prefix, stand_in

    def restart(self, admin_key) -> float:
        lines = []
        for key_set in ("API_KEYS", "ADMIN_KEYS"):
            # AWSCURRENT named: moto's default version does not follow a moved label (AWS's does)
            answer = self.sm.get_secret_value(SecretId=self.prefix + key_set, VersionStage="AWSCURRENT")
            value = json.loads(answer["SecretString"])
            lines.append(f"{key_set}={','.join(value['keys'])}")
        self.stand_in.env_file.write_text("\n".join(lines) + "\n")
        self.stand_in.restart()
        return 0.0


def test_a_whole_rotation_with_the_keys_in_secrets_manager(secrets_manager, stand_in, ops):
    from datetime import UTC, datetime

    from stellar_ops.cli.env import EnvResources
    from stellar_ops.rotation import flow
    from stellar_ops.rotation.backends import Tools
    from stellar_ops.runtime import Runtime

    sm = client(secrets_manager)
    prefix = f"whole{os.getpid()}/"
    sm.create_secret(Name=prefix + "API_KEYS", SecretString=json.dumps({"keys": stand_in.api_keys}))
    sm.create_secret(Name=prefix + "ADMIN_KEYS", SecretString=json.dumps({"keys": stand_in.admin_keys}))
    ops.update(
        rotation={
            "key_store": "aws_secrets_manager",
            "secret_prefix": prefix,
            "ledger_key": f"{ops.prefix}ledger.json",
        }
    )
    config = ops.config
    rt = Runtime(config, EnvResources(config))
    tools = Tools(
        SecretsManagerStore(sm, prefix),
        DeployFromSecretsManager(sm, prefix, stand_in),
        HttpEndpoint(stand_in.url),
    )
    plan = flow.plan(
        rt,
        key_set="API_KEYS",
        count=2,
        transition_days=1 / 86400,
        reason="scheduled",
        dry_run=False,
        slot=datetime(2026, 10, 1, 9, tzinfo=UTC),
        run_id="sm-test",
    )
    assert isinstance(plan, flow.Plan)
    flow.generate(rt, tools, plan)
    flow.add(rt, tools, plan)
    flow.restart(rt, tools, plan, "add")
    flow.test(rt, tools, plan)
    flow.remove(rt, tools, plan)
    flow.restart(rt, tools, plan, "remove")
    flow.verify(rt, tools, plan)
    flow.finish(rt, tools, plan, datetime.now(UTC), "test")
    found = labels(sm, prefix + "API_KEYS")
    assert found["AWSPREVIOUS"] == stand_in.api_keys and "AWSPENDING" not in found
    assert all(stand_in.status(k) == 200 for k in found["AWSCURRENT"])
    assert all(stand_in.status(k) == 403 for k in stand_in.api_keys)
