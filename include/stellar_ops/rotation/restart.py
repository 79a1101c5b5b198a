"""Restarting the API so it reads its keys again: one interface, three backends.

- :class:`DockerRestart`: ``docker compose restart api`` through the Docker daemon (production);
- :class:`CommandRestart`: a configured command (systemd, a deploy script), run without a shell;
- :class:`HttpReload`: ``POST /_reload`` with an admin key (the local API stand-in re-reads its
  env file without dropping a request, which keeps the restart window at zero).

Each returns how long the API was unavailable to the restart itself, in seconds; the caller then
waits until the API answers healthy (:func:`stellar_ops.rotation.api.wait_healthy`).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import Any, Protocol

from stellar_ops.core.errors import StellarOpsError
from stellar_ops.core.http import HttpEndpoint


class RestartError(StellarOpsError):
    """The API could not be restarted."""


class Restarter(Protocol):
    name: str

    def restart(self, admin_key: Callable[[], str | None]) -> float:
        """Restart the API; ``admin_key`` gives a key the running API accepts as admin."""
        ...


class HttpReload:
    name = "http_reload"

    def __init__(self, endpoint: HttpEndpoint, path: str = "/_reload", timeout: float = 10) -> None:
        self.endpoint = endpoint
        self.path = path
        self.timeout = timeout

    def restart(self, admin_key: Callable[[], str | None]) -> float:
        import requests

        key = admin_key()
        if not key:
            raise RestartError("no admin key is served, so the API's reload endpoint cannot be called")
        started = time.monotonic()
        try:
            response = requests.post(
                self.endpoint.url(self.path), headers={"X-API-Key": key}, timeout=self.timeout
            )
        except requests.RequestException as exc:
            raise RestartError(f"POST {self.endpoint.url(self.path)} failed: {type(exc).__name__}") from None
        if response.status_code >= 300:
            raise RestartError(f"POST {self.endpoint.url(self.path)} answered {response.status_code}")
        return time.monotonic() - started


class CommandRestart:
    name = "command"

    def __init__(self, argv: list[str], timeout: float = 300) -> None:
        if not argv:
            raise RestartError("rotation.restart is 'command' but rotation.restart_command is empty")
        self.argv = argv
        self.timeout = timeout

    def restart(self, admin_key: Callable[[], str | None]) -> float:
        started = time.monotonic()
        try:
            result = subprocess.run(
                self.argv, capture_output=True, text=True, timeout=self.timeout, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RestartError(f"restart command {self.argv[0]!r} failed: {exc}") from None
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or [""]
            raise RestartError(
                f"restart command {self.argv[0]!r} exited {result.returncode}: {tail[0][:200]}"
            )
        return time.monotonic() - started


class DockerRestart:
    """``docker compose restart api``: the daemon's restart of the API's container."""

    name = "docker"

    def __init__(self, client: Any, container: str, timeout: int = 30) -> None:
        self.client = client
        self.container = container
        self.timeout = timeout

    def restart(self, admin_key: Callable[[], str | None]) -> float:
        started = time.monotonic()
        try:
            self.client.restart(self.container, timeout=self.timeout)
        except Exception as exc:
            raise RestartError(f"docker restart of container {self.container!r} failed: {exc}") from None
        return time.monotonic() - started
