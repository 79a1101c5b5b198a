"""Ports, readiness and signals for the servers of the local stack.

- :class:`PortPicker` hands out loopback ports, never a reserved one (the fixed ports of
  ``make run``, Airflow's) and never one twice, each checked bindable when handed out;
- :func:`start_server` starts one server and returns only when the server *itself* answers its own
  protocol on its port (a Redis ``PONG``, an HTTP answer, a DNS reply...): another program
  answering on that port does not count, and a server that exits during start fails the start at
  once with the tail of its log;
- :func:`stop_on_signals` turns SIGINT, SIGTERM and SIGHUP into :class:`StackInterrupted`, so
  whatever was started is stopped, and :func:`signals_deferred` keeps that exception out of the
  moment between starting a process and recording its pid.
"""

from __future__ import annotations

import contextlib
import secrets
import signal
import socket
import ssl
import struct
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from types import FrameType

import psutil

from stellar_ops.core.errors import StellarOpsError
from stellar_ops.core.processes import ManagedProcess, free_port, port_free

HOST = "127.0.0.1"
# Each readiness probe is one short exchange: a server that accepts and never answers (as a gRPC
# port does to a Redis client) costs at most this long per attempt, never a hang.
PROBE_TIMEOUT = 2.0


class PortPicker:
    """Loopback ports for one stack: never one of ``reserved``, never one handed out before.

    A port is taken from the kernel's free ones and checked bindable when it is handed out; a port
    derived from another (SeaweedFS dials its admin gRPC port at the admin port + 10000) is checked
    the same way, so it cannot land on a fixed port whose server has not bound it yet.
    """

    def __init__(self, reserved: Iterable[int] = (), *, source: Callable[[], int] | None = None) -> None:
        """``source`` proposes candidate ports (the kernel's free ones unless given)."""
        self.reserved = set(reserved)
        self.handed_out: set[int] = set()
        self.source = source or (lambda: free_port(HOST))

    def _usable(self, port: int) -> bool:
        return (
            1024 < port < 65536
            and port not in self.reserved
            and port not in self.handed_out
            and port_free(port, HOST)
        )

    def free(self) -> int:
        """A free port, neither reserved nor handed out before."""
        for _ in range(200):
            port = self.source()
            if self._usable(port):
                self.handed_out.add(port)
                return port
        raise StellarOpsError(f"no free port on {HOST} outside the reserved {sorted(self.reserved)}")

    def pair(self, offset: int) -> int:
        """A free port ``p`` whose ``p + offset`` is free too; both are handed out."""
        for _ in range(200):
            port = self.source()
            if self._usable(port) and self._usable(port + offset):
                self.handed_out.update((port, port + offset))
                return port
        raise StellarOpsError(f"no free pair of ports {offset} apart on {HOST}")

    def claim(self, port: int) -> bool:
        """Hand out ``port`` itself (reserved or not: it is the caller's own) if it is bindable now."""
        if port in self.handed_out or not port_free(port, HOST):
            return False
        self.handed_out.add(port)
        return True


# Readiness: each check speaks the server's own protocol ---------------------------------------


def redis_answers(port: int) -> bool:
    """``PING`` answered by ``+PONG`` (a loading or foreign server answers otherwise, or not at all)."""
    try:
        with socket.create_connection((HOST, port), timeout=PROBE_TIMEOUT) as sock:
            sock.settimeout(PROBE_TIMEOUT)
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            reply = sock.recv(64)
    except OSError:
        return False
    return reply.startswith(b"+PONG")


def http_answers(
    url: str,
    *,
    status: int | None = 200,
    body: bytes | None = None,
    context: ssl.SSLContext | None = None,
    headers: dict[str, str] | None = None,
) -> bool:
    """An HTTP answer from ``url``: with ``status`` (any status when None) and containing ``body``."""
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 - loopback URLs built here
    try:
        with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT, context=context) as response:  # noqa: S310
            code, data = response.status, response.read(4096)
    except urllib.error.HTTPError as exc:
        code, data = exc.code, exc.read(4096)
    except (OSError, ValueError, ssl.SSLError):
        return False
    return (status is None or code == status) and (body is None or body in data)


def dns_answers(port: int, name: str) -> bool:
    """A UDP DNS query for ``name``'s A record answered with at least one record."""
    query_id = secrets.randbelow(1 << 16)
    question = b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\0"
    packet = struct.pack(">HHHHHH", query_id, 0x0100, 1, 0, 0, 0) + question + struct.pack(">HH", 1, 1)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(PROBE_TIMEOUT)
            sock.sendto(packet, (HOST, port))
            reply, _ = sock.recvfrom(512)
    except OSError:
        return False
    if len(reply) < 12:
        return False
    reply_id, flags, _, answers = struct.unpack(">HHHH", reply[:8])
    return reply_id == query_id and bool(flags & 0x8000) and flags & 0x000F == 0 and answers > 0


