"""What the health checks are tested against beside the stack: TLS servers, a server that hangs,
backups with hand-made manifests in the stack's S3, and a Docker API double."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from stellar_ops_dev.certs import LocalCA
from stellar_ops_dev.tls_servers import SilentServer, TlsServer
from tests.support.manifests import manifest_document


class CertificateAuthority:
    """A local CA (:class:`stellar_ops_dev.certs.LocalCA`) and the leaves it signs, as PEM files."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.authority = LocalCA("stellar test CA")
        self.ca_file = self.authority.write_bundle(root / "ca.pem")

    def leaf(self, name: str, *, days: float, started_days_ago: float = 1) -> tuple[Path, Path]:
        issued = self.authority.leaf(name, "127.0.0.1", days=days, not_before_days=-started_days_ago)
        return issued.write(self.root, f"{name}-{days}")


@pytest.fixture(scope="session")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def tls_server(ca: CertificateAuthority) -> Iterator[Any]:
    """Starts TLS servers on loopback ports that complete handshakes with a leaf of ``ca``."""
    servers: list[TlsServer] = []

    def start(name: str = "escrow.test", *, days: float = 90, started_days_ago: float = 1) -> TlsServer:
        server = TlsServer(*ca.leaf(name, days=days, started_days_ago=started_days_ago)).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def hanging_server() -> Iterator[SilentServer]:
    """Accepts connections and never answers: a service that hangs."""
    with SilentServer() as server:
        yield server


class Backups:
    """Backups under a test's prefix: the object, and its manifest when it is verified."""

    def __init__(self, ops: Any) -> None:
        self.ops = ops
        self.store = ops.store()

    def add(
        self, hours_ago: float, *, size: int = 4096, manifest: bool = True, now: datetime | None = None
    ) -> str:
        from stellar_ops.catalogue.keys import backup_key

        snapshot_at = (now or datetime.now(UTC)) - timedelta(hours=hours_ago)  # the age of its data
        key = backup_key(self.ops.prefix, snapshot_at, "custom")
        self.store.put_bytes(key, b"\0" * min(size, 4096))
        if manifest:
            document = manifest_document(
                key, finished_at=snapshot_at + timedelta(minutes=3), size_bytes=size, snapshot_at=snapshot_at
            )
            self.store.put_json(key + ".manifest.json", document)
        return key

    def dr_report(self, backup_key: str, *, success: bool, days_ago: float) -> str:
        finished = datetime.now(UTC) - timedelta(days=days_ago)
        document = {
            "format_version": 1,
            "success": success,
            "checks": [{"check": "row_counts", "passed": success}],
            "failed_steps": [],
            "finished_at": finished.isoformat(),
        }
        self.store.put_json(backup_key + ".dr_report.json", document)
        return backup_key + ".dr_report.json"


@pytest.fixture
def backups(ops: Any) -> Backups:
    return Backups(ops)


class FakeDockerApi:
    """The Docker Engine API's container listing and inspection, for the services check: the Docker
    path is tested at this boundary, since no daemon runs here."""

    def __init__(self, containers: list[dict[str, Any]], volumes: dict[str, str] | None = None) -> None:
        self.containers = containers
        self.volumes = volumes or {}
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
                pass

            def _reply(self, status: int, body: Any) -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Api-Version", "1.43")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 - stdlib name
                path = self.path.split("?")[0]
                path = path.split("/", 2)[2] if path.startswith("/v1.") else path.lstrip("/")
                if path == "_ping":
                    return self._reply(200, b"OK")
                if path == "version":
                    return self._reply(
                        200, {"ApiVersion": "1.43", "Version": "fake", "MinAPIVersion": "1.24"}
                    )
                if path == "containers/json":
                    listing = [
                        {
                            "Id": c["id"],
                            "Names": [f"/{c['name']}"],
                            "State": c["state"],
                            "Labels": {"com.docker.compose.service": c["service"]},
                        }
                        for c in api.containers
                    ]
                    return self._reply(200, listing)
                if path.startswith("volumes/"):
                    name = path.removeprefix("volumes/")
                    if name not in api.volumes:
                        return self._reply(404, {"message": f"get {name}: no such volume"})
                    return self._reply(
                        200, {"Name": name, "Driver": "local", "Mountpoint": api.volumes[name]}
                    )
                for c in api.containers:
                    if path == f"containers/{c['id']}/json":
                        state: dict[str, Any] = {"Status": c["state"]}
                        if c.get("health"):
                            state["Health"] = {"Status": c["health"]}
                        return self._reply(
                            200, {"Id": c["id"], "State": state, "RestartCount": c.get("restarts", 0)}
                        )
                return self._reply(404, {"message": f"no route {path}"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
