"""A credential (who logs in and with what secret) and how a new secret is made.

Shared by the backends that rotate a login (PostgreSQL twin roles, Redis ACL users, Grafana's
admin, S3 access keys). The secret is never in a repr, a log line or an exception message: a
credential is named by its identity and the fingerprint of its secret (see
:func:`stellar_ops.rotation.keys.fingerprint`).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from stellar_ops.core.errors import StellarOpsError
from stellar_ops.rotation.keys import fingerprint


class CredentialError(StellarOpsError):
    """A backend refused or could not apply a credential change; the message names the identity
    and the secret's fingerprint, never the secret."""


@dataclass(frozen=True)
class Credential:
    """``identity`` (a role, a user, an access key id) and its ``secret``, kept out of the repr."""

    identity: str
    secret: str = field(repr=False)

    @property
    def fingerprint(self) -> str:
        """The first 8 hex digits of the secret's sha256: the only name the secret has in logs."""
        return fingerprint(self.secret)

    def __str__(self) -> str:
        return f"{self.identity} (secret {self.fingerprint})"


@dataclass(frozen=True)
class Acceptance:
    """Whether a login with a credential worked, and if not what the server said."""

    ok: bool
    reason: str

    def __bool__(self) -> bool:
        return self.ok


def generate_secret(nbytes: int = 32) -> str:
    """``nbytes`` random bytes as URL-safe base64 without padding: ``A-Z a-z 0-9 - _`` only, so
    the secret needs no quoting in a URL, a DSN, a .env file, an ACL rule or a JSON body."""
    if nbytes < 16:
        raise ValueError(f"nbytes must be at least 16 for a secret, got {nbytes}")
    return secrets.token_urlsafe(nbytes)
