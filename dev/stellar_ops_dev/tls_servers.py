"""Loopback TLS servers for the tests and the benchmark: real handshakes with made certificates.

:class:`TlsServer` answers every connection with a full handshake (after an optional delay, to
play a slow host); :class:`SilentServer` accepts TCP and never answers, the host whose handshake
never completes.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from pathlib import Path
from types import TracebackType


class _Listener:
    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port: int = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def start(self) -> _Listener:
        self._thread.start()
        return self

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self.sock.close()
        for conn in self._held:
            with contextlib.suppress(OSError):
                conn.close()
        if self._thread.is_alive():
            self._thread.join(timeout=2)

    def __enter__(self) -> _Listener:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class TlsServer(_Listener):
    """Serves ``cert_path`` (a full chain, leaf first) and ``key_path`` on 127.0.0.1:``port``."""

    def __init__(self, cert_path: Path, key_path: Path, *, delay: float = 0.0) -> None:
        super().__init__()
        self.delay = delay
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(str(cert_path), str(key_path))

    def _handle(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            if self.delay:
                time.sleep(self.delay)
            conn.settimeout(10)
            with self.context.wrap_socket(conn, server_side=True) as tls, contextlib.suppress(OSError):
                tls.recv(1)  # wait for the client to close
        with contextlib.suppress(OSError):
            conn.close()


class SilentServer(_Listener):
    """Accepts connections and never speaks: a TLS handshake with it can only time out."""

    def _handle(self, conn: socket.socket) -> None:
        self._held.append(conn)
