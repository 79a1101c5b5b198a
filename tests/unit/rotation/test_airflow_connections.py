"""stellar_ops.rotation.airflow_connections against a stand-in of Airflow 3.3's REST API.

The stand-in answers as Airflow's routes do (read in the installed source): ``POST /auth/token``
(201, or 401 "Invalid credentials"), ``GET /api/v2/connections/{id}`` with the password redacted,
``PATCH`` with ``update_mask`` (only the masked fields change, ``***`` keeps the stored password,
the body needs ``connection_id`` and ``conn_type``), 403 by permission, 404, 401 for an expired
token and 503 while SQLite is locked. The live API is proven by tests/e2e/test_connection_switch.py.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from stellar_ops.core.errors import ConfigError
from stellar_ops.rotation.airflow_connections import (
    ROTATION_SERVICE,
    AirflowConnections,
    AirflowConnectionsError,
    ForbiddenError,
    NotInMetadataDbError,
    api_base_url,
    environment_defined,
    require_switchable,
)
from stellar_ops.rotation.credentials import generate_secret
from stellar_ops.rotation.keys import fingerprint

SERVICE_PASSWORD = "svc-" + generate_secret(16)


@dataclass
class FakeAirflow:
    """What the stand-in holds: users, their permissions, the connections, and what it was asked."""

    users: dict[str, str] = field(default_factory=lambda: {"rotation": SERVICE_PASSWORD, "viewer": "v-pw"})
    permissions: dict[str, set[str]] = field(
        default_factory=lambda: {"rotation": {"read", "edit"}, "viewer": {"read"}}
    )
    connections: dict[str, dict[str, Any]] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    show_passwords: bool = False  # [core] hide_sensitive_var_conn_fields = False
    busy: int = 0  # how many calls answer 503 "Database is locked" first
    patch_answer: int | None = None  # a PATCH answers this status, quoting its body
    calls: list[tuple[str, str, Any]] = field(default_factory=list)

    def expire_tokens(self) -> None:
        self.tokens.clear()

    def logins(self) -> int:
        return sum(1 for method, path, _ in self.calls if (method, path) == ("POST", "/auth/token"))


class Handler(BaseHTTPRequestHandler):
    state: FakeAirflow  # set on a subclass per server

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_PATCH(self) -> None:
        self._route("PATCH")

    def _answer(self, status: int, document: Any) -> None:
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _route(self, method: str) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        query = parse_qs(url.query)
        self.state.calls.append((method, url.path, {"body": body, "query": query}))
        if self.state.busy:
            self.state.busy -= 1
            return self._answer(503, {"detail": "Database is locked"})
        if (method, url.path) == ("POST", "/auth/token"):
            return self._token(body)
        user = self.state.tokens.get(self.headers.get("Authorization", "").removeprefix("Bearer "))
        if user is None:
            return self._answer(401, {"detail": "Invalid JWT token"})
        prefix = "/api/v2/connections/"
        if not url.path.startswith(prefix):
            return self._answer(404, {"detail": "Not Found"})
        conn_id = unquote(url.path[len(prefix) :])
        if ("read" if method == "GET" else "edit") not in self.state.permissions.get(user, set()):
            return self._answer(403, {"detail": "Forbidden"})
        if method == "PATCH":
            return self._patch(conn_id, body, query.get("update_mask"))
        return self._get(conn_id)

    def _token(self, body: Any) -> None:
        if not body or not body.get("username") or not body.get("password"):
            return self._answer(400, {"detail": "Username and password must be provided"})
        if self.state.users.get(body["username"]) != body["password"]:
            return self._answer(401, {"detail": "Invalid credentials"})
        token = f"t{len(self.state.calls)}"
        self.state.tokens[token] = body["username"]
        return self._answer(201, {"access_token": token})

    def _get(self, conn_id: str) -> None:
        row = self.state.connections.get(conn_id)
        if row is None:
            return self._answer(
                404, {"detail": f"The Connection with connection_id: `{conn_id}` was not found"}
            )
        shown = dict(row, connection_id=conn_id)
        if row.get("password") is not None and not self.state.show_passwords:
            shown["password"] = "***"
        return self._answer(200, shown)

    def _patch(self, conn_id: str, body: dict[str, Any], mask: list[str] | None) -> None:
        if "conn_type" not in body or "connection_id" not in body or self.state.patch_answer:
            # FastAPI's validation error quotes the body it refused
            return self._answer(
                self.state.patch_answer or 422, {"detail": [{"msg": "refused", "input": body}]}
            )
        if body["connection_id"] != conn_id:
            return self._answer(400, {"detail": "The connection_id in the request body does not match"})
        row = self.state.connections.get(conn_id)
        if row is None:
            return self._answer(404, {"detail": "not found"})
        for name in set(body) - {"connection_id"}:
            if mask and name not in mask:
                continue
            if name == "password" and body[name] == "***":
                continue  # Airflow's merge: the stored password stays
            row[name] = body[name]
        return self._get(conn_id)


@pytest.fixture
def airflow() -> Iterator[tuple[FakeAirflow, str]]:
    state = FakeAirflow()
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("StandIn", (Handler,), {"state": state}))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def db_row(login: str = "stellar_blue", password: str = "old-pw") -> dict[str, Any]:
    return {
        "conn_type": "postgres",
        "host": "db.internal",
        "port": 5432,
        "schema": "stellar_escrow",
        "login": login,
        "password": password,
        "extra": '{"sslmode": "require"}',
        "description": None,
    }


def client(url: str, user: str = "rotation", password: str = SERVICE_PASSWORD) -> AirflowConnections:
    return AirflowConnections(url, user, password, sleep=lambda seconds: None)


# -- the environment ----------------------------------------------------------------------------


def test_environment_defined_names_the_ids_airflow_reads_from_the_environment():
    environ = {
        "AIRFLOW_CONN_STELLAR_DB": "postgres://u:p@h/db",
        "AIRFLOW_CONN_STELLAR_REDIS": "",  # Airflow ignores an empty value
        "AIRFLOW_CONN_stellar_s3": "aws://",  # Airflow looks up the upper-case name only
        "STELLAR_DB": "x",
    }
    ids = ["stellar_s3", "stellar_db", "stellar_redis", "slack_alerts"]
    assert environment_defined(ids, environ) == ["stellar_db"]
    assert environment_defined(ids, {}) == []
    assert environment_defined(["stellar.db-2"], {"AIRFLOW_CONN_STELLAR.DB-2": "{}"}) == ["stellar.db-2"]


def test_require_switchable_refuses_naming_each_connection_and_its_variable():
    require_switchable(["stellar_db"], {})
    with pytest.raises(ConfigError) as info:
        require_switchable(
            ["stellar_db", "stellar_s3", "stellar_redis"],
            {"AIRFLOW_CONN_STELLAR_DB": "{}", "AIRFLOW_CONN_STELLAR_REDIS": "redis://"},
        )
    message = str(info.value)
    assert "stellar_db (AIRFLOW_CONN_STELLAR_DB), stellar_redis (AIRFLOW_CONN_STELLAR_REDIS)" in message
    assert "stellar_s3" not in message
    assert "no task can change" in message and "metadata DB" in message


@pytest.mark.parametrize(
    ("host", "port", "schema", "url"),
    [
        ("127.0.0.1", 8080, "http", "http://127.0.0.1:8080"),
        ("127.0.0.1", 8080, None, "http://127.0.0.1:8080"),
        ("airflow.example.com", None, "https", "https://airflow.example.com"),
        ("https://airflow.example.com/", 8443, None, "https://airflow.example.com:8443"),
        ("https://airflow.example.com:9443/base/", 8443, "http", "https://airflow.example.com:9443/base"),
        ("[::1]", 8080, "http", "http://[::1]:8080"),
    ],
)
def test_api_base_url_reads_an_http_connection_as_the_http_provider(host, port, schema, url):
    assert api_base_url(host, port, schema) == url


def test_api_base_url_needs_a_host():
    with pytest.raises(ConfigError, match="has no host"):
        api_base_url(None, 8080)


# -- the switch ---------------------------------------------------------------------------------


def test_switch_patches_login_and_password_only_with_the_fields_the_body_needs(airflow):
    state, url = airflow
    state.connections["stellar_db"] = db_row()
    new = generate_secret()

    assert client(url).switch("stellar_db", "stellar_green", new) is True

    row = state.connections["stellar_db"]
    assert row == {**db_row(), "login": "stellar_green", "password": new}
    (patch,) = [call for call in state.calls if call[0] == "PATCH"]
    assert patch[1] == "/api/v2/connections/stellar_db"
    assert patch[2]["query"] == {"update_mask": ["login", "password"]}
    assert patch[2]["body"] == {
        "connection_id": "stellar_db",
        "conn_type": "postgres",
        "login": "stellar_green",
        "password": new,
    }


def test_switch_sends_the_password_again_while_the_api_redacts_it(airflow):
    state, url = airflow
    new = generate_secret()
    state.connections["stellar_redis"] = {**db_row("stellar", new), "conn_type": "redis"}
    api = client(url)

    assert api.switch("stellar_redis", "stellar", new) is True, "the API cannot show the password"
    assert api.switch("stellar_redis", "stellar", new) is True
    assert [c[0] for c in state.calls if c[0] != "POST"] == ["GET", "PATCH", "GET", "PATCH"]
    assert state.connections["stellar_redis"]["password"] == new
    assert state.logins() == 1, "the token is kept"


def test_switch_does_nothing_when_airflow_shows_both_are_already_these(airflow):
    state, url = airflow
    state.show_passwords = True
    new = generate_secret()
    state.connections["stellar_db"] = db_row("stellar_green", new)

    assert client(url).switch("stellar_db", "stellar_green", new) is False
    assert not [c for c in state.calls if c[0] == "PATCH"]
    assert client(url).switch("stellar_db", "stellar_green", generate_secret()) is True


@pytest.mark.parametrize("password", ["***", ""])
def test_switch_refuses_a_password_airflow_would_not_store(airflow, password):
    state, url = airflow
    state.connections["stellar_db"] = db_row()
    with pytest.raises(AirflowConnectionsError, match="cannot be a new password"):
        client(url).switch("stellar_db", "stellar_green", password)
    assert state.calls == []


def test_a_connection_not_in_the_metadata_db_is_a_clear_error(airflow):
    state, url = airflow
    api = client(url)

    assert api.login_of("stellar_s3") is None
    with pytest.raises(NotInMetadataDbError) as info:
        api.switch("stellar_s3", "AKIA2", generate_secret())

    assert str(info.value) == (
        "connection stellar_s3 is not in Airflow's metadata DB: define it there, the rotation cannot "
        f"switch a connection defined elsewhere (the environment, a secrets backend; Airflow {url})"
    )
    assert not [c for c in state.calls if c[0] == "PATCH"]


def test_login_of_reads_the_login(airflow):
    state, url = airflow
    state.connections["stellar_db"] = db_row("stellar_blue")
    assert client(url).login_of("stellar_db") == "stellar_blue"
    state.connections["no_login"] = {**db_row(), "login": None}
    assert client(url).login_of("no_login") is None


def test_a_user_who_may_not_edit_connections_is_told_which_permission_and_role(airflow):
    state, url = airflow
    state.connections["stellar_db"] = db_row()
    viewer = client(url, "viewer", "v-pw")

    assert viewer.login_of("stellar_db") == "stellar_blue"
    with pytest.raises(ForbiddenError) as info:
        viewer.switch("stellar_db", "stellar_green", generate_secret())
    assert str(info.value) == (
        f"Airflow {url} refuses user 'viewer' to edit connection stellar_db: the user needs the "
        "permission to edit connections (can_edit on Connections; the 'Rotation service' role has "
        "both read and edit)"
    )
    assert state.connections["stellar_db"] == db_row()

    state.permissions["viewer"] = set()
    with pytest.raises(
        ForbiddenError, match="'viewer' to read connection stellar_db.*can_read on Connections"
    ):
        viewer.login_of("stellar_db")
    assert ROTATION_SERVICE == "Rotation service"


def test_a_wrong_password_names_the_user_and_its_fingerprint_never_the_password(airflow):
    state, url = airflow
    state.connections["stellar_db"] = db_row()
    wrong = "wrong-" + generate_secret(16)
    api = client(url, "rotation", wrong)

    with pytest.raises(AirflowConnectionsError) as info:
        api.switch("stellar_db", "stellar_green", generate_secret())

    message = str(info.value)
    assert message == (
        f"Airflow {url} refuses the login of user 'rotation' (password {fingerprint(wrong)}): POST "
        "/auth/token answered 401 Invalid credentials; check the login and password of the Airflow "
        "API connection"
    )
    assert wrong not in message and wrong not in repr(api)
    assert state.connections["stellar_db"] == db_row()


def test_an_expired_token_is_renewed_once(airflow):
    state, url = airflow
    state.connections["stellar_db"] = db_row()
    api = client(url)
    assert api.login_of("stellar_db") == "stellar_blue"

    state.expire_tokens()
    assert api.switch("stellar_db", "stellar_green", generate_secret()) is True
    assert state.logins() == 2


class _ForgetfulDict(dict[str, str]):
    """Tokens the stand-in hands out and never recognises."""

    def __setitem__(self, key: str, value: str) -> None:
        pass


def test_a_token_refused_right_after_the_login_is_an_error_not_a_loop(airflow):
    state, url = airflow
    state.connections["stellar_db"] = db_row()
    state.tokens = _ForgetfulDict()
    with pytest.raises(
        AirflowConnectionsError, match="reading connection stellar_db as 'rotation' answered 401"
    ):
        client(url).login_of("stellar_db")
    assert state.logins() == 2, "one login, one renewal, then the error"


def test_a_refused_patch_names_the_new_password_by_its_fingerprint_only(airflow):
    state, url = airflow
    state.connections["stellar_db"] = db_row()
    state.patch_answer = 422  # a validation error, which quotes the body it refused
    new = "q'uo\\te\"d-" + generate_secret()  # characters a repr or JSON would escape

    with pytest.raises(AirflowConnectionsError) as info:
        client(url).switch("stellar_db", "stellar_green", new)

    message = str(info.value)
    assert message.startswith(
        f"Airflow {url}: switching connection stellar_db to login 'stellar_green' (password "
        f"{fingerprint(new)}) as 'rotation' answered 422: "
    )
    assert message.endswith("; the connection is unchanged")
    assert fingerprint(new) in message.split("answered 422")[1], "the quoted body is in the message"
    assert new not in message and SERVICE_PASSWORD not in message
    assert state.connections["stellar_db"] == db_row()


def test_a_connection_deleted_between_the_read_and_the_patch_is_not_in_the_metadata_db(airflow):
    state, url = airflow
    state.connections["stellar_db"] = db_row()
    state.patch_answer = 404
    with pytest.raises(NotInMetadataDbError, match="connection stellar_db is not in Airflow's metadata DB"):
        client(url).switch("stellar_db", "stellar_green", generate_secret())


def test_a_locked_database_is_waited_out(airflow):
    state, url = airflow
    state.connections["stellar_db"] = db_row()
    pauses: list[float] = []
    api = AirflowConnections(url, "rotation", SERVICE_PASSWORD, sleep=pauses.append)
    state.busy = 3

    assert api.switch("stellar_db", "stellar_green", generate_secret()) is True
    assert pauses == [2.0, 4.0, 6.0]


def test_a_database_locked_for_good_is_an_error(airflow):
    state, url = airflow
    state.connections["stellar_db"] = db_row()
    state.busy = 100
    with pytest.raises(AirflowConnectionsError, match="POST /auth/token for user 'rotation' answered 503"):
        client(url).login_of("stellar_db")
    assert len(state.calls) == 5


def test_an_unreachable_airflow_names_the_url():
    api = client("http://127.0.0.1:9")  # discard: nothing listens
    with pytest.raises(AirflowConnectionsError, match=r"Airflow http://127.0.0.1:9: POST /auth/token failed"):
        api.login_of("stellar_db")


def test_the_repr_and_the_constructor_keep_the_password_out():
    api = AirflowConnections("http://127.0.0.1:8080/", "rotation", SERVICE_PASSWORD)
    assert repr(api) == "AirflowConnections(http://127.0.0.1:8080, user='rotation')"
    assert SERVICE_PASSWORD not in repr(vars(api).keys())
    with pytest.raises(ConfigError, match="needs a login and a password"):
        AirflowConnections("http://127.0.0.1:8080", "rotation", "")
