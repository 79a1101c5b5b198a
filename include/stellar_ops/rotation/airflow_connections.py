"""This package's own Airflow connections, switched to a new credential through Airflow's REST API.

A task in Airflow 3 cannot write a connection: the Task SDK's execution API only reads them. A
rotation therefore switches the connections that log in with the rotated secret (``stellar_db``,
``stellar_redis``, ``stellar_s3``...) through the public REST API, as a service user whose role
may only read and edit connections (``Rotation service``, set up by
:mod:`stellar_ops.adapters.common.roles`); the user's URL, login and password are the HTTP
connection ``rotation.airflow_api_conn_id`` (``airflow_api``).

The calls, as Airflow 3.3 and its FAB auth manager answer them:

- ``POST /auth/token`` with ``{"username", "password"}`` answers 201 ``{"access_token"}``; every
  call then sends ``Authorization: Bearer <token>``. The token is kept, and fetched once more when
  a call answers 401 (it expired: ``[api_auth] jwt_expiration_time``).
- ``GET /api/v2/connections/{id}`` reads the metadata DB's row only; its password comes back
  redacted (``***``) unless ``[core] hide_sensitive_var_conn_fields`` is off, so the API cannot
  tell whether the password is already the new one, and a switch sends it again (idempotent).
- ``PATCH /api/v2/connections/{id}?update_mask=login&update_mask=password`` with the body's
  required ``connection_id`` and ``conn_type`` (read first) beside ``login`` and ``password``:
  nothing else of the connection (host, port, schema, extra) changes. Airflow keeps the stored
  password when it is sent ``***`` (the UI's "unchanged"), so that is refused as a new password.

Only a row of the metadata DB can be switched. A connection defined by ``AIRFLOW_CONN_<ID>`` in
the workers' environment shadows the row and no task can change it: :func:`environment_defined`
names those, and the rotation refuses before it starts. A connection that only a secrets backend
holds answers 404 here, and the switch says so.

Neither the new password nor the service user's is ever in a message, a log line or a repr: they
are named by their fingerprint (:func:`stellar_ops.rotation.keys.fingerprint`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import quote

from stellar_ops.core.errors import ConfigError
from stellar_ops.rotation.credentials import CredentialError
from stellar_ops.rotation.keys import fingerprint

# the FAB role of the service user a rotation calls the API as (roles.py sets it up)
ROTATION_SERVICE = "Rotation service"
CONN_ENV_PREFIX = "AIRFLOW_CONN_"  # Airflow's environment-variables secrets backend
REDACTED = "***"  # what the API answers for a password, and keeps the stored one for
TOKEN_PATH = "/auth/token"
CONNECTIONS_PATH = "/api/v2/connections"
# On SQLite (make run) Airflow refuses a write while the scheduler holds the database's lock (503
# "Database is locked", or 500 "Database error") and writes nothing: tried again after a pause.
BUSY_ATTEMPTS = 5
BUSY_PAUSE_SECONDS = 2.0


class AirflowConnectionsError(CredentialError):
    """Airflow's API refused or failed a read or a switch of a connection; the message names the
    connection and the user, never a password."""


class NotInMetadataDbError(AirflowConnectionsError):
    """The connection has no row in Airflow's metadata DB: the API cannot switch it."""


class ForbiddenError(AirflowConnectionsError):
    """The API user lacks the permission the call needs."""


def environment_defined(conn_ids: Iterable[str], environ: Mapping[str, str]) -> list[str]:
    """The ids among ``conn_ids`` that ``AIRFLOW_CONN_<ID>`` defines in ``environ``: Airflow reads
    those before the metadata DB, so a switch through the API would not reach the tasks. (Airflow
    ignores an empty value, and so does this.)"""
    return [conn_id for conn_id in conn_ids if environ.get(CONN_ENV_PREFIX + conn_id.upper())]


def require_switchable(conn_ids: Iterable[str], environ: Mapping[str, str]) -> None:
    """Refuse (:class:`ConfigError`) when any of ``conn_ids`` is defined in the environment."""
    defined = environment_defined(conn_ids, environ)
    if defined:
        names = ", ".join(f"{conn_id} ({CONN_ENV_PREFIX}{conn_id.upper()})" for conn_id in defined)
        raise ConfigError(
            f"the connections {names} are defined in the workers' environment, which no task can "
            "change: define them in Airflow's metadata DB instead (airflow_settings.yaml locally, "
            "`airflow connections import`), then rotate"
        )


