"""Grafana's admin password, changed through its HTTP API and proven by logging in.

Grafana holds ONE password per user: there is no overlap window as with Redis or the twin
roles. The moment :meth:`GrafanaAdmin.change_password` succeeds the old password is refused, so
whatever uses it (the password store, a provisioning script) must be switched right after, and
the rollback is another change, back to the old password with the new one as the current.

The calls are Grafana's documented API: ``GET /api/user`` (basic auth) to test a login,
``GET /api/users/lookup?loginOrEmail=`` for the user's id and
``PUT /api/admin/users/:id/password`` (as a Grafana server admin) to set the password. A
password only travels in the basic-auth header and the PUT's body; messages name it by its
fingerprint.

Grafana blocks a login after 5 failed attempts in 5 minutes (its brute-force protection), even
with the right password: a change costs at most one refused login (the proof that the old
password no longer works), and callers should not poll :meth:`GrafanaAdmin.logs_in` with a
password that may be wrong.

``GF_SECURITY_ADMIN_PASSWORD`` is read by Grafana only when it creates the admin (its first start
on an empty database): after a rotation it no longer says what the password is, except on a new
volume, so the store must hold the current password.
"""

from __future__ import annotations

from typing import Any

from stellar_ops.rotation.credentials import CredentialError
from stellar_ops.rotation.keys import fingerprint


class GrafanaError(CredentialError):
    """Grafana refused or failed a call, or a change did not take as it should."""


class GrafanaAdmin:
    """The Grafana user ``user`` (a server admin) at ``url``."""

    def __init__(
        self, url: str, user: str = "admin", *, timeout: float = 10.0, verify: bool | str = True
    ) -> None:
        self.url = url.rstrip("/")
        self.user = user
        self.timeout = timeout
        self.verify = verify

    def __repr__(self) -> str:
        return f"GrafanaAdmin({self.url}, user={self.user!r})"

    def logs_in(self, password: str) -> bool:
        """Whether ``GET /api/user`` with this password answers 200 (401: refused)."""
        response = self._call("GET", "/api/user", password)
        if response.status_code == 200:
            return True
        if response.status_code == 401:
            return False
        raise GrafanaError(
            f"Grafana {self.url}: GET /api/user as {self.user!r} (password {fingerprint(password)}) "
            f"answered {response.status_code}: {_message(response, password)}"
        )

    def user_id(self, password: str) -> int:
        """The id of ``user`` (``GET /api/users/lookup``), signed in as ``user`` with ``password``."""
        response = self._call("GET", "/api/users/lookup", password, params={"loginOrEmail": self.user})
        if response.status_code != 200:
            raise GrafanaError(
                f"Grafana {self.url}: looking up user {self.user!r} answered {response.status_code}: "
                f"{_message(response, password)}"
            )
        try:
            return int(response.json()["id"])
        except (ValueError, KeyError, TypeError):
            raise GrafanaError(
                f"Grafana {self.url}: the lookup of user {self.user!r} answered no id"
            ) from None

    def change_password(self, current: str, new: str) -> bool:
        """Set ``new`` in place of ``current``, then prove ``new`` logs in and ``current`` is
        refused. True when it changed now; False when ``new`` was already the password (a rotation
        resumed after a crash between the change and what follows)."""
        if current == new:
            raise GrafanaError(f"Grafana {self.url}: the new password {fingerprint(new)} is the current one")
        if not self.logs_in(current):
            # the one refused login a resumed rotation spends: has the change already happened?
            if self.logs_in(new):
                return False
            raise GrafanaError(
                f"Grafana {self.url} refuses user {self.user!r} with both the current password "
                f"{fingerprint(current)} and the new one {fingerprint(new)}: the password was changed "
                "by something else (see `grafana-cli admin reset-admin-password`)"
            )
        user_id = self.user_id(current)
        path = f"/api/admin/users/{user_id}/password"
        response = self._call("PUT", path, current, json={"password": new})
        if response.status_code != 200:
            raise GrafanaError(
                f"Grafana {self.url}: PUT {path} (new password {fingerprint(new)}) as {self.user!r} "
                f"answered {response.status_code}: {_message(response, current, new)}; "
                "the password is unchanged"
            )
        if not self.logs_in(new):
            raise GrafanaError(
                f"Grafana {self.url} answered that the password of {self.user!r} was updated, but the "
                f"new password {fingerprint(new)} does not log in"
            )
        if self.logs_in(current):
            raise GrafanaError(
                f"Grafana {self.url}: after the change the old password {fingerprint(current)} of "
                f"{self.user!r} still logs in"
            )
        return True

    def _call(self, method: str, path: str, password: str, **kwargs: Any) -> Any:
        import requests

        try:
            return requests.request(
                method,
                self.url + path,
                auth=(self.user, password),
                timeout=self.timeout,
                verify=self.verify,
                **kwargs,
            )
        except requests.RequestException as exc:
            # the exception text holds the URL only: basic auth goes in a header
            raise GrafanaError(
                f"Grafana {self.url}: {method} {path} failed: {type(exc).__name__}: {exc}"
            ) from None


def _message(response: Any, *secrets: str) -> str:
    """Grafana's ``message``, or the start of the body, with any secret replaced by its fingerprint."""
    try:
        text = str(response.json().get("message"))
    except (ValueError, AttributeError):
        text = response.text[:200]
    for secret in secrets:
        text = text.replace(secret, fingerprint(secret))
    return text
