"""Where the services' config variables live, and a change to them that can be taken back exactly.

Two stores behind one interface, the same places the key rotation writes its keys:

- :class:`EnvFileSettings`: the API's ``.env``. Every version the file has had under a change is
  kept as ``<env>.versions/<version id>`` (0600), so a revert writes back the very bytes it had;
- :class:`SecretsManagerSettings`: one JSON secret ``{"NAME": "value"}``. A change is a new
  ``AWSCURRENT`` version (AWS moves ``AWSPREVIOUS`` onto the one before), a revert moves
  ``AWSCURRENT`` back onto the version named.

Values never reach a log: :func:`describe` shows a value whose name looks secret (or a URL with a
password in it) only by its fingerprint, and :class:`SettingsChange` keeps its values out of repr.
"""

from __future__ import annotations

import hashlib
import json
import re
import stat
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from stellar_ops.changes.config import ChangesConfig
from stellar_ops.core.errors import ConfigError, StellarOpsError
from stellar_ops.rotation.backends import env_file_path
from stellar_ops.rotation.config import KEY_SETS, RotationConfig
from stellar_ops.rotation.keys import fingerprint
from stellar_ops.rotation.keystore import CURRENT, KeyStoreError, SecretsManagerStore, write_atomically

NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
SECRET_WORDS = ("PASSWORD", "PASSWD", "SECRET", "KEY", "TOKEN", "CREDENTIAL")
# scheme://user:password@host: the password of a URL (DATABASE_URL, REDIS_URL) is as secret as any
URL_PASSWORD = re.compile(r"^[a-z][a-z0-9+.-]*://[^/@\s]*:[^/@\s]+@", re.IGNORECASE)


class SettingsError(StellarOpsError):
    """A config change is invalid, or its store could not be read or written."""


@dataclass(frozen=True)
class SettingsChange:
    """Variables to set (name -> value) and to remove, and why; the values stay out of repr."""

    set: Mapping[str, str] = field(repr=False)
    remove: tuple[str, ...] = ()
    reason: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "set", {str(k): str(v) for k, v in dict(self.set).items()})
        object.__setattr__(self, "remove", tuple(dict.fromkeys(self.remove)))
        if not self.set and not self.remove:
            raise SettingsError("a config change needs at least one variable to set or remove")
        for name in [*self.set, *self.remove]:
            if not NAME.fullmatch(name):
                raise SettingsError(
                    f"config variable {name!r} is not a variable name: capitals, digits and '_' "
                    "([A-Z_][A-Z0-9_]*)"
                )
            if name in KEY_SETS:
                raise SettingsError(
                    f"{name} is a key set the key rotation owns: change it with api_key_rotation "
                    f"(stellar-ops keys rotate --key-set {name}), not with a config change"
                )
        both = sorted(set(self.set) & set(self.remove))
        if both:
            raise SettingsError(f"config variables both set and removed: {', '.join(both)}")
        for name, value in self.set.items():
            if "\n" in value or "\r" in value or "\0" in value:
                raise SettingsError(f"the value of {name} has a line break or NUL: one line per variable")
        if not self.reason.strip():
            raise SettingsError("a config change needs a reason (it is logged with the change)")

    @classmethod
    def from_assignments(
        cls, assignments: Iterable[str], remove: Iterable[str], reason: str
    ) -> SettingsChange:
        """From ``NAME=value`` strings (a CLI's ``--set``, a DAG param's lines)."""
        values: dict[str, str] = {}
        for item in assignments:
            name, sep, value = item.partition("=")
            if not sep:
                raise SettingsError(f"{name.strip()!r} is not NAME=value")
            values[name.strip()] = value
        return cls(values, tuple(r.strip() for r in remove if r.strip()), reason)

    def apply(self, before: Mapping[str, str]) -> dict[str, str]:
        after = {k: v for k, v in before.items() if k not in self.remove}
        after.update(self.set)
        return after

    def as_dict(self) -> dict[str, Any]:
        """The change with its values (for the run that applies it; log :func:`describe` instead)."""
        return {"set": dict(self.set), "remove": list(self.remove), "reason": self.reason}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SettingsChange:
        return cls(
            dict(data.get("set") or {}), tuple(data.get("remove") or ()), str(data.get("reason") or "")
        )


def looks_secret(name: str, value: str | None = None) -> bool:
    return any(word in name for word in SECRET_WORDS) or bool(value and URL_PASSWORD.match(value))


def shown(name: str, value: str | None) -> str:
    if value is None:
        return "(unset)"
    if looks_secret(name, value):
        return f"sha256:{fingerprint(value)}"
    return repr(value)


