"""The rolling restart's order and stop, and the backend each service gets."""

from __future__ import annotations

import pytest

from stellar_ops.changes.config import ChangesConfig, RestartSpec
from stellar_ops.changes.restarts import (
    ServiceRestart,
    build_restarters,
    health_gate,
    rolling_restart,
    service_endpoint,
)
from stellar_ops.core.errors import ConfigError
from stellar_ops.core.http import HttpEndpoint
from stellar_ops.rotation.config import RotationConfig
from stellar_ops.rotation.restart import CommandRestart, DockerRestart, HttpReload, RestartError


class Recorder:
    def __init__(self, name, log, fail=False):
        self.name = name
        self.log = log
        self.fail = fail

    def restart(self, admin_key):
        self.log.append(("restart", self.name, admin_key()))
        if self.fail:
            raise RestartError(f"{self.name} refused")
        return 0.0


def test_services_restart_one_after_another_each_healthy_first():
    log, said = [], []

    def healthy(service):
        log.append(("health", service))
        return None

    restarters = {s: Recorder(s, log) for s in ("api", "worker")}
    done = rolling_restart(["api", "worker"], restarters, healthy, said.append, admin_key=lambda: "adm")
    assert log == [
        ("restart", "api", "adm"),
        ("health", "api"),
        ("restart", "worker", "adm"),
        ("health", "worker"),
    ]
    assert [(r.service, r.ok, r.error) for r in done] == [("api", True, None), ("worker", True, None)]
    assert said[0] == "restarting api (1 of 2) through api"
    assert ServiceRestart.from_dict(done[0].as_dict()) == done[0]


def test_the_roll_stops_at_the_first_unhealthy_service():
    log, said = [], []
    restarters = {s: Recorder(s, log) for s in ("api", "worker", "web")}
    done = rolling_restart(
        ["api", "worker", "web"], restarters, lambda s: "HTTP 503" if s == "api" else None, said.append
    )
    assert [entry[1] for entry in log] == ["api"]
    assert len(done) == 1 and not done[0].ok
    assert done[0].error == "unhealthy after its restart: HTTP 503"
    assert said[-1].endswith("the rolling restart stops (worker, web not restarted)")


def test_a_failed_restart_stops_the_roll_without_asking_health():
    log = []
    restarters = {"api": Recorder("api", log, fail=True), "worker": Recorder("worker", log)}
    asked = []
    done = rolling_restart(["api", "worker"], restarters, asked.append, lambda _: None)
    assert asked == [] and len(done) == 1
    assert done[0].error == "restart failed: api refused"


def test_health_is_asked_again_until_it_passes_within_the_wait():
    answers = iter(["starting", "starting", None])
    done = rolling_restart(
        ["api"],
        {"api": Recorder("api", [])},
        lambda _: next(answers),
        lambda _: None,
        wait_seconds=5,
        poll_seconds=0.01,
    )
    assert done[0].ok


def test_a_service_without_a_backend_is_refused_before_anything_restarts():
    log = []
    with pytest.raises(ConfigError, match="no restart backend for service.* worker"):
        rolling_restart(["api", "worker"], {"api": Recorder("api", log)}, lambda _: None, lambda _: None)
    assert log == []


API = HttpEndpoint("http://api:8000", "sk_live_x")


def test_each_service_gets_its_backend_and_the_api_the_rotations():
    settings = ChangesConfig(
        services=["api", "worker", "cron", "web"],
        restart={
            "worker": RestartSpec(backend="docker", container="escrow-worker-1"),
            "cron": RestartSpec(backend="command", command=["systemctl", "restart", "cron"]),
            "web": RestartSpec(backend="http_reload", url="http://web:9000", reload_path="/reload"),
        },
    )
    rotation = RotationConfig(restart="http_reload")
    asked = []
    built = build_restarters(settings, rotation, API, lambda: asked.append(1) or object())
    assert isinstance(built["api"], HttpReload) and built["api"].endpoint == API
    assert isinstance(built["worker"], DockerRestart) and built["worker"].container == "escrow-worker-1"
    assert isinstance(built["cron"], CommandRestart) and built["cron"].argv[0] == "systemctl"
    assert (
        isinstance(built["web"], HttpReload)
        and built["web"].endpoint.url("/reload") == "http://web:9000/reload"
    )
    assert asked == [1]
    assert service_endpoint("web", settings, rotation, API) == HttpEndpoint("http://web:9000", "sk_live_x")
    assert service_endpoint("worker", settings, rotation, API) is None
    assert service_endpoint("api", settings, rotation, API) == API
    assert health_gate(settings, rotation, API)("worker") is None  # no endpoint: the checks after judge it


@pytest.mark.parametrize(
    ("settings", "rotation", "api", "message"),
    [
        (ChangesConfig(), RotationConfig(restart="http_reload"), None, "rotation.restart is http_reload"),
        (
            ChangesConfig(services=["w"], restart={"w": RestartSpec(backend="docker")}),
            RotationConfig(),
            API,
            "changes.restart.w is 'docker' but names no container",
        ),
        (
            ChangesConfig(services=["w"], restart={"w": RestartSpec(backend="command")}),
            RotationConfig(),
            API,
            "changes.restart.w is 'command' but names no command",
        ),
        (ChangesConfig(), RotationConfig(restart="docker"), API, "no Docker connection"),
    ],
)
def test_a_backend_that_cannot_work_is_named(settings, rotation, api, message):
    with pytest.raises(ConfigError, match=message):
        build_restarters(settings, rotation, api, lambda: None)
