"""A TCP proxy in front of the S3 server that flips one byte in the body of one part upload.

It follows HTTP/1.1 requests on each client connection (headers, then ``Content-Length`` body
bytes, keep-alive and ``Expect: 100-continue`` included) and forwards everything unchanged, but
for the first ``PUT ...?partNumber=<part>`` it inverts one byte in the middle of the body. What the
S3 server receives is then not what the client sent: only a checksum the server verifies can
tell.
"""

from __future__ import annotations

import re
import socket
import threading

_PART = re.compile(rb"^PUT [^ ]*[?&]partNumber=(\d+)[& ]")
_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.I)


class CorruptingProxy:
    def __init__(self, upstream_port: int, part: int = 2) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.part = part
        self.flipped = 0
        self.requests: list[str] = []  # each request's first line and headers, as sent
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._stop = False
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._stop = True
        self._listener.close()

    def __enter__(self) -> CorruptingProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            threading.Thread(target=self._requests, args=(client, server), daemon=True).start()
            threading.Thread(target=_pipe, args=(server, client), daemon=True).start()

    def _requests(self, client: socket.socket, server: socket.socket) -> None:
        """Client to server, one request at a time: headers as they are, the body maybe changed."""
        pending = b""
        try:
            while True:
                while b"\r\n\r\n" not in pending:
                    data = client.recv(65536)
                    if not data:
                        return
                    pending += data
                head, pending = pending.split(b"\r\n\r\n", 1)
                self.requests.append(head.decode(errors="replace"))
                server.sendall(head + b"\r\n\r\n")
                match = _LENGTH.search(head)
                remaining = int(match.group(1)) if match else 0
                part = _PART.match(head)
                flip_at = None
                with self._lock:
                    if part and int(part.group(1)) == self.part and self.flipped == 0 and remaining:
                        flip_at, self.flipped = remaining // 2, 1
                sent = 0
                while remaining:
                    if not pending:
                        pending = client.recv(min(remaining, 65536))
                        if not pending:
                            return
                    body, pending = pending[:remaining], pending[remaining:]
                    if flip_at is not None and sent <= flip_at < sent + len(body):
                        i = flip_at - sent
                        body = body[:i] + bytes([body[i] ^ 0xFF]) + body[i + 1 :]
                    server.sendall(body)
                    sent += len(body)
                    remaining -= len(body)
        except OSError:
            return
        finally:
            with _quiet():
                server.shutdown(socket.SHUT_WR)


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        with _quiet():
            sink.shutdown(socket.SHUT_WR)


class _quiet:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return True
