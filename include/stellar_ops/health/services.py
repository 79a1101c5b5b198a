"""Every expected service up: containers through the Docker API, or each endpoint reached for real.

- Docker: each of ``health.services`` has a container that is running, healthy when it has a
  healthcheck, and restarted no more than ``health.max_restarts`` times since the previous check;
- endpoints: PostgreSQL runs a query, Redis answers ``PING``, the API's ``/health`` answers, the
  bucket answers ``HeadBucket``, and each of ``health.endpoints`` connects, shakes hands or answers.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from stellar_ops.core.http import HttpEndpoint, RedisTarget
from stellar_ops.health.config import Endpoint, HealthConfig
from stellar_ops.health.results import AlertRef, CheckResult, Status, worst
from stellar_ops.postgres.target import PgTarget, clean_error, connection_error

NAME = "services"
DOWN = AlertRef("ServiceDown", "P1", "RB-001")


@dataclass(frozen=True)
class Probe:
    """One thing reached: its name, whether it answered, and what it said or why not."""

    name: str
    up: bool
    detail: str
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "up": self.up, "detail": self.detail, "seconds": round(self.seconds, 3)}


def timed(name: str, action: Callable[[], str]) -> Probe:
    started = time.monotonic()
    try:
        detail = action()
    except TimeoutError:
        return Probe(name, False, "did not answer in time", time.monotonic() - started)
    except Exception as exc:  # noqa: BLE001 - every failure to reach a service is that service down
        text = " ".join(str(exc).split())[:240] or type(exc).__name__
        return Probe(name, False, text, time.monotonic() - started)
    return Probe(name, True, detail, time.monotonic() - started)


def postgres(target: PgTarget, timeout: float) -> str:
    import psycopg

    target.check_files()  # a missing certificate file is named, not reported as the server down
    kwargs = target.bounded(timeout).connect_kwargs()
    try:
        with psycopg.connect(autocommit=True, **kwargs) as conn:
            row = conn.execute("SELECT current_setting('server_version'), pg_is_in_recovery()").fetchone()
    except psycopg.OperationalError as exc:
        # names the TLS setting at fault when there is one (connection_error's ConfigError text)
        raise ConnectionError(str(connection_error(str(exc), target))) from None
    except psycopg.Error as exc:
        raise ConnectionError(f"{target.describe()}: {clean_error(str(exc), target)}") from None
    assert row is not None
    return f"PostgreSQL {row[0]} answered a query{' (in recovery)' if row[1] else ''}"


def redis_ping(target: RedisTarget, timeout: float) -> str:
    """``PING`` in RESP over a plain socket (``AUTH`` first when there is a password)."""
    with socket.create_connection((target.host, target.port), timeout=timeout) as raw:
        sock: socket.socket = raw
        if target.tls:
            sock = ssl.create_default_context().wrap_socket(raw, server_hostname=target.host)
        if target.password:
            args = [target.username, target.password] if target.username else [target.password]
            sock.sendall(_command("AUTH", *args))
            reply = _line(sock)
            if not reply.startswith(b"+OK"):
                raise ConnectionError(f"{target.describe()} refused AUTH")
        sock.sendall(_command("PING"))
        reply = _line(sock)
    if not reply.startswith(b"+PONG"):
        raise ConnectionError(f"{target.describe()} answered {reply[:80]!r} to PING")
    return "PONG"


def _command(*parts: str) -> bytes:
    out = [f"*{len(parts)}\r\n".encode()]
    for part in parts:
        data = part.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _line(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = sock.recv(256)
        if not chunk:
            raise ConnectionError("the connection closed before an answer")
        data += chunk
    return data


def api_health(endpoint: HttpEndpoint, timeout: float) -> str:
    import requests

    headers = {"X-API-Key": endpoint.secret} if endpoint.secret else {}
    try:
        response = requests.get(endpoint.url("/health"), headers=headers, timeout=timeout)
    except requests.Timeout:
        raise TimeoutError from None
    except requests.RequestException as exc:
        raise ConnectionError(f"{endpoint.url('/health')}: {type(exc).__name__}") from None
    if response.status_code >= 400:
        raise ConnectionError(f"{endpoint.url('/health')} answered HTTP {response.status_code}")
    return f"/health answered {response.status_code}"


def endpoint(item: Endpoint, timeout: float) -> str:
    parts = urlsplit(item.url)
    if parts.scheme in ("http", "https"):
        import requests

        try:
            response = requests.get(item.url, timeout=timeout)
        except requests.Timeout:
            raise TimeoutError from None
        except requests.RequestException as exc:
            raise ConnectionError(f"{item.url}: {type(exc).__name__}") from None
        if response.status_code >= 400:
            raise ConnectionError(f"{item.url} answered HTTP {response.status_code}")
        return f"answered HTTP {response.status_code}"
    host, port = parts.hostname or "", int(parts.port or 0)
    with socket.create_connection((host, port), timeout=timeout) as raw:
        if parts.scheme == "tcp":
            return f"accepted a connection on {host}:{port}"
        context = ssl.create_default_context()
        with context.wrap_socket(raw, server_hostname=item.server_name or host) as tls:
            return f"TLS handshake with {item.server_name or host} ({tls.version()})"


def from_probes(probes: list[Probe], source: str) -> CheckResult:
    down = [p for p in probes if not p.up]
    items = [p.as_dict() for p in probes]
    if not probes:
        return CheckResult(NAME, "unknown", f"nothing to check ({source}): no service is configured", items)
    if down:
        names = ", ".join(f"{p.name} ({p.detail})" for p in down)
        return CheckResult(
            NAME, "critical", f"{len(down)} of {len(probes)} down: {names}", items, DOWN, DOWN.runbook
        )
    return CheckResult(
        NAME, "ok", f"{len(probes)} reachable ({source}): {', '.join(p.name for p in probes)}", items
    )


def by_endpoints(probes: dict[str, Callable[[], str]], *, note: str | None = None) -> CheckResult:
    """Every probe at once (one hung service must not wait out another's timeout)."""
    with ThreadPoolExecutor(max_workers=max(1, len(probes))) as pool:
        futures = {name: pool.submit(timed, name, action) for name, action in probes.items()}
        results = [future.result() for future in futures.values()]
    result = from_probes(results, "reachability")
    if note:
        result = CheckResult(
            result.name, result.status, f"{result.detail}; {note}", result.items, result.alert, result.runbook
        )
    return result


def container_name(container: dict[str, Any]) -> str:
    labels = container.get("Labels") or {}
    service = labels.get("com.docker.compose.service")
    if service:
        return str(service)
    names = container.get("Names") or [""]
    return str(names[0]).lstrip("/")


def by_docker(
    client: Any, settings: HealthConfig, previous_restarts: dict[str, int]
) -> tuple[CheckResult, dict[str, int]]:
    """The expected containers' state, health and restarts; and the restart counts to remember."""
    listed = client.containers(all=True)
    found: dict[str, dict[str, Any]] = {}
    for container in listed:
        names = {container_name(container), *(n.lstrip("/") for n in container.get("Names") or [])}
        for wanted in settings.services:
            if wanted in names and wanted not in found:
                found[wanted] = container
    items: list[dict[str, Any]] = []
    states: list[Status] = []
    problems: list[str] = []
    restarts: dict[str, int] = {}
    for wanted in settings.services:
        container = found.get(wanted)
        if container is None:
            items.append({"name": wanted, "state": "missing", "health": None, "restarts": None})
            states.append("critical")
            problems.append(f"{wanted} has no container")
            continue
        inspect = client.inspect_container(container["Id"])
        state = inspect.get("State") or {}
        status = str(state.get("Status") or container.get("State") or "unknown")
        health = (state.get("Health") or {}).get("Status")
        count = int(inspect.get("RestartCount") or 0)
        restarts[wanted] = count
        since = max(0, count - previous_restarts[wanted]) if wanted in previous_restarts else None
        items.append(
            {
                "name": wanted,
                "state": status,
                "health": health,
                "restarts": count,
                "restarts_since_previous": since,
            }
        )
        if status != "running":
            states.append("critical")
            problems.append(f"{wanted} is {status}")
        elif health == "unhealthy":
            states.append("critical")
            problems.append(f"{wanted} is unhealthy")
        elif health == "starting":
            states.append("warning")
            problems.append(f"{wanted} is still starting")
        elif since is not None and since > settings.max_restarts:
            states.append("warning")
            problems.append(f"{wanted} restarted {since} times since the previous check")
        else:
            states.append("ok")
    status_ = worst(states)
    if status_ == "ok":
        detail = f"{len(settings.services)} containers running and healthy (Docker)"
    else:
        detail = "; ".join(problems)
    alert = DOWN if status_ == "critical" else None
    return CheckResult(NAME, status_, detail, items, alert, DOWN.runbook if alert else "SEC-1.1"), restarts
