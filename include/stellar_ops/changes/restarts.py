"""A rolling restart: the named services one after another, each healthy before the next.

The backends are the key rotation's (:mod:`stellar_ops.rotation.restart`): a Docker container, a
command, or ``POST /_reload``. A service that is not healthy after its restart stops the roll, so
at most one service runs a bad config while the change is reverted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from stellar_ops.changes.config import ChangesConfig, RestartSpec
from stellar_ops.core.errors import ConfigError, StellarOpsError
from stellar_ops.core.http import HttpEndpoint
from stellar_ops.health import services as health_services
from stellar_ops.rotation.config import RotationConfig
from stellar_ops.rotation.restart import CommandRestart, DockerRestart, HttpReload, Restarter

API = "api"


@dataclass(frozen=True)
class ServiceRestart:
    """One service's turn: restarted and healthy (``ok``), or why not; ``seconds`` from the restart
    to the answer of its health."""

    service: str
    ok: bool
    seconds: float
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ServiceRestart:
        return cls(str(data["service"]), bool(data["ok"]), float(data["seconds"]), data.get("error"))


def _no_key() -> str | None:
    return None


def rolling_restart(
    services: list[str],
    restarters: Mapping[str, Restarter],
    healthy: Callable[[str], str | None],
    say: Callable[[str], None],
    *,
    admin_key: Callable[[], str | None] = _no_key,
    wait_seconds: float = 0,
    poll_seconds: float = 1,
) -> list[ServiceRestart]:
    """Restart ``services`` in order; after each, ``healthy(service)`` (None, or why not) must pass
    (asked again every ``poll_seconds`` for up to ``wait_seconds``) before the next is touched.

    Stops at the first failure: the list ends with it, and the services after it were not
    restarted. ``admin_key`` gives a key the running API accepts (the http_reload backend).
    """
    missing = [s for s in services if s not in restarters]
    if missing:
        raise ConfigError(f"no restart backend for service(s) {', '.join(missing)} (changes.restart)")
    done: list[ServiceRestart] = []
    for index, service in enumerate(services, start=1):
        restarter = restarters[service]
        say(f"restarting {service} ({index} of {len(services)}) through {restarter.name}")
        started = time.monotonic()
        try:
            restarter.restart(admin_key)
        except StellarOpsError as exc:
            done.append(ServiceRestart(service, False, time.monotonic() - started, f"restart failed: {exc}"))
        else:
            reason = _wait_healthy(service, healthy, wait_seconds, poll_seconds)
            seconds = time.monotonic() - started
            if reason is None:
                done.append(ServiceRestart(service, True, seconds))
                say(f"{service} restarted and healthy in {seconds:.1f}s")
                continue
            done.append(ServiceRestart(service, False, seconds, f"unhealthy after its restart: {reason}"))
        rest = services[index:]
        say(
            f"{service}: {done[-1].error}; the rolling restart stops"
            + (f" ({', '.join(rest)} not restarted)" if rest else "")
        )
        break
    return done


def _wait_healthy(
    service: str, healthy: Callable[[str], str | None], wait_seconds: float, poll_seconds: float
) -> str | None:
    deadline = time.monotonic() + wait_seconds
    while True:
        reason = healthy(service)
        if reason is None or time.monotonic() + poll_seconds > deadline:
            return reason
        time.sleep(poll_seconds)


def spec_of(service: str, settings: ChangesConfig, rotation: RotationConfig) -> RestartSpec:
    """The service's ``changes.restart`` entry; without one it restarts as the rotation restarts the API."""
    spec = settings.restart.get(service)
    if spec is not None:
        return spec
    return RestartSpec(
        backend=rotation.restart,
        container=rotation.docker_container,
        command=list(rotation.restart_command),
        reload_path=rotation.reload_path,
    )


def service_endpoint(
    service: str, settings: ChangesConfig, rotation: RotationConfig, api: HttpEndpoint | None
) -> HttpEndpoint | None:
    """Where the service answers: its ``url`` (with the API's key), else the API itself for the API,
    a service without an entry or one reloaded over HTTP; None for a service with neither."""
    spec = settings.restart.get(service)
    if spec is not None and spec.url:
        return HttpEndpoint(spec.url, api.secret if api else None)
    if spec is None or service == API or spec.backend == "http_reload":
        return api
    return None


def build_restarters(
    settings: ChangesConfig,
    rotation: RotationConfig,
    api: HttpEndpoint | None,
    docker_client: Callable[[], Any | None],
) -> dict[str, Restarter]:
    """A restart backend for each of ``changes.services``; ``docker_client`` is asked only when one
    restarts through Docker."""
    restarters: dict[str, Restarter] = {}
    client: Any | None = None
    for service in settings.services:
        spec = spec_of(service, settings, rotation)
        where = f"changes.restart.{service}" if service in settings.restart else "rotation.restart"
        if spec.backend == "http_reload":
            endpoint = service_endpoint(service, settings, rotation, api)
            if endpoint is None:
                raise ConfigError(
                    f"{where} is http_reload but there is no URL to reload: set changes.restart.{service}.url "
                    "or configure the API (connections.api, or STELLAR_API_URL and STELLAR_API_KEY)"
                )
            restarters[service] = HttpReload(endpoint, spec.reload_path)
        elif spec.backend == "command":
            if not spec.command:
                raise ConfigError(f"{where} is 'command' but names no command")
            restarters[service] = CommandRestart(list(spec.command))
        else:
            if not spec.container:
                raise ConfigError(f"{where} is 'docker' but names no container")
            client = client if client is not None else docker_client()
            if client is None:
                raise ConfigError(
                    f"{where} is 'docker' but no Docker connection is configured (connections.docker)"
                )
            restarters[service] = DockerRestart(client, spec.container)
    return restarters


def health_gate(
    settings: ChangesConfig, rotation: RotationConfig, api: HttpEndpoint | None, timeout: float = 10
) -> Callable[[str], str | None]:
    """``healthy(service)`` for :func:`rolling_restart`: the services check's probe of the API's
    ``/health`` (:func:`stellar_ops.health.services.api_health`) against the service's endpoint.

    A service with no endpoint (a container without a URL) passes here; the health checks after
    the roll (``changes.health_checks``) judge it.
    """

    def healthy(service: str) -> str | None:
        endpoint = service_endpoint(service, settings, rotation, api)
        if endpoint is None:
            return None
        probe = health_services.timed(service, lambda: health_services.api_health(endpoint, timeout))
        return None if probe.up else probe.detail

    return healthy
