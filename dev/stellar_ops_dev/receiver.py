"""A local HTTP receiver that records what it was sent: the stand-in for Slack's webhook servers.

Any ``POST``/``PUT`` is recorded and answered ``200 ok`` (what Slack answers); ``GET /`` answers
:data:`BANNER`. Control routes:

- ``GET /_received``: every recorded request as JSON (``[{method, path, body, json, at, status}]``),
  refused ones too: ``status`` is what it was answered (200 for a delivered message)
- ``DELETE /_received``: forget them (and any failures still armed)
- ``POST /_fail`` with ``{"status": 500, "count": 2}``: answer the next ``count`` requests with
  ``status`` (to test retries and failure handling)
- ``POST /_script`` with a list of phases, e.g.
  ``[{"status": 429, "count": 3, "headers": {"Retry-After": "2"}}, {"status": 500, "seconds": 60}]``:
  each phase answers its ``status`` (and ``headers``) to the next ``count`` requests, or to every
  request for ``seconds`` from the first one it answers; then ``200 ok`` again (an outage in Slack).
  A phase with ``"path": "/services/"`` answers only requests under that path (others get 200)

Run: ``python -m stellar_ops_dev.receiver --port P``
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# What GET / answers: how the stack tells this receiver from another program on its port.
BANNER = b"stellar-ops receiver"


class Recorder:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.fail_status = 0
        self.fail_count = 0
        self.phases: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def answer(self, path: str) -> tuple[int, dict[str, str]]:
        """The status (and headers) of the next request to ``path``; call with ``lock`` held."""
        if self.fail_count > 0:
            self.fail_count -= 1
            return self.fail_status, {}
        now = time.monotonic()
        while self.phases:
            phase = self.phases[0]
            if not path.startswith(str(phase.get("path", "/"))):
                return 200, {}  # the outage is of another service (e.g. only the webhooks)
            if "seconds" in phase:
                phase.setdefault("until", now + float(phase["seconds"]))
                if now < phase["until"]:
                    return int(phase["status"]), dict(phase.get("headers") or {})
            elif int(phase.get("count", 1)) > 0:
                phase["count"] = int(phase.get("count", 1)) - 1
                return int(phase["status"]), dict(phase.get("headers") or {})
            self.phases.pop(0)
        return 200, {}


def make_handler(recorder: Recorder) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            print(f"{self.command} {self.path.split('?')[0]}")

        def _send(
            self,
            status: int,
            body: bytes,
            content_type: str = "text/plain",
            headers: dict[str, str] | None = None,
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length > 0 else b""

        def do_GET(self) -> None:  # noqa: N802 - stdlib name
            if self.path.split("?")[0] == "/_received":
                with recorder.lock:
                    data = json.dumps(recorder.requests).encode()
                self._send(200, data, "application/json")
            else:
                self._send(200, BANNER)

        def do_DELETE(self) -> None:  # noqa: N802 - stdlib name
            with recorder.lock:
                recorder.requests.clear()
                recorder.fail_count = 0
                recorder.phases = []
            self._send(200, b"cleared")

        def do_POST(self) -> None:  # noqa: N802 - stdlib name
            body = self._body()
            if self.path == "/_fail":
                spec = json.loads(body or b"{}")
                with recorder.lock:
                    recorder.fail_status = int(spec.get("status", 500))
                    recorder.fail_count = int(spec.get("count", 1))
                self._send(200, b"armed")
                return
            if self.path == "/_script":
                phases = json.loads(body or b"[]")
                with recorder.lock:
                    recorder.phases = [dict(phase) for phase in phases]
                self._send(200, b"scripted")
                return
            try:
                parsed = json.loads(body) if body else None
            except json.JSONDecodeError:
                parsed = None
            with recorder.lock:
                status, headers = recorder.answer(self.path)
                recorder.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "body": body.decode(errors="replace"),
                        "json": parsed,
                        "at": datetime.now(UTC).isoformat(),
                        "status": status,
                    }
                )
            if status != 200:
                self._send(status, b"failure requested", headers=headers)
            else:
                self._send(200, b"ok")

        do_PUT = do_POST  # noqa: N815 - stdlib name

    return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    server = ThreadingHTTPServer((args.host, args.port), make_handler(Recorder()))
    print(f"receiver on {args.host}:{args.port}")
    server.serve_forever()


if __name__ == "__main__":
    main()
