"""A stand-in for the StellarEscrow API, for the local stack and the tests.

Endpoints (every request needs ``X-API-Key``):

- ``GET /health``: ``{"status", "indexer_lag_seconds", "version", "started_at"}``
- ``GET /health/metrics``: request latency percentiles of this process
- ``POST /api/metrics``: records a metrics payload (JSON object)
- ``GET /api/metrics``: the recorded payloads (admin keys only)

Keys come from an env file (``API_KEYS=a,b`` and ``ADMIN_KEYS=c``), read at start, so a restart
picks up a rotated key set. ``INDEXER_LAG_SECONDS`` and ``HEALTH_STATUS`` in the same file
shape the health answer. Recorded metrics are appended to ``<state-dir>/metrics.jsonl``, so they
survive a restart.

Run: ``python -m stellar_ops.dev.api_stub --port P --env-file F --state-dir D``
"""

from __future__ import annotations

import argparse
import hmac
import json
import threading
import time
from collections import deque
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

VERSION = "stellar-escrow-api-stub/1"
MAX_BODY = 1 << 20


def read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip().removeprefix("export ").strip()] = value.strip().strip("'\"")
    return values


def _keys(value: str | None) -> tuple[str, ...]:
    return tuple(k.strip() for k in (value or "").split(",") if k.strip())


class ApiState:
    def __init__(self, env: dict[str, str], state_dir: Path) -> None:
        self.api_keys = _keys(env.get("API_KEYS"))
        self.admin_keys = _keys(env.get("ADMIN_KEYS"))
        self.indexer_lag = float(env.get("INDEXER_LAG_SECONDS", "2.5"))
        self.health_status = env.get("HEALTH_STATUS", "ok")
        self.started_at = datetime.now(UTC).isoformat()
        self.metrics_path = state_dir / "metrics.jsonl"
        self.latencies: deque[float] = deque(maxlen=5000)
        self.lock = threading.Lock()

    def authorised(self, key: str | None, *, admin: bool = False) -> bool:
        if not key:
            return False
        allowed = self.admin_keys if admin else self.api_keys + self.admin_keys
        # compare every key in constant time, so timing does not reveal a prefix
        return any(hmac.compare_digest(key.encode(), k.encode()) for k in allowed)

    def record_metrics(self, payload: dict[str, Any]) -> None:
        line = json.dumps({"received_at": datetime.now(UTC).isoformat(), "payload": payload})
        with self.lock, open(self.metrics_path, "a") as handle:
            handle.write(line + "\n")

    def recorded_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_path.exists():
            return []
        return [json.loads(line) for line in self.metrics_path.read_text().splitlines() if line]

    def percentiles(self) -> dict[str, float]:
        with self.lock:
            samples = sorted(self.latencies)
        if not samples:
            return {"p50_ms": 0.0, "p95_ms": 0.0, "p99_ms": 0.0, "requests": 0}

        def pct(p: float) -> float:
            return round(samples[min(len(samples) - 1, int(p * len(samples)))] * 1000, 3)

        return {"p50_ms": pct(0.50), "p95_ms": pct(0.95), "p99_ms": pct(0.99), "requests": len(samples)}


def make_handler(state: ApiState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = VERSION

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            # never log headers: they carry API keys
            print(f"{self.address_string()} {self.command} {self.path} -> {args[1] if len(args) > 1 else ''}")

        def _send(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _guard(self, *, admin: bool = False) -> bool:
            if state.authorised(self.headers.get("X-API-Key"), admin=admin):
                return True
            self._send(
                403 if self.headers.get("X-API-Key") else 401, {"error": "invalid or missing X-API-Key"}
            )
            return False

        def do_GET(self) -> None:  # noqa: N802 - stdlib name
            started = time.perf_counter()
            path = self.path.split("?")[0]
            if path == "/health":
                if self._guard():
                    self._send(
                        200 if state.health_status == "ok" else 503,
                        {
                            "status": state.health_status,
                            "indexer_lag_seconds": state.indexer_lag,
                            "version": VERSION,
                            "started_at": state.started_at,
                        },
                    )
            elif path == "/health/metrics":
                if self._guard():
                    self._send(200, {"latency": state.percentiles()})
            elif path == "/api/metrics":
                if self._guard(admin=True):
                    self._send(200, {"metrics": state.recorded_metrics()})
            else:
                self._send(404, {"error": f"no route {path}"})
            with state.lock:
                state.latencies.append(time.perf_counter() - started)

        def do_POST(self) -> None:  # noqa: N802 - stdlib name
            path = self.path.split("?")[0]
            if path != "/api/metrics":
                self._send(404, {"error": f"no route {path}"})
                return
            if not self._guard():
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length <= 0 or length > MAX_BODY:
                self._send(400, {"error": "a JSON body of at most 1 MiB is required"})
                return
            try:
                payload = json.loads(self.rfile.read(length))
            except json.JSONDecodeError as exc:
                self._send(400, {"error": f"invalid JSON: {exc.msg}"})
                return
            if not isinstance(payload, dict) or not isinstance(payload.get("metrics"), list):
                self._send(422, {"error": "body must be an object with a 'metrics' list"})
                return
            state.record_metrics(payload)
            self._send(202, {"accepted": len(payload["metrics"])})

    return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--env-file", type=Path, required=True)
    parser.add_argument("--state-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    args.state_dir.mkdir(parents=True, exist_ok=True)
    state = ApiState(read_env_file(args.env_file), args.state_dir)
    server = ThreadingHTTPServer((args.host, args.port), make_handler(state))
    print(
        f"api stub on {args.host}:{args.port} with {len(state.api_keys)} API and {len(state.admin_keys)} admin keys"
    )
    server.serve_forever()


if __name__ == "__main__":
    main()
