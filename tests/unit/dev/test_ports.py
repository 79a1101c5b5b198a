"""Port picking for the local stack: no server is ever given a reserved or already given port.

The candidates come from a scripted source, so the collisions that chance makes rare (SeaweedFS's
admin gRPC port, its admin port + 10000, landing on Redis's fixed port) happen every time here.
Bindability is checked on real sockets.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from stellar_ops.core.errors import StellarOpsError
from stellar_ops.core.processes import free_port, port_free
from stellar_ops_dev.servers import PortPicker
from stellar_ops_dev.stack import PREFERRED_PORTS, Stack


def scripted(*ports: int) -> Iterator[int]:
    yield from ports
    while True:
        yield free_port()


def free_pair(offset: int, avoid: set[int]) -> int:
    """A port ``p`` with ``p`` and ``p + offset`` bindable now and not in ``avoid``."""
    for _ in range(200):
        port = free_port()
        if port + offset < 65536 and port_free(port + offset) and not {port, port + offset} & avoid:
            return port
    raise AssertionError(f"no bindable pair {offset} apart")


def listen(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", port))
    sock.listen(1)
    return sock


def test_a_derived_port_never_lands_on_a_reserved_one():
    redis_fixed = PREFERRED_PORTS["redis"]
    colliding = redis_fixed - 10000  # its admin gRPC port would be Redis's fixed port
    fine = free_pair(10000, avoid=set(PREFERRED_PORTS.values()))
    source = scripted(colliding, fine)
    picker = PortPicker(PREFERRED_PORTS.values(), source=lambda: next(source))
    admin = picker.pair(10000)
    assert admin == fine
    assert {admin, admin + 10000}.isdisjoint(PREFERRED_PORTS.values())


def test_a_free_port_is_never_a_reserved_one_nor_one_given_before():
    given = free_port()
    source = scripted(*PREFERRED_PORTS.values(), given, given)
    picker = PortPicker(PREFERRED_PORTS.values(), source=lambda: next(source))
    assert picker.free() == given
    again = picker.free()
    assert again != given
    assert again not in PREFERRED_PORTS.values()


def test_a_port_another_program_holds_is_never_given():
    held = listen(free_port())
    try:
        port = held.getsockname()[1]
        source = scripted(port, port)
        picker = PortPicker(source=lambda: next(source))
        assert picker.free() != port
        assert picker.claim(port) is False
        pair_source = scripted(port - 10000)
        assert PortPicker(source=lambda: next(pair_source)).pair(10000) != port - 10000
    finally:
        held.close()


def test_no_candidate_at_all_fails_naming_the_reserved_ports():
    picker = PortPicker({55432}, source=lambda: 55432)
    with pytest.raises(StellarOpsError, match="55432"):
        picker.free()


def test_the_stack_gives_every_server_its_own_port_and_no_fixed_port_to_another(tmp_path):
    ports = Stack(tmp_path, fixed_ports=False).pick_ports()
    assert set(ports) == set(PREFERRED_PORTS)
    assert len(set(ports.values())) == len(ports)
    assert set(ports.values()).isdisjoint(PREFERRED_PORTS.values())


def test_fixed_ports_held_by_other_programs_are_not_used(tmp_path):
    holders = [listen(port) for port in PREFERRED_PORTS.values() if port_free(port)]
    try:
        ports = Stack(tmp_path, fixed_ports=True).pick_ports()
    finally:
        for sock in holders:
            sock.close()
    assert set(ports.values()).isdisjoint(PREFERRED_PORTS.values())
    assert len(set(ports.values())) == len(ports)


def test_a_required_port_that_is_taken_is_refused_naming_it(tmp_path):
    held = listen(free_port())
    try:
        port = held.getsockname()[1]
        with pytest.raises(StellarOpsError, match=f"port {port} for redis is already in use"):
            Stack(tmp_path, ports={"redis": port}).pick_ports()
    finally:
        held.close()
    assert Stack(tmp_path, ports={"redis": port}).pick_ports()["redis"] == port