def describe(change: SettingsChange, before: Mapping[str, str]) -> list[str]:
    """One line per variable: ``FOO: 'a' -> 'b'``; a secret-looking value only by its fingerprint."""
    lines = []
    for name, value in sorted(change.set.items()):
        old = before.get(name)
        if old == value:
            lines.append(f"{name}: {shown(name, old)} (unchanged)")
        else:
            lines.append(f"{name}: {shown(name, old)} -> {shown(name, value)}")
    for name in sorted(change.remove):
        if name in before:
            lines.append(f"{name}: {shown(name, before[name])} -> (removed)")
        else:
            lines.append(f"{name}: (unset, nothing to remove)")
    return lines


class SettingsStore(Protocol):
    name: str

    def read(self) -> dict[str, str]:
        """The variables the services read at their next start."""
        ...

    def write(self, change: SettingsChange) -> str:
        """Apply ``change``; the version before is kept. Returns the new version's id (the current
        one, untouched, when the change is already in place)."""
        ...

    def revert(self, to_version: str) -> None:
        """Make the kept version ``to_version`` what the services read again."""
        ...

    def current_version(self) -> str:
        """The id of what the services read now (kept, so a later change can come back to it)."""
        ...


def parse_env(text: str) -> dict[str, str]:
    """``NAME=value`` lines as the API reads them: comments and blanks skipped, ``export`` and
    surrounding quotes dropped, the last line of a name wins."""
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.partition("=")
        values[name.strip().removeprefix("export ").strip()] = value.strip().strip("'\"")
    return values


def _line_name(line: str) -> str | None:
    stripped = line.strip()
    if not stripped or stripped.startswith("#") or "=" not in stripped:
        return None
    return stripped.partition("=")[0].strip().removeprefix("export ").strip()


def edit_env(text: str, change: SettingsChange) -> str:
    """``text`` with ``change`` made: a set variable's line rewritten where it is (every line of it,
    so the last one cannot win with the old value), a removed one's lines dropped, a new one
    appended; every other line, comment and line ending kept as it was."""
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    written: set[str] = set()
    for line in lines:
        name = _line_name(line)
        if name is None or (name not in change.set and name not in change.remove):
            out.append(line)
            continue
        if name in change.remove:
            continue
        ending = line[len(line.rstrip("\r\n")) :] or "\n"
        export = "export " if line.strip().startswith("export ") else ""
        out.append(f"{export}{name}={change.set[name]}{ending}")
        written.add(name)
    added = [f"{name}={value}\n" for name, value in change.set.items() if name not in written]
    if added and out and not out[-1].endswith(("\n", "\r")):
        out[-1] += "\n"
    out.extend(added)
    return "".join(out)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]


class EnvFileSettings:
    """The API's ``.env`` file; each version it had under a change kept in ``<env>.versions/``.

    A version id is ``<UTC time>-<sha256 of the file, 12 hex>``: ids sort by time, and the file a
    version names is checked against its hash before a revert writes it back.
    """

    name = "env_file"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.versions_dir = path.with_name(path.name + ".versions")
        if not path.is_file():
            raise ConfigError(
                f"changes.config_env_file {str(path)!r} is not a file: name the services' .env file"
            )

    def _bytes(self) -> bytes:
        try:
            return self.path.read_bytes()
        except OSError as exc:
            raise SettingsError(f"cannot read {self.path}: {exc.strerror}") from None

    def _mode(self) -> int:
        return stat.S_IMODE(self.path.stat().st_mode)

    def versions(self) -> list[str]:
        """The kept versions' ids, oldest first."""
        if not self.versions_dir.is_dir():
            return []
        return sorted(p.name for p in self.versions_dir.iterdir() if not p.name.startswith("."))

    def _keep(self, data: bytes) -> str:
        """The id of a kept version holding ``data``: the newest such one, or a new one."""
        digest = _digest(data)
        for version in reversed(self.versions()):
            if version.endswith(f"-{digest}"):
                return version
        self.versions_dir.mkdir(mode=0o700, exist_ok=True)
        version = f"{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{digest}"
        write_atomically(self.versions_dir / version, data, 0o600)
        return version

    def read(self) -> dict[str, str]:
        return parse_env(self._bytes().decode())

    def current_version(self) -> str:
        return self._keep(self._bytes())

    def write(self, change: SettingsChange) -> str:
        before = self._bytes()
        after = edit_env(before.decode(), change).encode()
        kept = self._keep(before)
        if after == before:
            return kept
        version = self._keep(after)
        write_atomically(self.path, after, self._mode())
        return version

    def revert(self, to_version: str) -> None:
        kept = self.versions_dir / to_version
        if "/" in to_version or to_version.startswith(".") or not kept.is_file():
            raise SettingsError(
                f"version {to_version!r} of {self.path} is not kept in {self.versions_dir}: "
                "nothing to revert to"
            )
        data = kept.read_bytes()
        if not to_version.endswith(f"-{_digest(data)}"):
            raise SettingsError(f"kept version {kept} does not match its hash: it was changed since")
        now = self._bytes()
        if now == data:
            return
        # the key rotation writes the same file: a revert must not bring back keys it replaced
        served, kept_keys = parse_env(now.decode()), parse_env(data.decode())
        moved = [k for k in KEY_SETS if served.get(k) != kept_keys.get(k)]
        if moved:
            raise SettingsError(
                f"{', '.join(moved)} in {self.path} changed since version {to_version} (a key rotation?): "
                "reverting would serve the keys it replaced; revert the config variables by hand"
            )
        write_atomically(self.path, data, self._mode())


