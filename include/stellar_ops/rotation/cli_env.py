"""The environment file ``stellar-ops`` runs with (``export`` lines: ``DATABASE_URL``, ``REDIS_URL``,
``AWS_ACCESS_KEY_ID``...), switched with this package's connections during a rotation, so the CLI
keeps working once the old secret is removed.

It holds the same variables as the API's key store (``rotation.<secret>.env``); a variable it does
not define is left out, except that a URL's login and password are switched where the URL is.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from urllib.parse import unquote, urlsplit

from stellar_ops.core.errors import ConfigError
from stellar_ops.rotation.config import SecretEnv
from stellar_ops.rotation.credentials import Credential
from stellar_ops.rotation.secret_store import EnvSecretStore, with_userinfo


class CliEnvironment:
    """``rotation.cli_env_file``: what the CLI of this deployment logs in with."""

    def __init__(self, path: Path, envs: Mapping[str, SecretEnv]) -> None:
        if not path.is_file():
            raise ConfigError(
                f"rotation.cli_env_file {str(path)!r} is not a file: name the stellar-ops environment file"
            )
        self.path = path
        self.envs = dict(envs)
        self._file = EnvSecretStore(path, envs)

    def __repr__(self) -> str:
        return f"CliEnvironment({str(self.path)!r})"

    def _values(self) -> dict[str, str]:
        return self._file._values()  # noqa: SLF001 - the same parser, one file

    def holds(self, secret: str, credential: Credential) -> bool:
        """Whether the file logs in with ``credential``: its variables, or its URL's login."""
        env = self.envs[secret]
        values = self._values()
        if env.secret in values:
            if values[env.secret] != credential.secret:
                return False
            return not env.identity or values.get(env.identity, credential.identity) == credential.identity
        url = values.get(env.url) if env.url else None
        if not url:
            return False
        parts = urlsplit(url)
        return unquote(parts.password or "") == credential.secret and unquote(parts.username or "") == (
            credential.identity
        )

    def defines(self, secret: str) -> bool:
        """Whether the file has any variable of ``secret`` (else the CLI does not use it from here)."""
        env = self.envs[secret]
        values = self._values()
        return any(name in values for name in (env.identity, env.secret, env.url) if name)

    def switch(self, secret: str, credential: Credential) -> bool:
        """Write ``credential`` in the variables the file defines; False when it held it already."""
        if not self.defines(secret) or self.holds(secret, credential):
            return False
        env = self.envs[secret]
        values = self._values()
        wanted: dict[str, str] = {}
        if env.secret in values:
            wanted[env.secret] = credential.secret
        if env.identity and env.identity in values:
            wanted[env.identity] = credential.identity
        if env.url and env.url in values:
            wanted[env.url] = with_userinfo(values[env.url], credential.identity, credential.secret)
        self._file._write_values(wanted)  # noqa: SLF001 - atomic, other lines kept
        return True