def tls_context_unverified() -> ssl.SSLContext:
    """For a readiness probe only: the handshake is what is checked, not the certificate."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


# Who holds a port -------------------------------------------------------------------------------


def _process_family(pid: int) -> list[psutil.Process]:
    try:
        process = psutil.Process(pid)
        return [process, *process.children(recursive=True)]
    except psutil.Error:
        return []


def holds_port(pid: int, port: int) -> bool | None:
    """Whether ``pid`` (or a child of it) has a socket bound to ``port``; None when that cannot be seen."""
    family = _process_family(pid)
    if not family:
        return False
    for process in family:
        try:
            sockets = process.net_connections(kind="inet")
        except psutil.AccessDenied:
            return None
        except psutil.Error:
            continue
        if any(s.laddr and s.laddr.port == port and not s.raddr for s in sockets):
            return True
    return False


def port_holder(port: int) -> str | None:
    """The process listening on ``port``, as ``pid N (name)``, when it can be seen."""
    try:
        sockets = psutil.net_connections(kind="inet")
    except psutil.Error:
        return None
    for s in sockets:
        if s.laddr and s.laddr.port == port and s.status == psutil.CONN_LISTEN and s.pid:
            try:
                return f"pid {s.pid} ({psutil.Process(s.pid).name()})"
            except psutil.Error:
                return f"pid {s.pid}"
    return None


# Starting a server ------------------------------------------------------------------------------


def start_server(
    name: str,
    argv: Sequence[str],
    *,
    log_path: Path,
    port: int,
    ready: Callable[[], bool],
    timeout: float = 30.0,
    env: dict[str, str] | None = None,
    on_start: Callable[[ManagedProcess], None] | None = None,
) -> ManagedProcess:
    """Start ``argv`` and wait until ``ready()`` and the process itself holds ``port``.

    ``on_start`` sees the process as soon as it has a pid (to record it). A process that exits
    first, or is not ready in ``timeout`` seconds, is stopped and the start fails naming the port
    and quoting its log.
    """
    process = ManagedProcess(name=name, argv=argv, log_path=log_path, env=env)
    with signals_deferred():
        process.start()
        if on_start is not None:
            on_start(process)
    try:
        wait_ready(process, port=port, ready=ready, timeout=timeout)
    except BaseException:
        process.stop()
        raise
    return process


def wait_ready(process: ManagedProcess, *, port: int, ready: Callable[[], bool], timeout: float) -> None:
    """See :func:`start_server`."""
    popen = process.process
    assert popen is not None
    deadline = time.monotonic() + timeout
    while True:
        status = popen.poll()
        if status is not None:
            raise StellarOpsError(
                f"{process.name} (port {port}) exited with status {status} during start-up; "
                f"the end of {process.log_path}:\n{process.log_tail()}"
            )
        if ready() and holds_port(popen.pid, port) is not False:
            return
        if time.monotonic() >= deadline:
            holder = port_holder(port)
            held = (
                f"; port {port} is held by {holder}" if holder and f"pid {popen.pid} " not in holder else ""
            )
            raise StellarOpsError(
                f"{process.name} did not answer on {HOST}:{port} within {timeout:.0f}s{held}; "
                f"the end of {process.log_path}:\n{process.log_tail()}"
            )
        time.sleep(0.2)


# Signals --------------------------------------------------------------------------------------

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class StackInterrupted(KeyboardInterrupt):
    """A stop signal arrived: whatever was started is stopped on the way out."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


class _Deferral:
    depth = 0
    pending: int | None = None


_deferral = _Deferral()


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold :class:`StackInterrupted` back until the block ends (a started process is recorded)."""
    _deferral.depth += 1
    try:
        yield
    finally:
        _deferral.depth -= 1
        if _deferral.depth == 0 and _deferral.pending is not None:
            signum, _deferral.pending = _deferral.pending, None
            raise StackInterrupted(signum)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    # The first signal starts the stop; more of them (a process manager repeats, a closing terminal
    # sends SIGHUP after SIGTERM) must not cut that stop short.
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    if _deferral.depth:
        _deferral.pending = signum
        return
    raise StackInterrupted(signum)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, SIGINT, SIGTERM and SIGHUP raise :class:`StackInterrupted` (once).

    A signal this process was started ignoring (``nohup``, a background job of a script) stays
    ignored. The previous handlers come back when the block ends.
    """
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    for sig, handler in previous.items():
        if handler is not signal.SIG_IGN:
            signal.signal(sig, _interrupt)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