class SecretsManagerSettings:
    """One JSON secret ``{"NAME": "value"}`` the services read (its ``AWSCURRENT`` version)."""

    name = "aws_secrets_manager"

    def __init__(self, client: Any, secret_id: str) -> None:
        self.client = client
        self.secret_id = secret_id
        # the staging labels as the key rotation moves them (a prefix of "" names the secret itself)
        self._labels = SecretsManagerStore(client, prefix="")

    def _fail(self, action: str, exc: Exception) -> SettingsError:
        error = (getattr(exc, "response", None) or {}).get("Error", {})
        detail = f"{error.get('Code')}: {error.get('Message')}" if error else type(exc).__name__
        return SettingsError(f"Secrets Manager {action} of {self.secret_id!r} failed: {detail}")

    def _document(self, version_id: str) -> dict[str, str]:
        try:
            answer = self.client.get_secret_value(SecretId=self.secret_id, VersionId=version_id)
        except Exception as exc:
            raise self._fail(f"reading version {version_id}", exc) from None
        try:
            document = json.loads(answer.get("SecretString") or "")
        except ValueError:
            document = None
        if not isinstance(document, dict):
            raise SettingsError(
                f"Secrets Manager secret {self.secret_id!r} is not a JSON object of variables "
                '({"NAME": "value"}): changes.config_secret_id must name such a secret'
            )
        return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in document.items()}

    def read(self) -> dict[str, str]:
        # by the version AWSCURRENT is on, as the rotation reads: a bare get_secret_value may answer
        # the secret's default version (moto keeps it where the version was created)
        return self._document(self.current_version())

    def _labels_now(self) -> dict[str, str]:
        try:
            labels = self._labels.labels(self.secret_id)
        except KeyStoreError as exc:
            raise SettingsError(str(exc)) from None
        if CURRENT not in labels:
            raise SettingsError(f"Secrets Manager secret {self.secret_id!r} has no AWSCURRENT version")
        return labels

    def current_version(self) -> str:
        return self._labels_now()[CURRENT]

    def write(self, change: SettingsChange) -> str:
        current = self.current_version()
        before = self._document(current)
        after = change.apply(before)
        if after == before:
            return current
        text = json.dumps(after, sort_keys=True)
        # the same change on the same version is the same request: a re-run finds its own version
        token = uuid.uuid5(
            uuid.NAMESPACE_URL, f"stellar-ops/config/{current}/{hashlib.sha256(text.encode()).hexdigest()}"
        )
        try:
            answer = self.client.put_secret_value(
                SecretId=self.secret_id,
                ClientRequestToken=str(token),
                SecretString=text,
                VersionStages=[CURRENT],
            )
        except Exception as exc:
            raise self._fail("putting the new version", exc) from None
        return str(answer["VersionId"])

    def revert(self, to_version: str) -> None:
        current = self.current_version()
        if current == to_version:
            return
        self._document(to_version)  # it exists and is a config document
        try:
            # AWS moves AWSPREVIOUS onto the version AWSCURRENT leaves, as put_secret_value does
            self._labels.move_label(self.secret_id, CURRENT, to_version, current)
        except KeyStoreError as exc:
            raise SettingsError(str(exc)) from None


def open_store(
    settings: ChangesConfig,
    rotation: RotationConfig,
    *,
    secrets_client: Callable[[], Any],
    env: Mapping[str, str] | None = None,
) -> SettingsStore:
    """The store ``changes.config_store`` names; the env file defaults to the rotation's."""
    if settings.config_store == "aws_secrets_manager":
        return SecretsManagerSettings(secrets_client(), settings.config_secret_id)
    path = Path(settings.config_env_file) if settings.config_env_file else env_file_path(rotation, env)
    return EnvFileSettings(path)
