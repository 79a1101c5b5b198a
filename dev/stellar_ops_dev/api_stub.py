"""A stand-in for the StellarEscrow API, for the local stack and the tests.

Endpoints (every request needs ``X-API-Key``, but ``GET /_ready``, which answers ``{"ready": true}``
at once and is not counted):

- ``GET /health``: ``{"status", "indexer_lag_seconds", "version", "started_at"}``
- ``GET /health/metrics``: request latency percentiles of this process
- ``POST /api/metrics``: records a metrics payload (JSON object)
- ``GET /api/metrics``: the recorded payloads (admin keys only)
- ``POST /_reload`` (admin keys): read the env file again, as a restart would, without one
- ``POST /_control`` (admin keys): ``{"delay_ms": N, "indexer_lag_seconds": X, "health_status": S}``,
  any of them: every later answer waits ``delay_ms`` first (a slow API), and ``/health`` reports
  the lag and status given (a lagging indexer, a sick service); ``"reset_latencies": true`` forgets
  the latencies measured so far, so ``/health/metrics`` reflects only what follows

Keys come from an env file (``API_KEYS=a,b`` and ``ADMIN_KEYS=c``), read at start and on
``/_reload``, so a restart or a reload picks up a rotated key set. ``INDEXER_LAG_SECONDS`` and
``HEALTH_STATUS`` in the same file shape the health answer. Recorded metrics are appended to
``<state-dir>/metrics.jsonl``, so they survive a restart. Every request is counted, by key
fingerprint and outcome, at ``GET /_requests`` (admin keys).

Run: ``python -m stellar_ops_dev.api_stub --port P --env-file F --state-dir D``
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

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


def fingerprint(key: str) -> str:
    """What names a key in logs and counts: the first 8 hex digits of its sha256."""
    return hashlib.sha256(key.encode()).hexdigest()[:8]


class ApiState:
    def __init__(self, env_file: Path, state_dir: Path) -> None:
        self.env_file = env_file
        self.started_at = datetime.now(UTC).isoformat()
        self.metrics_path = state_dir / "metrics.jsonl"
        self.latencies: deque[float] = deque(maxlen=5000)
        self.lock = threading.Lock()
        self.delay_seconds = 0.0
        self.requests: Counter[tuple[str, str]] = Counter()  # (key fingerprint, "accepted"/"rejected")
        self.reload()

    def reload(self) -> None:
        env = read_env_file(self.env_file)
        with self.lock:
            self.api_keys = _keys(env.get("API_KEYS"))
            self.admin_keys = _keys(env.get("ADMIN_KEYS"))
            self.indexer_lag = float(env.get("INDEXER_LAG_SECONDS", "2.5"))
            self.health_status = env.get("HEALTH_STATUS", "ok")

    def authorised(self, key: str | None, *, admin: bool = False) -> bool:
        if not key:
            return False
        with self.lock:
            allowed = self.admin_keys if admin else self.api_keys + self.admin_keys
        # compare every key in constant time, so timing does not reveal a prefix
        ok = any(hmac.compare_digest(key.encode(), k.encode()) for k in allowed)
        with self.lock:
            self.requests[(fingerprint(key), "accepted" if ok else "rejected")] += 1
        return ok

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

    def record_latency(self, seconds: float) -> None:
        with self.lock:
            self.latencies.append(seconds)

    def request_counts(self) -> list[dict[str, Any]]:
        with self.lock:
            return [
                {"key": key, "outcome": outcome, "count": count}
                for (key, outcome), count in sorted(self.requests.items())
            ]

    def control(self, settings: Any) -> None:
        """Applies a ``/_control`` body; a bad value raises ValueError or TypeError."""
        with self.lock:
            if "delay_ms" in settings:
                self.delay_seconds = float(settings["delay_ms"]) / 1000
            if "indexer_lag_seconds" in settings:
                self.indexer_lag = float(settings["indexer_lag_seconds"])
            if "health_status" in settings:
                self.health_status = str(settings["health_status"])
            if settings.get("reset_latencies"):
                self.latencies.clear()


class ApiHandler(BaseHTTPRequestHandler):
    """Answers one request against ``state``, which :func:`make_handler` binds.

    Every route but ``GET /_ready`` is in :attr:`ROUTES`, with who may call it.
    """

    server_version = VERSION
    state: ApiState

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
        if self.state.authorised(self.headers.get("X-API-Key"), admin=admin):
            return True
        self._send(403 if self.headers.get("X-API-Key") else 401, {"error": "invalid or missing X-API-Key"})
        return False

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        path = self.path.split("?")[0]
        if path == "/_ready":
            # the stack's readiness probe: no key, no delay, not counted as a request
            self._send(200, {"ready": True})
            return
        started = time.perf_counter()
        self._serve("GET", path)
        # /_requests is bookkeeping of the stand-in itself: it stays out of the latencies
        if path != "/_requests":
            self.state.record_latency(time.perf_counter() - started)

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        self._serve("POST", self.path.split("?")[0])

    def _serve(self, method: str, path: str) -> None:
        """Waits the configured delay, then answers ``path`` if the key may call it; an unknown path
        is answered 404 without looking at the key."""
        time.sleep(self.state.delay_seconds)
        route = self.ROUTES.get((method, path))
        if route is None:
            self._send(404, {"error": f"no route {path}"})
            return
        answer, admin = route
        if self._guard(admin=admin):
            answer(self)

    def _request_counts(self) -> None:
        self._send(200, {"requests": self.state.request_counts()})

    def _health(self) -> None:
        state = self.state
        self._send(
            200 if state.health_status == "ok" else 503,
            {
                "status": state.health_status,
                "indexer_lag_seconds": state.indexer_lag,
                "version": VERSION,
                "started_at": state.started_at,
            },
        )

    def _latency(self) -> None:
        self._send(200, {"latency": self.state.percentiles()})

    def _recorded_metrics(self) -> None:
        self._send(200, {"metrics": self.state.recorded_metrics()})

    def _record_metrics(self) -> None:
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
        self.state.record_metrics(payload)
        self._send(202, {"accepted": len(payload["metrics"])})

    def _reload(self) -> None:
        self.state.reload()
        self._send(200, {"api_keys": len(self.state.api_keys), "admin_keys": len(self.state.admin_keys)})

    def _control(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            self.state.control(json.loads(self.rfile.read(length) or b"{}"))
        except (ValueError, TypeError) as exc:
            self._send(400, {"error": f"invalid control settings: {exc}"})
            return
        self._send(
            200,
            {
                "delay_ms": self.state.delay_seconds * 1000,
                "indexer_lag_seconds": self.state.indexer_lag,
                "health_status": self.state.health_status,
            },
        )

    # (method, path) -> (answer, whether only admin keys may call it)
    ROUTES: ClassVar[dict[tuple[str, str], tuple[Callable[[ApiHandler], None], bool]]] = {
        ("GET", "/_requests"): (_request_counts, True),
        ("GET", "/health"): (_health, False),
        ("GET", "/health/metrics"): (_latency, False),
        ("GET", "/api/metrics"): (_recorded_metrics, True),
        ("POST", "/api/metrics"): (_record_metrics, False),
        ("POST", "/_reload"): (_reload, True),
        ("POST", "/_control"): (_control, True),
    }


def make_handler(state: ApiState) -> type[BaseHTTPRequestHandler]:
    """An :class:`ApiHandler` class bound to ``state`` (the server builds a handler per request)."""

    class Handler(ApiHandler):
        pass

    Handler.state = state
    return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--env-file", type=Path, required=True)
    parser.add_argument("--state-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    args.state_dir.mkdir(parents=True, exist_ok=True)
    state = ApiState(args.env_file, args.state_dir)
    server = ThreadingHTTPServer((args.host, args.port), make_handler(state))
    print(
        f"api stub on {args.host}:{args.port} with {len(state.api_keys)} API and {len(state.admin_keys)} admin keys"
    )
    server.serve_forever()


if __name__ == "__main__":
    main()
