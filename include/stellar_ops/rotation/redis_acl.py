"""A Redis ACL user's passwords: two at once, so a rotation has a transition window.

Redis 6+ lets an ACL user hold several passwords (``ACL SETUSER u >new``, later ``<old``): the
consumers move to the new password while the old one still works, then the old one is removed,
the same window as the API keys. ``REDIS_PASSWORD`` (``requirepass``) is the ``default`` user's
password, so it rotates the same way with ``user="default"``.

The plaintext is never in an ACL command: a password is added and removed by its sha256
(``#<hash>`` / ``!<hash>``, the documented equivalents of ``>pw`` / ``<pw``), so MONITOR, SLOWLOG
and ACL LOG never see it; only a consumer's ``AUTH`` carries it. The first 8 hex digits of that
hash are the secret's fingerprint (:func:`stellar_ops.rotation.keys.fingerprint`), which is how
:meth:`RedisAclUser.passwords` names what the user holds.

Every change is idempotent: adding a password the user holds, or removing one it no longer
holds, does nothing (a rotation resumes after a crash between any two steps).

ACL changes live in memory until saved: :meth:`RedisAclUser.persist` writes them where this
server keeps its users (``ACL SAVE`` with an ``aclfile``, else ``CONFIG REWRITE``), or says that
it has neither (then a restart brings back what the config file or command line says).
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any

from stellar_ops.core.http import RedisTarget
from stellar_ops.rotation.credentials import Credential, CredentialError
from stellar_ops.rotation.keys import fingerprint


class RedisAclError(CredentialError):
    """Redis refused an ACL change, or the user is not one a password rotation can act on."""


def password_hash(secret: str) -> str:
    """The sha256 Redis stores for a password (``ACL GETUSER`` lists these)."""
    return hashlib.sha256(secret.encode()).hexdigest()


class RedisAclUser:
    """The ACL user ``user`` of the server ``admin`` points at; ``admin`` logs in as a user that
    may run ``ACL SETUSER``/``GETUSER`` (the ``default`` user, or an admin user)."""

    def __init__(self, admin: RedisTarget, user: str, *, timeout: float = 5.0) -> None:
        self.admin = admin
        self.user = user
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"RedisAclUser({self.admin.describe()}, user={self.user!r})"

    def passwords(self) -> list[str]:
        """Fingerprints of the passwords the user holds now, in the server's order."""
        return [digest[:8] for digest in self._rules()["passwords"]]

    def holds(self, secret: str) -> bool:
        return password_hash(secret) in self._rules()["passwords"]

    def add_password(self, new: str) -> bool:
        """Give the user ``new`` beside the passwords it holds; False when it held it already."""
        digest = password_hash(new)
        if digest in self._usable_rules()["passwords"]:
            return False
        self._setuser(f"#{digest}", what=f"add password {fingerprint(new)}")
        return True

    def remove_password(self, old: str) -> bool:
        """Take ``old`` from the user; False when it did not hold it (a re-run).

        Refuses to remove the user's last password: nobody could log in as it any more."""
        digest = password_hash(old)
        held = self._usable_rules()["passwords"]
        if digest not in held:
            return False
        if len(held) == 1:
            raise RedisAclError(
                f"Redis ACL user {self.user!r} on {self.admin.describe()}: password {fingerprint(old)} "
                "is its only password; add the new one before removing the old"
            )
        self._setuser(f"!{digest}", what=f"remove password {fingerprint(old)}")
        return True

    def accepts(self, credential: Credential) -> bool:
        """Whether a new connection logs in with ``credential`` (``AUTH user pw``, then ``PING``).

        False when Redis refuses the login; an unreachable server raises :class:`RedisAclError`."""
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        target = replace(self.admin, username=credential.identity, password=credential.secret)
        client = target.client(timeout=self.timeout)
        client.set_retry(Retry(NoBackoff(), 0))  # one login, as a consumer's first attempt
        try:
            client.ping()
        except redis.AuthenticationError:
            return False
        except redis.exceptions.NoPermissionError:
            return True  # logged in; the user may simply not run PING
        except redis.RedisError as exc:
            raise RedisAclError(
                f"Redis {self.admin.describe()} could not be asked whether {credential} logs in: "
                f"{type(exc).__name__}: {exc}"
            ) from None
        finally:
            client.close()
        return True

    def persist(self) -> bool:
        """Save the ACL where the server keeps it; False when it has no aclfile nor config file."""
        import redis

        with self._client() as client:
            try:
                aclfile = client.config_get("aclfile").get("aclfile") or ""
                if aclfile:
                    client.execute_command("ACL", "SAVE")
                    return True
                client.execute_command("CONFIG", "REWRITE")
                return True
            except redis.ResponseError as exc:
                if "without a config file" in str(exc):
                    return False
                raise RedisAclError(
                    f"Redis {self.admin.describe()} could not save its ACL "
                    f"({'ACL SAVE' if aclfile else 'CONFIG REWRITE'}): {exc}"
                ) from None
            except redis.RedisError as exc:
                raise RedisAclError(f"Redis {self.admin.describe()}: saving the ACL failed: {exc}") from None

    def _client(self) -> Any:
        return self.admin.client(timeout=self.timeout)

    def _rules(self) -> dict[str, Any]:
        import redis

        with self._client() as client:
            try:
                rules = client.acl_getuser(self.user)
            except redis.RedisError as exc:
                raise RedisAclError(
                    f"Redis {self.admin.describe()}: ACL GETUSER {self.user} failed: "
                    f"{type(exc).__name__}: {exc}"
                ) from None
        if rules is None:
            raise RedisAclError(
                f"Redis {self.admin.describe()} has no ACL user {self.user!r}: create it with its "
                "permissions first (a rotation only changes passwords)"
            )
        return {"flags": list(rules.get("flags") or []), "passwords": list(rules.get("passwords") or [])}

    def _usable_rules(self) -> dict[str, Any]:
        """The rules of a user whose passwords a rotation may change: enabled, not ``nopass``."""
        rules = self._rules()
        if "off" in rules["flags"]:
            raise RedisAclError(
                f"Redis ACL user {self.user!r} on {self.admin.describe()} is disabled (off): "
                "a password rotation does not enable it"
            )
        if "nopass" in rules["flags"]:
            raise RedisAclError(
                f"Redis ACL user {self.user!r} on {self.admin.describe()} is nopass (any password "
                "logs in): adding one would lock out consumers that send none; set a password first"
            )
        return rules

    def _setuser(self, rule: str, *, what: str) -> None:
        import redis

        with self._client() as client:
            try:
                client.execute_command("ACL", "SETUSER", self.user, rule)
            except redis.RedisError as exc:
                # the message may echo the rule, which holds the hash: name the change instead
                message = str(exc).replace(rule[1:], "<hash>")
                raise RedisAclError(
                    f"Redis {self.admin.describe()} refused to {what} for ACL user {self.user!r}: "
                    f"{type(exc).__name__}: {message}"
                ) from None
