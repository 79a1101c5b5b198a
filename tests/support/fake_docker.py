"""A stand-in for the Docker Engine API, for the DR test's ``docker`` scratch backend.

No Docker daemon runs on the build machines. This HTTP server answers the calls the backend
makes (ping, version, image inspect/pull, container create/start/inspect/logs/remove), records
every request, and backs each "postgres" container with a real PostgreSQL server (initdb on a free
port, the container's POSTGRES_PASSWORD and ``-c`` settings), so a restore through the docker path
is real. It is a boundary double: image pulls and container isolation are not emulated.

Running workloads (:meth:`FakeDockerDaemon.run_workload`) are listed by ``GET /containers/json``
and report the CPU and memory they are given through ``GET /containers/{id}/stats``, as a
daemon's one-shot stats, for the checks that read container resources.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

from stellar_ops.core.processes import free_port, unprivileged_user
from stellar_ops.postgres.server import LocalPgServer

API_VERSION = "1.43"


class Container:
    def __init__(self, name: str, spec: dict[str, Any], root: Path) -> None:
        self.id = secrets.token_hex(32)
        self.name = name
        self.spec = spec
        self.root = root / name
        self.status = "created"
        self.server: LocalPgServer | None = None
        self.logs = ""
        self.host_port: int | None = None

    def env(self) -> dict[str, str]:
        return dict(item.split("=", 1) for item in self.spec.get("Env") or [])

    def settings(self) -> dict[str, str]:
        command = self.spec.get("Cmd") or []
        settings = {}
        for flag, value in zip(command, command[1:], strict=False):
            if flag == "-c":
                key, _, setting = value.partition("=")
                settings[key] = f"'{setting}'"
        return settings

    def start(self) -> None:
        self.root.mkdir(parents=True)
        self.host_port = free_port()
        self.server = LocalPgServer(
            self.root,
            port=self.host_port,
            run_as=unprivileged_user("postgres"),
            settings=self.settings(),
            password=self.env()["POSTGRES_PASSWORD"],
        )
        try:
            self.server.init()
            self.server.start(timeout=60)
            self.status = "running"
        except Exception as exc:  # noqa: BLE001 - a container whose postgres died
            self.status = "exited"
            self.logs = f"{exc}\n{self.server.log_path.read_text(errors='replace') if self.server.log_path.exists() else ''}"

    def remove(self) -> None:
        if self.server is not None:
            self.server.remove()
        shutil.rmtree(self.root, ignore_errors=True)

    def inspect(self) -> dict[str, Any]:
        ports = (
            {"5432/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(self.host_port)}]} if self.host_port else {}
        )
        return {
            "Id": self.id,
            "Name": f"/{self.name}",
            "State": {"Status": self.status, "Running": self.status == "running"},
            "Config": {
                "Image": self.spec.get("Image"),
                "Env": self.spec.get("Env"),
                "Labels": self.spec.get("Labels"),
                "Tty": True,
            },
            "NetworkSettings": {"Ports": ports},
        }


class FakeDockerDaemon:
    """Runs in a thread; ``url`` is a ``tcp://`` address for DockerHook/APIClient."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, Any]] = []
        self.containers: dict[str, Container] = {}
        self.images: set[str] = set()
        self.workloads: dict[str, dict[str, Any]] = {}
        self.root = Path(tempfile.mkdtemp(prefix="fake-docker-"))
        self.root.chmod(0o755)
        self.lock = threading.Lock()
        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def __enter__(self) -> FakeDockerDaemon:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        for container in list(self.containers.values()):
            container.remove()
        shutil.rmtree(self.root, ignore_errors=True)

    def calls(self, method: str, pattern: str) -> list[tuple[str, str, Any]]:
        return [r for r in self.requests if r[0] == method and re.search(pattern, r[1])]

    def run_workload(
        self, name: str, *, memory_mb: float, cpu_percent: float = 5.0, image: str = "stellar/app:1"
    ) -> None:
        """A running container whose stats show ``memory_mb`` (10^6 bytes) and ``cpu_percent``."""
        self.workloads[name] = {
            "Id": secrets.token_hex(32),
            "name": name,
            "image": image,
            "memory": int(memory_mb * 1_000_000),
            "cpu": cpu_percent,
        }

    def _stats(self, workload: dict[str, Any]) -> dict[str, Any]:
        cpus, system = 2, 2_000_000_000
        usage = int(workload["cpu"] / 100 * system / cpus)
        cache = 5_000_000  # page cache: docker stats leaves it out of the usage it shows
        return {
            "read": "2026-01-01T00:00:00Z",
            "cpu_stats": {
                "cpu_usage": {"total_usage": 10**9 + usage},
                "system_cpu_usage": 10**12 + system,
                "online_cpus": cpus,
            },
            "precpu_stats": {"cpu_usage": {"total_usage": 10**9}, "system_cpu_usage": 10**12},
            "memory_stats": {
                "usage": workload["memory"] + cache,
                "limit": 2 * 10**9,
                "stats": {"inactive_file": cache},
            },
        }

    def _find(self, ref: str) -> Container | None:
        return self.containers.get(ref) or next(
            (c for c in self.containers.values() if c.id.startswith(ref)), None
        )

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        """A :class:`DaemonHandler` class bound to this daemon (the server builds a handler per request)."""

        class Handler(DaemonHandler):
            pass

        Handler.daemon = self
        return Handler


@dataclass(frozen=True)
class Request:
    """What a route's answer reads: the route's match (its groups name the container or image), the
    query string and the JSON body (POST only)."""

    match: re.Match[str]
    query: dict[str, list[str]]
    body: Any = None


