"""A stand-in for Grafana's HTTP API, the part a password rotation uses; no Grafana runs here.

What it answers, as Grafana documents it (basic auth everywhere but ``/api/health``):

- ``GET /api/health``: ``{"database": "ok", "version": ...}``
- ``GET /api/user``: the signed-in user, or ``401 {"message": "Invalid username or password"}``
- ``GET /api/users/lookup?loginOrEmail=L``: ``{"id", "login", ...}`` (admins only), 404 when none
- ``PUT /api/admin/users/:id/password`` with ``{"password": P}`` (Grafana server admins only):
  ``200 {"message": "User password updated"}``; 400 for a password under 4 characters

Each user has ONE password, and only it logs in. As Grafana does, a login that failed
``max_failures`` times in 5 minutes is blocked (401) even with the right password.

Control routes (no auth): ``GET /_calls``, every request recorded as
``{method, path, user, auth_fingerprint, password_fingerprint, status}`` (a password only ever
by the first 8 hex digits of its sha256); ``DELETE /_calls`` forgets them.

Run: ``GF_SECURITY_ADMIN_PASSWORD=... python -m stellar_ops_dev.grafana_stub --port P`` (the
admin's login from ``GF_SECURITY_ADMIN_USER``, default ``admin``, like Grafana; never in argv).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import hmac
import json
import os
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

VERSION = "grafana-stub/1"
BLOCK_SECONDS = 300


def fingerprint(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()[:8]


Answer = tuple[int, Any]
User = dict[str, Any]


class Users:
    """The users, their one password each, the failed logins and the recorded calls."""

    def __init__(
        self,
        admin_user: str,
        admin_password: str,
        others: dict[str, str] | None = None,
        *,
        max_failures: int = 5,
    ) -> None:
        self.lock = threading.Lock()
        self.max_failures = max_failures
        self.by_login: dict[str, User] = {
            admin_user: {"id": 1, "login": admin_user, "password": admin_password, "admin": True}
        }
        for n, (login, password) in enumerate((others or {}).items(), start=2):
            self.by_login[login] = {"id": n, "login": login, "password": password, "admin": False}
        self.failures: dict[str, list[float]] = {}
        self.calls: list[dict[str, Any]] = []

    @staticmethod
    def public(user: User) -> dict[str, Any]:
        return {
            "id": user["id"],
            "login": user["login"],
            "email": f"{user['login']}@localhost",
            "name": user["login"],
            "isGrafanaAdmin": user["admin"],
            "orgId": 1,
        }

    def sign_in(self, creds: tuple[str, str] | None) -> User | None:
        """The user the basic auth names, when its password is right and it is not blocked."""
        if creds is None:
            return None
        login, password = creds
        now = time.monotonic()
        with self.lock:
            recent = [t for t in self.failures.get(login, []) if now - t < BLOCK_SECONDS]
            self.failures[login] = recent
            if len(recent) >= self.max_failures:
                return None  # brute-force protection: blocked whatever the password
            user = self.by_login.get(login)
            if user is not None and hmac.compare_digest(user["password"], password):
                self.failures[login] = []
                return user
            recent.append(now)
            return None

    def current_user(self, user: User, query: dict[str, list[str]], body: Any) -> Answer:
        return 200, self.public(user)

    def lookup(self, user: User, query: dict[str, list[str]], body: Any) -> Answer:
        if not user["admin"]:
            return 403, {"message": "Permission denied"}
        wanted = (query.get("loginOrEmail") or [""])[0]
        with self.lock:
            found = next(
                (u for u in self.by_login.values() if wanted in (u["login"], f"{u['login']}@localhost")),
                None,
            )
        if found is None:
            return 404, {"message": "user not found"}
        return 200, self.public(found)

    def set_password(self, user: User, user_id: int, body: Any) -> Answer:
        if not user["admin"]:
            return 403, {"message": "Permission denied"}
        if not isinstance(body, dict) or not isinstance(body.get("password"), str):
            return 400, {"message": "bad request data"}
        if len(body["password"]) < 4:
            return 400, {"message": "New password too short"}
        with self.lock:
            target = next((u for u in self.by_login.values() if u["id"] == user_id), None)
            if target is None:
                return 404, {"message": "user not found"}
            target["password"] = body["password"]
        return 200, {"message": "User password updated"}

    def route(
        self, method: str, path: str, query: dict[str, list[str]], creds: tuple[str, str] | None, body: Any
    ) -> Answer:
        user = self.sign_in(creds)
        if user is None:
            return 401, {"message": "Invalid username or password"}
        if method == "GET" and path == "/api/user":
            return self.current_user(user, query, body)
        if method == "GET" and path == "/api/users/lookup":
            return self.lookup(user, query, body)
        match = re.fullmatch(r"/api/admin/users/(\d+)/password", path)
        if method == "PUT" and match:
            return self.set_password(user, int(match[1]), body)
        return 404, {"message": "Not found"}

    def record(self, method: str, path: str, creds: tuple[str, str] | None, body: Any, status: int) -> None:
        password = body.get("password") if isinstance(body, dict) else None
        with self.lock:
            self.calls.append(
                {
                    "method": method,
                    "path": path,
                    "user": creds[0] if creds else None,
                    "auth_fingerprint": fingerprint(creds[1]) if creds else None,
                    "password_fingerprint": fingerprint(password) if isinstance(password, str) else None,
                    "status": status,
                }
            )


def basic_auth(header: str | None) -> tuple[str, str] | None:
    if not header or not header.startswith("Basic "):
        return None
    try:
        login, _, password = base64.b64decode(header[6:]).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return login, password


def make_handler(users: Users) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            pass

        def _send(self, status: int, payload: Any) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _handle(self) -> None:
            parts = urlsplit(self.path)
            if parts.path == "/_calls":
                with users.lock:
                    if self.command == "DELETE":
                        users.calls.clear()
                    calls = list(users.calls)
                self._send(200, calls)
                return
            if parts.path == "/api/health":
                self._send(200, {"database": "ok", "version": VERSION})
                return
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length > 0 else b""
            try:
                body = json.loads(raw) if raw else {}
            except json.JSONDecodeError:
                body = None
            creds = basic_auth(self.headers.get("Authorization"))
            status, payload = users.route(self.command, parts.path, parse_qs(parts.query), creds, body)
            users.record(self.command, self.path, creds, body, status)
            self._send(status, payload)

        do_GET = do_PUT = do_POST = do_DELETE = _handle  # noqa: N815 - stdlib names

    return Handler


class GrafanaStub:
    """The stand-in in a thread of the test's process: ``url``, ``calls()``, ``stop()``."""

    def __init__(
        self,
        admin_password: str,
        *,
        admin_user: str = "admin",
        others: dict[str, str] | None = None,
        port: int = 0,
        max_failures: int = 5,
    ) -> None:
        self.users = Users(admin_user, admin_password, others, max_failures=max_failures)
        self.server = ThreadingHTTPServer(("127.0.0.1", port), make_handler(self.users))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def calls(self) -> list[dict[str, Any]]:
        with self.users.lock:
            return list(self.users.calls)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    password = os.environ.get("GF_SECURITY_ADMIN_PASSWORD")
    if not password:
        parser.error("GF_SECURITY_ADMIN_PASSWORD is not set: the admin's first password comes from it")
    users = Users(os.environ.get("GF_SECURITY_ADMIN_USER", "admin"), password)
    server = ThreadingHTTPServer((args.host, args.port), make_handler(users))
    print(f"grafana stub on {args.host}:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
