"""What the health checks are tested against beside the stack: TLS servers, a server that hangs,
backups with hand-made manifests in the stack's S3, and a Docker API double."""

from __future__ import annotations

import json
import socket
import ssl
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest


def _name(common_name: str) -> Any:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


class CertificateAuthority:
    """A CA and the leaves it signs, written as PEM files."""

    def __init__(self, root: Path) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        self.root = root
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name("stellar test CA"))
            .issuer_name(_name("stellar test CA"))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.ca_file = root / "ca.pem"
        self.ca_file.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def leaf(self, name: str, *, days: float, started_days_ago: float = 1) -> tuple[Path, Path]:
        import ipaddress

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=started_days_ago))
            .not_valid_after(now + timedelta(days=days))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName(name), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        cert_file = self.root / f"{name}-{days}.pem"
        key_file = self.root / f"{name}-{days}.key"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        return cert_file, key_file


@pytest.fixture(scope="session")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority(tmp_path_factory.mktemp("tls"))


class TlsServer:
    """A TLS server on a loopback port that completes handshakes and closes."""

    def __init__(self, cert_file: Path, key_file: Path) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert_file, key_file)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                conn.settimeout(5)
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)
            except (OSError, ssl.SSLError):
                pass
            finally:
                conn.close()

    def close(self) -> None:
        self.stopped.set()
        self.sock.close()
        self.thread.join(5)


@pytest.fixture
def tls_server(ca: CertificateAuthority) -> Iterator[Any]:
    servers: list[TlsServer] = []

    def start(name: str = "escrow.test", *, days: float = 90, started_days_ago: float = 1) -> TlsServer:
        server = TlsServer(*ca.leaf(name, days=days, started_days_ago=started_days_ago))
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


class HangingServer:
    """Accepts connections and never answers: a service that hangs."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.stopped.set()
        self.sock.close()
        for conn in self.held:
            conn.close()
        self.thread.join(5)


@pytest.fixture
def hanging_server() -> Iterator[HangingServer]:
    server = HangingServer()
    yield server
    server.close()


def manifest_document(key: str, *, finished_at: datetime, size_bytes: int) -> dict[str, Any]:
    """A valid manifest (format 2) for a backup at ``key``."""
    return {
        "format_version": 2,
        "key": key,
        "bucket": "stellar-backups",
        "slot": finished_at.isoformat(),
        "database": "stellar_escrow",
        "server_version": "15.8",
        "server_version_num": 150008,
        "pg_dump_version": "pg_dump (PostgreSQL) 15.8",
        "dump_format": "custom",
        "compression": "zstd",
        "compression_level": 2,
        "encryption": "AES256",
        "started_at": (finished_at - timedelta(minutes=3)).isoformat(),
        "finished_at": finished_at.isoformat(),
        "duration_seconds": 180.0,
        "dag_run_id": "scheduled__test",
        "size_bytes": size_bytes,
        "sha256": "ab" * 32,
        "uncompressed_bytes": size_bytes * 4,
        "snapshot": None,
        "row_counts": {"public.trades": 10},
        "schema": {},
        "schema_fingerprint": "0" * 16,
    }


class Backups:
    """Backups under a test's prefix: the object, and its manifest when it is verified."""

    def __init__(self, ops: Any) -> None:
        self.ops = ops
        self.store = ops.store()

    def add(
        self, hours_ago: float, *, size: int = 4096, manifest: bool = True, now: datetime | None = None
    ) -> str:
        from stellar_ops.backups.keys import backup_key

        finished = (now or datetime.now(UTC)) - timedelta(hours=hours_ago)
        slot = finished.replace(microsecond=0) - timedelta(minutes=3)
        key = backup_key(self.ops.prefix, slot, "custom")
        self.store.put_bytes(key, b"\0" * min(size, 4096))
        if manifest:
            self.store.put_json(
                key + ".manifest.json", manifest_document(key, finished_at=finished, size_bytes=size)
            )
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