class DaemonHandler(BaseHTTPRequestHandler):
    """Answers one Engine API call against ``daemon``; the routes are in :attr:`ROUTES`."""

    protocol_version = "HTTP/1.1"
    daemon: FakeDockerDaemon

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        return

    def _reply(
        self,
        status: int,
        body: Any = None,
        raw: bytes | None = None,
        content_type: str = "application/json",
    ) -> None:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Api-Version", API_VERSION)
        self.end_headers()
        self.wfile.write(data)

    def _no_such(self, what: str) -> None:
        self._reply(404, {"message": f"No such {what}"})

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(length) if length else b""
        return json.loads(data) if data else None

    def do_HEAD(self) -> None:  # noqa: N802 - stdlib name
        self._reply(200, raw=b"")

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        self._dispatch("POST", self._body())

    def do_DELETE(self) -> None:  # noqa: N802 - stdlib name
        self._dispatch("DELETE")

    def _dispatch(self, method: str, body: Any = None) -> None:
        """Records the call, then answers it through the first route of ``method`` whose pattern
        matches the whole path (the API version prefix, ``/v1.43``, stripped)."""
        parts = urlsplit(self.path)
        path = re.sub(r"^/v[0-9.]+", "", parts.path)
        self.daemon.requests.append((method, self.path, body))
        for route_method, pattern, answer in self.ROUTES:
            match = pattern.fullmatch(path) if route_method == method else None
            if match:
                answer(self, Request(match, parse_qs(parts.query), body))
                return
        self._reply(404, {"message": f"fake daemon has no route {path}"})

    def _ping(self, request: Request) -> None:
        self._reply(200, raw=b"OK", content_type="text/plain")

    def _version(self, request: Request) -> None:
        self._reply(200, {"ApiVersion": API_VERSION, "Version": "fake-24.0", "MinAPIVersion": "1.24"})

    def _list_workloads(self, request: Request) -> None:
        self._reply(
            200,
            [
                {"Id": w["Id"], "Names": [f"/{w['name']}"], "Image": w["image"], "State": "running"}
                for w in self.daemon.workloads.values()
            ],
        )

    def _workload_stats(self, request: Request) -> None:
        workload_id = request.match[1]
        workload = next((w for w in self.daemon.workloads.values() if w["Id"] == workload_id), None)
        if workload is None:
            self._no_such(f"container: {workload_id}")
            return
        self._reply(200, self.daemon._stats(workload))

    def _inspect_image(self, request: Request) -> None:
        image = request.match[1]
        if image in self.daemon.images:
            self._reply(200, {"Id": image})
        else:
            self._no_such(f"image: {image}")

    def _inspect_container(self, request: Request) -> None:
        container = self.daemon._find(request.match[1])
        if container is None:
            self._no_such(f"container: {request.match[1]}")
            return
        self._reply(200, container.inspect())

    def _container_logs(self, request: Request) -> None:
        container = self.daemon._find(request.match[1])
        if container is None:
            self._no_such(f"container: {request.match[1]}")
            return
        self._reply(
            200, raw=container.logs.encode()[-2000:], content_type="application/vnd.docker.raw-stream"
        )

    def _pull_image(self, request: Request) -> None:
        image = f"{request.query['fromImage'][0]}:{request.query.get('tag', ['latest'])[0]}"
        self.daemon.images.add(image)
        self._reply(200, raw=json.dumps({"status": f"Pulled {image}"}).encode() + b"\n")

    def _create_container(self, request: Request) -> None:
        name = request.query["name"][0]
        daemon = self.daemon
        with daemon.lock:
            if name in daemon.containers:
                self._reply(409, {"message": f"Conflict: {name} is in use"})
                return
            container = Container(name, request.body, daemon.root)
            daemon.containers[name] = container
        self._reply(201, {"Id": container.id, "Warnings": []})

    def _restart_container(self, request: Request) -> None:
        if self.daemon._find(request.match[1]) is None:
            self._no_such(f"container: {request.match[1]}")
            return
        self._reply(204)

    def _start_container(self, request: Request) -> None:
        container = self.daemon._find(request.match[1])
        if container is None:
            self._no_such("container")
            return
        container.start()
        self._reply(204)

    def _remove_container(self, request: Request) -> None:
        container = self.daemon._find(request.match[1])
        if container is None:
            self._no_such("container")
            return
        container.remove()
        self.daemon.containers.pop(container.name, None)
        self._reply(204)

    # (method, pattern of the whole path, answer); the first match answers
    ROUTES: ClassVar[tuple[tuple[str, re.Pattern[str], Callable[[DaemonHandler, Request], None]], ...]] = (
        ("GET", re.compile(r"/_ping"), _ping),
        ("GET", re.compile(r"/version"), _version),
        ("GET", re.compile(r"/containers/json"), _list_workloads),
        ("GET", re.compile(r"/containers/([^/]+)/stats"), _workload_stats),
        ("GET", re.compile(r"/images/(.+)/json"), _inspect_image),
        ("GET", re.compile(r"/containers/([^/]+)/json"), _inspect_container),
        ("GET", re.compile(r"/containers/([^/]+)/logs"), _container_logs),
        ("POST", re.compile(r"/images/create"), _pull_image),
        ("POST", re.compile(r"/containers/create"), _create_container),
        ("POST", re.compile(r"/containers/([^/]+)/restart"), _restart_container),
        ("POST", re.compile(r"/containers/([^/]+)/start"), _start_container),
        ("DELETE", re.compile(r"/containers/([^/]+)"), _remove_container),
        # a DELETE of any other path is answered as one of an unknown container, not as an unknown route
        ("DELETE", re.compile(r".*", re.DOTALL), lambda handler, request: handler._no_such("container")),
    )
