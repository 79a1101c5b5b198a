"""Loopback TLS servers, one per certificate case of the probe, sharing one test CA."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from stellar_ops_dev.certs import LocalCA, self_signed
from stellar_ops_dev.tls_servers import SilentServer, TlsServer

NAME = "escrow.test"


@dataclass
class Endpoints:
    ca_bundle: Path
    ports: dict[str, int]


@pytest.fixture(scope="session")
def endpoints(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoints]:
    work = tmp_path_factory.mktemp("tls-endpoints")
    ca = LocalCA()
    bundle = ca.write_bundle(work / "ca.pem")
    stranger = LocalCA("Unknown Root")
    early = ca.intermediate("Intermediate expiring first", days=5)
    certificates = {
        "valid_90": ca.leaf(NAME, days=90),
        "valid_20": ca.leaf(NAME, days=20),
        "valid_7": ca.leaf(NAME, days=7),
        "expired": ca.leaf(NAME, days=-2, not_before_days=-92),
        "wrong_host": ca.leaf("other.test", days=90),
        "untrusted": stranger.leaf(NAME, days=90),
        "self_signed": self_signed(NAME, days=90),
        "intermediate_first": ca.leaf(NAME, days=90, issuer=early),
    }
    servers: list[TlsServer | SilentServer] = []
    ports: dict[str, int] = {}
    for case, issued in certificates.items():
        cert, key = issued.write(work, case)
        server = TlsServer(cert, key)
        server.start()
        servers.append(server)
        ports[case] = server.port
    silent = SilentServer()
    silent.start()
    servers.append(silent)
    ports["no_handshake"] = silent.port
    closed = SilentServer()  # bound then closed: a port where nothing listens
    ports["nothing_listening"] = closed.port
    closed.stop()
    try:
        yield Endpoints(bundle, ports)
    finally:
        for server in servers:
            server.stop()
