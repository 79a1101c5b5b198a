"""A config change for real: two API stand-ins reading one env file, rolled one after another and
judged by the services check's probe of /health; a change that makes the API unhealthy stops the
roll at the first service and is reverted to the very bytes before. The Secrets Manager store
against moto's server."""

from __future__ import annotations

import json
import os

import pytest
import requests

from stellar_ops.changes.config import ChangesConfig, RestartSpec
from stellar_ops.changes.restarts import build_restarters, health_gate, rolling_restart
from stellar_ops.changes.settings import (
    EnvFileSettings,
    SecretsManagerSettings,
    SettingsChange,
    SettingsError,
)
from stellar_ops.core.http import HttpEndpoint
from stellar_ops.rotation.config import RotationConfig
from stellar_ops.rotation.keystore import EnvFileStore
from tests.integration.rotation.test_backends import client, secrets_manager  # noqa: F401 - the fixture
from tests.support.api_stand_in import StandIn, new_stand_in

pytestmark = pytest.mark.integration


@pytest.fixture
def two_services(tmp_path):
    """Two stand-ins ("api" and "api-b") that read the same env file, as two replicas would."""
    first = new_stand_in(tmp_path / "a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "api.env").symlink_to(first.env_file)
    second = StandIn(tmp_path / "b", first.api_keys, first.admin_keys)
    try:
        second.start()
        yield first, second
    finally:
        second.stop()
        first.stop()


def health(service: StandIn) -> dict:
    answer = requests.get(service.url + "/health", headers={"X-API-Key": service.api_keys[0]}, timeout=5)
    return {"code": answer.status_code, **answer.json()}


def test_a_change_rolls_through_the_services_and_a_bad_one_stops_and_is_reverted(two_services):
    first, second = two_services
    settings = ChangesConfig(
        services=["api", "api-b"],
        restart={
            "api": RestartSpec(backend="http_reload", url=first.url),
            "api-b": RestartSpec(backend="http_reload", url=second.url),
        },
    )
    rotation = RotationConfig(restart="http_reload", env_file=str(first.env_file))
    api = HttpEndpoint(first.url, first.api_keys[0])
    restarters = build_restarters(settings, rotation, api, lambda: None)
    healthy = health_gate(settings, rotation, api, timeout=5)
    admin_key = EnvFileStore(first.env_file).admin_key  # the rotation's own way to the reload key
    said: list[str] = []

    def roll():
        return rolling_restart(settings.services, restarters, healthy, said.append, admin_key=admin_key)

    store = EnvFileSettings(first.env_file)
    original = first.env_file.read_bytes()
    start = store.current_version()

    # a good change: written, both services reloaded one after the other, both healthy with it
    store.write(SettingsChange({"INDEXER_LAG_SECONDS": "42"}, (), "OPS-7 indexer catching up"))
    done = roll()
    assert [(r.service, r.ok) for r in done] == [("api", True), ("api-b", True)], said
    assert health(first)["indexer_lag_seconds"] == 42 and health(second)["indexer_lag_seconds"] == 42
    assert said[0].startswith("restarting api (1 of 2)") and said[2].startswith("restarting api-b (2 of 2)")

    # a bad change: the first service fails its health, the second is never restarted
    before = first.env_file.read_bytes()
    previous = store.current_version()
    store.write(SettingsChange({"HEALTH_STATUS": "degraded"}, (), "OPS-8 try the degraded mode"))
    said.clear()
    done = roll()
    assert [(r.service, r.ok) for r in done] == [("api", False)], said
    assert "unhealthy after its restart" in (done[0].error or "") and "503" in (done[0].error or "")
    assert said[-1].endswith("the rolling restart stops (api-b not restarted)")
    assert health(first)["status"] == "degraded"
    untouched = health(second)  # still on the config before: it was not reloaded
    assert untouched["code"] == 200 and untouched["status"] == "ok"

    # revert: the very bytes before, reloaded, healthy again
    store.revert(previous)
    assert first.env_file.read_bytes() == before
    done = roll()
    assert all(r.ok for r in done) and len(done) == 2
    assert health(first)["status"] == "ok" and health(first)["indexer_lag_seconds"] == 42

    # and all the way back to the file as it was
    store.revert(start)
    assert first.env_file.read_bytes() == original
    assert EnvFileStore(first.env_file).state("API_KEYS").served == tuple(first.api_keys)


def test_secrets_manager_store_writes_a_new_current_and_reverts_to_the_kept_one(secrets_manager):  # noqa: F811
    sm = client(secrets_manager)
    secret_id = f"t{os.getpid()}/config"
    sm.create_secret(Name=secret_id, SecretString=json.dumps({"INDEXER_LAG_SECONDS": "2.5", "MODE": "a"}))
    store = SecretsManagerSettings(sm, secret_id)
    assert store.read() == {"INDEXER_LAG_SECONDS": "2.5", "MODE": "a"}
    first = store.current_version()

    second = store.write(SettingsChange({"INDEXER_LAG_SECONDS": "9"}, ("MODE",), "OPS-9"))
    assert second != first and store.current_version() == second
    assert store.read() == {"INDEXER_LAG_SECONDS": "9"}
    stages = {
        v["VersionId"]: v["VersionStages"] for v in sm.list_secret_version_ids(SecretId=secret_id)["Versions"]
    }
    assert stages[second] == ["AWSCURRENT"] and stages[first] == ["AWSPREVIOUS"]
    # the change already in place puts no new version
    assert store.write(SettingsChange({"INDEXER_LAG_SECONDS": "9"}, (), "OPS-9 again")) == second

    store.revert(first)
    assert store.current_version() == first
    assert store.read() == {"INDEXER_LAG_SECONDS": "2.5", "MODE": "a"}
    stages = {
        v["VersionId"]: v["VersionStages"] for v in sm.list_secret_version_ids(SecretId=secret_id)["Versions"]
    }
    assert "AWSCURRENT" in stages[first] and "AWSPREVIOUS" in stages[second]
    store.revert(first)  # again: nothing to do

    with pytest.raises(SettingsError, match="reading version nope"):
        store.revert("nope")
    sm.create_secret(Name=f"{secret_id}-list", SecretString="[1, 2]")
    with pytest.raises(SettingsError, match="is not a JSON object of variables"):
        SecretsManagerSettings(sm, f"{secret_id}-list").read()
    with pytest.raises(SettingsError, match="listing the versions of .*-missing' failed"):
        SecretsManagerSettings(sm, f"{secret_id}-missing").current_version()
