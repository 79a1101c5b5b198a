"""The four rotated secrets behind one interface: what ``secret_rotation``'s steps call.

Each backend wraps one server's own way to hold an old and a new credential:

- :class:`PostgresTwins`: the idle twin login role gets the new password; the removal disables the
  twin (or the group's own login) the consumers used before;
- :class:`RedisPasswords`: the ACL user holds both passwords; the removal takes the old one;
- :class:`GrafanaPassword`: one password, changed through the admin API (no overlap);
- :class:`S3AccessKeys`: a second IAM access key; the removal deactivates, then deletes, the old.

Every method is idempotent, so a step re-run after a crash finds its own work done.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from stellar_ops.core.http import RedisTarget
from stellar_ops.postgres.target import PgTarget
from stellar_ops.rotation import twins
from stellar_ops.rotation.credentials import Acceptance, Credential, CredentialError, generate_secret
from stellar_ops.rotation.grafana import GrafanaAdmin
from stellar_ops.rotation.redis_acl import RedisAclUser
from stellar_ops.rotation.s3_keys import IamAccessKeys


class SecretBackend(Protocol):
    secret: str
    overlap: bool  # whether the old and the new credential are both valid during the window

    def describe(self) -> str: ...

    def problem(self) -> str | None:
        """Why the backend cannot rotate yet (set-up missing), or None."""
        ...

    def new_credential(self, current: Credential | None, nbytes: int) -> Credential:
        """The credential the rotation gives the consumers (S3: created here, shown once)."""
        ...

    def add(self, new: Credential, old: Credential | None) -> bool:
        """Make ``new`` valid (beside ``old`` when the backend overlaps); False when it was."""
        ...

    def accepts(self, credential: Credential) -> Acceptance: ...

    def users_of(self, old: Credential) -> list[str]:
        """Who still logs in with ``old``, as far as the server can tell."""
        ...

    def remove(self, old: Credential, new: Credential) -> bool:
        """Make ``old`` invalid; False when it was already."""
        ...

    def undo(self, new: Credential, old: Credential | None) -> None:
        """The rollback of :meth:`add`: ``old`` alone is valid again."""
        ...

    def discard(self, new: Credential) -> None:
        """Forget a credential that was made but never added (a rejected roll-out)."""
        ...


class PostgresTwins:
    secret = "POSTGRES_PASSWORD"
    overlap = True

    def __init__(self, admin: PgTarget, app: PgTarget, app_role: str) -> None:
        self.admin = admin
        self.app = app
        self.app_role = app_role

    def describe(self) -> str:
        return f"the twin login roles of {self.app_role!r} on {self.app.describe()}"

    def problem(self) -> str | None:
        if not twins.state(self.admin, self.app_role).ready:
            return (
                f"the twins of {self.app_role!r} are not set up: run `stellar-ops secrets setup-twins` once"
            )
        return None

    def new_credential(self, current: Credential | None, nbytes: int) -> Credential:
        state = twins.state(self.admin, self.app_role)
        twin = twins.idle_twin(state)
        if current is not None and current.identity == twin:
            raise CredentialError(
                f"the key store's {self.secret} logs in as {twin}, which the server says is idle: the "
                "key store and the server disagree; fix the key store before rotating"
            )
        return Credential(twin, generate_secret(nbytes))

    def add(self, new: Credential, old: Credential | None) -> bool:
        return twins.set_password(self.admin, new.identity, new.secret)

    def accepts(self, credential: Credential) -> Acceptance:
        return twins.accepts(self.app, credential)

    def users_of(self, old: Credential) -> list[str]:
        count = twins.sessions(self.admin, old.identity)
        return [f"{count} session(s) of {old.identity} (pg_stat_activity)"] if count else []

    def remove(self, old: Credential, new: Credential) -> bool:
        state = twins.state(self.admin, self.app_role)
        if old.identity == self.app_role:
            if not state.group_can_login:
                return False
            twins.retire_group_login(self.admin, self.app_role)
            return True
        if not state.twin(old.identity).can_login:
            return False
        twins.disable(self.admin, old.identity)
        return True

    def undo(self, new: Credential, old: Credential | None) -> None:
        state = twins.state(self.admin, self.app_role)
        if new.identity in twins.twin_names(self.app_role) and state.twin(new.identity).can_login:
            twins.disable(self.admin, new.identity, allow_sessions=True)

    def discard(self, new: Credential) -> None:
        return None


class RedisPasswords:
    secret = "REDIS_PASSWORD"
    overlap = True

    def __init__(self, admin: RedisTarget, user: str) -> None:
        self.acl = RedisAclUser(admin, user)
        self.user = user

    def describe(self) -> str:
        return f"Redis ACL user {self.user!r} on {self.acl.admin.describe()}"

    def problem(self) -> str | None:
        return None

    def new_credential(self, current: Credential | None, nbytes: int) -> Credential:
        return Credential(self.user, generate_secret(nbytes))

    def add(self, new: Credential, old: Credential | None) -> bool:
        added = self.acl.add_password(new.secret)
        self.acl.persist()
        return added

    def accepts(self, credential: Credential) -> Acceptance:
        ok = self.acl.accepts(credential)
        return Acceptance(ok, f"{credential} {'logged in' if ok else 'was refused'} (AUTH, PING)")

    def users_of(self, old: Credential) -> list[str]:
        return []  # Redis does not say which password a connection logged in with

    def remove(self, old: Credential, new: Credential) -> bool:
        removed = self.acl.remove_password(old.secret)
        self.acl.persist()
        return removed

    def undo(self, new: Credential, old: Credential | None) -> None:
        if old is not None and self.acl.holds(new.secret):
            self.acl.remove_password(new.secret)
            self.acl.persist()

    def discard(self, new: Credential) -> None:
        return None


class GrafanaPassword:
    secret = "GRAFANA_ADMIN_PASSWORD"
    overlap = False  # Grafana holds one password: the add changes it

    def __init__(self, admin: GrafanaAdmin) -> None:
        self.admin = admin

    def describe(self) -> str:
        return f"Grafana's {self.admin.user!r} at {self.admin.url}"

    def problem(self) -> str | None:
        return None

    def new_credential(self, current: Credential | None, nbytes: int) -> Credential:
        return Credential(self.admin.user, generate_secret(nbytes))

    def add(self, new: Credential, old: Credential | None) -> bool:
        if old is None:
            raise CredentialError(
                f"the key store has no current {self.secret}: Grafana's password changes only with the current one"
            )
        return self.admin.change_password(old.secret, new.secret)

    def accepts(self, credential: Credential) -> Acceptance:
        ok = self.admin.logs_in(credential.secret)
        return Acceptance(ok, f"{credential} {'logged in' if ok else 'was refused'} (GET /api/user)")

    def users_of(self, old: Credential) -> list[str]:
        return []

    def remove(self, old: Credential, new: Credential) -> bool:
        return False  # the add already replaced it

    def undo(self, new: Credential, old: Credential | None) -> None:
        if old is not None and not self.admin.logs_in(old.secret):
            self.admin.change_password(new.secret, old.secret)

    def discard(self, new: Credential) -> None:
        return None


class S3AccessKeys:
    secret = "S3_CREDENTIALS"
    overlap = True

    def __init__(self, keys: IamAccessKeys, *, wait: Callable[[float], None] | None = None) -> None:
        import time

        self.keys = keys
        self.wait = wait or time.sleep

    def describe(self) -> str:
        return f"the access keys of IAM user {self.keys.user!r}"

    def problem(self) -> str | None:
        return None

    def new_credential(self, current: Credential | None, nbytes: int) -> Credential:
        known = [current.identity] if current else []
        strangers = self.keys.strangers(known)
        if strangers:
            raise CredentialError(
                f"IAM user {self.keys.user!r} has access keys the key store does not know "
                f"({', '.join(str(key) for key in strangers)}): a key created by hand, or by a rotation that "
                "crashed before storing it (its secret is lost). Delete it (deactivate, then delete) if "
                "no consumer uses it, then run the rotation again"
            )
        return self.keys.create()

    def add(self, new: Credential, old: Credential | None) -> bool:
        return self.keys.reactivate(new.identity)

    def accepts(self, credential: Credential) -> Acceptance:
        # a new key becomes usable within seconds, not at once
        for _ in range(15):
            if self.keys.accepts(credential):
                return Acceptance(True, f"{credential} accepted (STS GetCallerIdentity)")
            self.wait(1.0)
        return Acceptance(False, f"{credential} refused (STS GetCallerIdentity)")

    def users_of(self, old: Credential) -> list[str]:
        return []

    def remove(self, old: Credential, new: Credential) -> bool:
        deactivated = self.keys.deactivate(old.identity) if self.keys.key(old.identity) else False
        deleted = self.keys.delete(old.identity)
        return deactivated or deleted

    def undo(self, new: Credential, old: Credential | None) -> None:
        self.discard(new)

    def discard(self, new: Credential) -> None:
        if self.keys.key(new.identity) is None:
            return
        self.keys.deactivate(new.identity)
        self.keys.delete(new.identity)