def api_base_url(host: str | None, port: int | None = None, schema: str | None = None) -> str:
    """The API's base URL from an HTTP connection's fields, as the HTTP provider reads them: a host
    with its scheme (``https://airflow.example.com``) is taken as it is, else ``schema`` (``http``
    when unset) is the scheme; a port is added when the host has none."""
    if not host:
        raise ConfigError("the Airflow API connection has no host")
    scheme, _, rest = (host if "://" in host else f"{schema or 'http'}://{host}").partition("://")
    authority, slash, path = rest.rstrip("/").partition("/")
    if port and ":" not in authority.rsplit("]", 1)[-1]:  # [::1] is a host without a port
        authority = f"{authority}:{port}"
    return f"{scheme}://{authority}{slash}{path}"


class AirflowConnections:
    """Airflow's connections at ``base_url``, read and switched as the API user ``username``."""

    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        *,
        timeout: float = 10,
        verify: bool | str = True,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not username or not password:
            raise ConfigError(f"the Airflow API at {base_url} needs a login and a password")
        self.base_url = base_url.rstrip("/")
        self.username = username
        self.__password = password
        self.timeout = timeout
        self.verify = verify
        self._sleep = sleep
        self._token: str | None = None
        self._session: Any = None

    def __repr__(self) -> str:  # never the password, whatever prints this
        return f"AirflowConnections({self.base_url}, user={self.username!r})"

    # -- reads and the switch ------------------------------------------------------------------

    def login_of(self, conn_id: str) -> str | None:
        """The connection's login in the metadata DB; None when it has no row there (404)."""
        found = self._read(conn_id)
        login = None if found is None else found.get("login")
        return None if login is None else str(login)

    def switch(self, conn_id: str, login: str, password: str) -> bool:
        """Set the connection's login and password, nothing else. True when it was written; False
        only when Airflow shows passwords (``hide_sensitive_var_conn_fields`` off) and both were
        already these. Raises :class:`NotInMetadataDbError` for a connection with no row in the
        metadata DB and :class:`ForbiddenError` when the user may not read or edit connections."""
        if not password or password == REDACTED:
            raise AirflowConnectionsError(
                f"connection {conn_id}: {password!r} cannot be a new password (Airflow keeps the "
                "stored one for ***)"
            )
        current = self._read(conn_id)
        if current is None:
            raise self._not_in_db(conn_id)
        if current.get("login") == login and current.get("password") == password:
            return False
        path = f"{CONNECTIONS_PATH}/{quote(conn_id, safe='')}"
        body = {
            "connection_id": conn_id,
            "conn_type": current["conn_type"],
            "login": login,
            "password": password,
        }
        response = self._call("PATCH", path, json=body, params={"update_mask": ["login", "password"]})
        if response.status_code == 404:
            raise self._not_in_db(conn_id)
        if response.status_code == 403:
            raise self._forbidden("edit", conn_id)
        if response.status_code != 200:
            raise AirflowConnectionsError(
                f"Airflow {self.base_url}: switching connection {conn_id} to login {login!r} (password "
                f"{fingerprint(password)}) as {self.username!r} answered {response.status_code}: "
                f"{self._detail(response, password)}; the connection is unchanged"
            )
        written = _json(response)
        if written.get("login") != login:
            raise AirflowConnectionsError(
                f"Airflow {self.base_url} answered that connection {conn_id} was switched, but its "
                f"login is {written.get('login')!r}, not {login!r}"
            )
        return True

    # -- the API -------------------------------------------------------------------------------

    def _read(self, conn_id: str) -> dict[str, Any] | None:
        response = self._call("GET", f"{CONNECTIONS_PATH}/{quote(conn_id, safe='')}")
        if response.status_code == 404:
            return None
        if response.status_code == 403:
            raise self._forbidden("read", conn_id)
        if response.status_code != 200:
            raise AirflowConnectionsError(
                f"Airflow {self.base_url}: reading connection {conn_id} as {self.username!r} answered "
                f"{response.status_code}: {self._detail(response)}"
            )
        return _json(response)

    def _not_in_db(self, conn_id: str) -> NotInMetadataDbError:
        return NotInMetadataDbError(
            f"connection {conn_id} is not in Airflow's metadata DB: define it there, the rotation "
            "cannot switch a connection defined elsewhere (the environment, a secrets backend; "
            f"Airflow {self.base_url})"
        )

    def _forbidden(self, verb: str, conn_id: str) -> ForbiddenError:
        return ForbiddenError(
            f"Airflow {self.base_url} refuses user {self.username!r} to {verb} connection {conn_id}: "
            f"the user needs the permission to {verb} connections (can_{verb} on Connections; the "
            f"{ROTATION_SERVICE!r} role has both read and edit)"
        )

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        """One call with the token; a 401 (the token expired) fetches a new one and tries once more."""
        for attempt in (1, 2):
            token = self._token or self._login()
            response = self._send(method, path, headers={"Authorization": f"Bearer {token}"}, **kwargs)
            if response.status_code != 401 or attempt == 2:
                return response
            self._token = None
        raise AssertionError("unreachable")  # pragma: no cover

    def _login(self) -> str:
        response = self._send(
            "POST", TOKEN_PATH, json={"username": self.username, "password": self.__password}
        )
        if response.status_code in (400, 401, 403):
            raise AirflowConnectionsError(
                f"Airflow {self.base_url} refuses the login of user {self.username!r} (password "
                f"{fingerprint(self.__password)}): POST {TOKEN_PATH} answered {response.status_code} "
                f"{self._detail(response)}; check the login and password of the Airflow API connection"
            )
        token = _json(response).get("access_token") if response.status_code in (200, 201) else None
        if not token:
            raise AirflowConnectionsError(
                f"Airflow {self.base_url}: POST {TOKEN_PATH} for user {self.username!r} answered "
                f"{response.status_code} without a token: {self._detail(response)}"
            )
        self._token = str(token)
        return self._token

    def _send(self, method: str, path: str, **kwargs: Any) -> Any:
        import requests

        if self._session is None:
            self._session = requests.Session()
        for attempt in range(1, BUSY_ATTEMPTS + 1):
            try:
                response = self._session.request(
                    method, self.base_url + path, timeout=self.timeout, verify=self.verify, **kwargs
                )
            except requests.RequestException as exc:
                # the text names the URL only: the credentials travel in the body and a header
                raise AirflowConnectionsError(
                    f"Airflow {self.base_url}: {method} {path} failed: {type(exc).__name__}: {exc}"
                ) from None
            if not _busy(response) or attempt == BUSY_ATTEMPTS:
                return response
            self._sleep(BUSY_PAUSE_SECONDS * attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def _detail(self, response: Any, *secrets: str) -> str:
        """Airflow's ``detail`` (or the start of the body), any password in it by its fingerprint:
        a validation error quotes the body it refused."""
        hidden = [secret for secret in (*secrets, self.__password) if secret]
        try:
            document = response.json()
        except ValueError:
            text = response.text
        else:
            if isinstance(document, dict):
                document = document.get("detail", document)
            # in the parsed document first: its repr may escape a password's characters
            text = str(_scrub(document, hidden))
        text = str(_scrub(text, hidden))
        return text[:300]  # cut after the scrubbing: a cut password would no longer be found


def _scrub(value: Any, secrets: list[str]) -> Any:
    """``value`` (JSON) with each secret, as it is and JSON-escaped, replaced by its fingerprint."""
    if isinstance(value, str):
        for secret in secrets:
            for form in {secret, json.dumps(secret)[1:-1]}:
                value = value.replace(form, fingerprint(secret))
        return value
    if isinstance(value, list):
        return [_scrub(item, secrets) for item in value]
    if isinstance(value, dict):
        return {_scrub(k, secrets): _scrub(v, secrets) for k, v in value.items()}
    return value


def _busy(response: Any) -> bool:
    if response.status_code == 503:
        return True
    return response.status_code == 500 and "database" in response.text.lower()


def _json(response: Any) -> dict[str, Any]:
    try:
        document = response.json()
    except ValueError:
        document = None
    return document if isinstance(document, dict) else {}
