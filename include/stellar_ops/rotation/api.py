"""Asking the API which keys it accepts, and waiting until it is healthy after a restart."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from stellar_ops.core.errors import StellarOpsError
from stellar_ops.core.http import HttpEndpoint
from stellar_ops.rotation.keys import fingerprint


class ApiUnhealthyError(StellarOpsError):
    """The API did not answer healthy in time."""


@dataclass(frozen=True)
class KeyCheck:
    fingerprint: str
    status: int  # the HTTP status; 0 when the API could not be reached

    @property
    def accepted(self) -> bool:
        return 200 <= self.status < 300


def check_key(endpoint: HttpEndpoint, path: str, key: str, timeout: float = 10) -> KeyCheck:
    import requests

    try:
        response = requests.get(endpoint.url(path), headers={"X-API-Key": key}, timeout=timeout)
    except requests.RequestException:
        return KeyCheck(fingerprint(key), 0)
    return KeyCheck(fingerprint(key), response.status_code)


def check_keys(endpoint: HttpEndpoint, path: str, keys: Iterable[str]) -> list[KeyCheck]:
    return [check_key(endpoint, path, key) for key in keys]


def wait_healthy(endpoint: HttpEndpoint, key: str, timeout: float, interval: float = 0.2) -> float:
    """Seconds until ``GET /health`` with ``key`` answers 200."""
    started = time.monotonic()
    last = 0
    while True:
        last = check_key(endpoint, "/health", key, timeout=5).status
        if last == 200:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise ApiUnhealthyError(
                f"the API at {endpoint.base_url} did not answer /health with 200 within {timeout:g}s "
                f"(last answer: {last or 'no connection'}) with key {fingerprint(key)}"
            )
        time.sleep(interval)
