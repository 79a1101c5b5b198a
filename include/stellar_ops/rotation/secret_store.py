"""Where the consumers read the rotated secrets' credentials: one interface, two stores.

The secrets ``secret_rotation`` rotates (``POSTGRES_PASSWORD``, ``REDIS_PASSWORD``,
``GRAFANA_ADMIN_PASSWORD``, ``S3_CREDENTIALS``) are each a login and its secret
(:class:`~stellar_ops.rotation.credentials.Credential`), held in the API's environment under the
variables ``rotation.<secret>.env`` names. As for the API's keys (:mod:`stellar_ops.rotation.keystore`),
each has, after AWS Secrets Manager's rotation:

- *current*: what the consumers read at their next start (``AWSCURRENT``; the ``.env`` lines);
- *pending*: the new credential of the rotation under way (``AWSPENDING``), with its rotation id;
- *outgoing*: the credential that was current when the rotation switched the consumers, kept
  until it finishes (or is switched back);
- *previous*: the credential before the last finished rotation (``AWSPREVIOUS``).

A rotation moves through ``stage_pending`` → ``switch`` → ``finish`` (or ``unswitch`` to roll the
consumers back, ``discard`` before the switch to give up). Every operation is idempotent, so a
step re-run after a crash finds its own work done. A secret is never in a repr, a log line or
a message: a credential is named by its identity and fingerprint.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from stellar_ops.core.errors import ConfigError
from stellar_ops.rotation.backends import env_file_path
from stellar_ops.rotation.config import RotationConfig, SecretEnv
from stellar_ops.rotation.credentials import Credential
from stellar_ops.rotation.keystore import (
    CURRENT,
    PENDING,
    PREVIOUS,
    KeyStoreError,
    SecretsManagerVersions,
    read_sidecar,
    write_atomically,
    write_sidecar,
)

# The identity of a secret without a login variable (Grafana's admin password).
DEFAULT_IDENTITY = "admin"
# The key of a Secrets Manager version's document that names its rotation; the consumers read
# only the variables beside it.
ROTATION_KEY = "_rotation"
# What an .env value may hold unquoted; anything else is written in single quotes (literal for
# Docker Compose and for dotenv readers alike).
_PLAIN_VALUE = re.compile(r"[A-Za-z0-9_./+:@%?&=,~-]*")


class SecretStore(Protocol):
    name: str

    def current(self, secret: str) -> Credential | None:
        """What the consumers use now (read at their next start); None when the store has none."""
        ...

    def pending(self, secret: str) -> tuple[Credential, str] | None:
        """The new credential of the rotation under way, and its rotation id."""
        ...

    def outgoing(self, secret: str) -> Credential | None:
        """The credential that was current when the rotation switched; None before the switch."""
        ...

    def previous(self, secret: str) -> Credential | None:
        """The credential before the last finished rotation."""
        ...

    def stage_pending(self, secret: str, credential: Credential, rotation_id: str) -> Credential:
        """Keep ``credential`` as pending for ``rotation_id`` and return it; when that rotation
        already staged one, keep and return the first. A pending of another rotation: an error."""
        ...

    def switch(self, secret: str) -> None:
        """The pending credential becomes current; the current one is kept as outgoing."""
        ...

    def unswitch(self, secret: str) -> None:
        """The outgoing credential becomes current again; the pending one is kept (to switch again)."""
        ...

    def finish(self, secret: str) -> None:
        """The rotation ends: the pending credential is no longer pending, outgoing becomes previous."""
        ...

    def discard(self, secret: str) -> None:
        """Forget the pending credential; refused once the consumers were switched to it."""
        ...


def secret_envs(settings: RotationConfig) -> dict[str, SecretEnv]:
    """Each rotated secret and the variables that hold it."""
    return {
        "POSTGRES_PASSWORD": settings.postgres.env,
        "REDIS_PASSWORD": settings.redis.env,
        "GRAFANA_ADMIN_PASSWORD": settings.grafana.env,
        "S3_CREDENTIALS": settings.s3.env,
    }


def with_userinfo(url: str, user: str, password: str) -> str:
    """``url`` logging in as ``user`` with ``password`` (both URL-quoted); its scheme, host, port,
    path, query and fragment kept as they are. The error never echoes the URL (it holds a password)."""
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme:
        raise KeyStoreError(
            "the URL to switch has no scheme:// (its value is not shown: it holds a password)"
        )
    end = next((i for i, c in enumerate(rest) if c in "/?#"), len(rest))
    host = rest[:end].rpartition("@")[2]
    if not host:
        raise KeyStoreError("the URL to switch has no host (its value is not shown: it holds a password)")
    return f"{scheme}://{quote(user, safe='')}:{quote(password, safe='')}@{host}{rest[end:]}"


def _credential_json(credential: Credential | None) -> dict[str, str] | None:
    return None if credential is None else {"identity": credential.identity, "secret": credential.secret}


def _credential_of(data: Any) -> Credential | None:
    if not isinstance(data, dict):
        return None
    return Credential(str(data["identity"]), str(data["secret"]))


def _values_for(env: SecretEnv, credential: Credential, url: str | None) -> dict[str, str]:
    """The variables a switch to ``credential`` writes: its login, its secret, the URL's userinfo."""
    values = {env.secret: credential.secret}
    if env.identity:
        values[env.identity] = credential.identity
    if env.url and url is not None:
        values[env.url] = with_userinfo(url, credential.identity, credential.secret)
    return values


class _Envs:
    """The secrets a store holds and their variables (shared by both stores)."""

    def __init__(self, envs: Mapping[str, SecretEnv]) -> None:
        self.envs = dict(envs)

    def env(self, secret: str) -> SecretEnv:
        try:
            return self.envs[secret]
        except KeyError:
            raise KeyStoreError(
                f"{secret!r} is not a secret of the key store (one of {', '.join(sorted(self.envs))})"
            ) from None

    def credential(self, secret: str, values: Mapping[str, Any], where: str) -> Credential | None:
        env = self.env(secret)
        value = values.get(env.secret)
        if value in (None, ""):
            return None
        if not env.identity:
            return Credential(DEFAULT_IDENTITY, str(value))
        identity = values.get(env.identity)
        if identity in (None, ""):
            raise KeyStoreError(
                f"{where} has {env.secret} but no {env.identity}: the login of {secret} is unknown"
            )
        return Credential(str(identity), str(value))


def _env_name(line: str) -> str | None:
    name, sep, _ = line.strip().removeprefix("export ").partition("=")
    return name.strip() if sep and not line.lstrip().startswith("#") else None


def _quote_of(line: str) -> str:
    """The quote around the value of a ``KEY=VALUE`` line, or ``""``."""
    value = line.strip().removeprefix("export ").partition("=")[2].strip()
    return value[0] if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"" else ""


def _env_value(line: str) -> str:
    value = line.strip().removeprefix("export ").partition("=")[2].strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value.strip("'\"")


class EnvSecretStore:
    """The API's ``.env`` (the file :class:`~stellar_ops.rotation.keystore.EnvFileStore` keeps the
    keys in): the consumers read the current credential from its variables (``KEY=VALUE`` lines,
    ``export`` tolerated, quotes stripped); every other line is kept as it is.

    Each write keeps the file as it was in ``<env>.previous`` and is atomic (mode 0600). The
    pending, outgoing and previous credentials live beside it in ``<env>.secrets.json`` (0600),
    which the API never reads; a switch has begun when that file marks the secret ``switched``
    (written before the ``.env``, so a crash between the two resumes the same switch).
    """

    name = "env_file"

    def __init__(self, path: Path, envs: Mapping[str, SecretEnv]) -> None:
        self.path = path
        self.state_path = path.with_name(path.name + ".secrets.json")
        self._envs = _Envs(envs)
        if not path.is_file():
            raise ConfigError(f"rotation.env_file {str(path)!r} is not a file: name the API's .env file")

    def __repr__(self) -> str:
        return f"EnvSecretStore({str(self.path)!r})"

    # --- the .env itself ---------------------------------------------------------------------

    def _lines(self) -> list[str]:
        try:
            return self.path.read_text().splitlines()
        except OSError as exc:
            raise KeyStoreError(f"cannot read {self.path}: {exc.strerror}") from None

    def _values(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for line in self._lines():
            name = _env_name(line)
            if name and name not in values:  # the first definition, as EnvFileStore reads it
                values[name] = _env_value(line)
        return values

    def _write_values(self, wanted: Mapping[str, str]) -> None:
        """Set each variable of ``wanted`` (every line that defines it; appended when none does)."""
        lines = self._lines()
        values = self._values()
        if all(values.get(name) == value for name, value in wanted.items()):
            return
        written: set[str] = set()
        for index, line in enumerate(lines):
            name = _env_name(line)
            if name is not None and name in wanted:
                prefix = "export " if line.strip().startswith("export ") else ""
                lines[index] = f"{prefix}{name}={self._quoted(name, wanted[name], _quote_of(line))}"
                written.add(name)
        lines += [
            f"{name}={self._quoted(name, value)}" for name, value in wanted.items() if name not in written
        ]
        write_atomically(self.path.with_name(self.path.name + ".previous"), self.path.read_bytes())
        write_atomically(self.path, "\n".join(lines) + "\n")

    def _quoted(self, name: str, value: str, quote: str = "") -> str:
        """``value`` as the line writes it: in the quotes the line had when they hold it as it is,
        bare when it needs none, else in single quotes."""
        if quote == "'" and "'" not in value and "\n" not in value:
            return f"'{value}'"
        if quote == '"' and not any(c in value for c in '"\\$`\n'):
            return f'"{value}"'
        if _PLAIN_VALUE.fullmatch(value):
            return value
        if "'" in value or "\n" in value:
            raise KeyStoreError(
                f"the new value of {name} cannot be written to {self.path}: it holds a quote or a newline"
            )
        return f"'{value}'"

    def _serve(self, secret: str, credential: Credential) -> None:
        env = self._envs.env(secret)
        url = self._values().get(env.url) if env.url else None
        self._write_values(_values_for(env, credential, url))

    # --- the sidecar -------------------------------------------------------------------------

    def _sidecar(self) -> dict[str, Any]:
        return read_sidecar(self.state_path)

    def _save_sidecar(self, data: dict[str, Any]) -> None:
        write_sidecar(self.state_path, data)

    def _entry(self, secret: str) -> dict[str, Any]:
        self._envs.env(secret)
        return dict(self._sidecar().get(secret) or {})

    def _save_entry(self, secret: str, entry: dict[str, Any]) -> None:
        data = self._sidecar()
        data[secret] = entry
        self._save_sidecar(data)

    # --- the interface -----------------------------------------------------------------------

    def current(self, secret: str) -> Credential | None:
        return self._envs.credential(secret, self._values(), str(self.path))

    def pending(self, secret: str) -> tuple[Credential, str] | None:
        pending = self._entry(secret).get("pending")
        credential = _credential_of(pending)
        if credential is None or not isinstance(pending, dict):
            return None
        return credential, str(pending["rotation_id"])

    def outgoing(self, secret: str) -> Credential | None:
        entry = self._entry(secret)
        return _credential_of(entry.get("outgoing")) if entry.get("switched") else None

    def previous(self, secret: str) -> Credential | None:
        return _credential_of(self._entry(secret).get("previous"))

    def stage_pending(self, secret: str, credential: Credential, rotation_id: str) -> Credential:
        entry = self._entry(secret)
        staged = self.pending(secret)
        if staged is not None:
            if staged[1] != rotation_id:
                raise KeyStoreError(
                    f"{secret} has a pending credential of another rotation, {staged[1]} ({staged[0]}), "
                    f"in {self.state_path}: finish or discard it first"
                )
            return staged[0]
        entry["pending"] = {
            "identity": credential.identity,
            "secret": credential.secret,
            "rotation_id": rotation_id,
        }
        self._save_entry(secret, entry)
        return credential

    def _pending_or_fail(self, secret: str, action: str) -> Credential:
        staged = self.pending(secret)
        if staged is None:
            raise KeyStoreError(
                f"{secret} has no pending credential in {self.state_path}: nothing to {action}"
            )
        return staged[0]

    def switch(self, secret: str) -> None:
        new = self._pending_or_fail(secret, "switch to")
        entry = self._entry(secret)
        if not entry.get("switched"):
            current = self.current(secret)
            entry["switched"] = True
            # the new one already current (written by hand) leaves nothing to switch back to
            entry["outgoing"] = _credential_json(current if current != new else None)
            self._save_entry(secret, entry)  # before the .env: a crash in between resumes this switch
        self._serve(secret, new)

    def unswitch(self, secret: str) -> None:
        entry = self._entry(secret)
        if not entry.get("switched"):
            return
        old = _credential_of(entry.get("outgoing"))
        if old is None:
            raise KeyStoreError(
                f"{secret} had no credential in {self.path} before the switch: there is none to switch back to"
            )
        self._serve(secret, old)
        entry.pop("switched", None)
        entry.pop("outgoing", None)
        self._save_entry(secret, entry)

    def finish(self, secret: str) -> None:
        entry = self._entry(secret)
        if entry.get("pending") is None:
            return
        if not entry.get("switched"):
            raise KeyStoreError(
                f"{secret}: rotation {entry['pending']['rotation_id']} was not switched in {self.path}: "
                "finishing it would drop its new credential; switch first, or discard it"
            )
        entry["previous"] = entry.get("outgoing")
        for key in ("pending", "switched", "outgoing"):
            entry.pop(key, None)
        self._save_entry(secret, entry)

    def discard(self, secret: str) -> None:
        entry = self._entry(secret)
        staged = self.pending(secret)
        if staged is None:
            return
        if entry.get("switched"):
            raise KeyStoreError(
                f"the pending {secret} of {staged[1]} ({staged[0]}) is already current in {self.path}: "
                "the consumers already use it; switch back (unswitch) before discarding it, or finish the rotation"
            )
        entry.pop("pending", None)
        self._save_entry(secret, entry)


class SecretsManagerSecretStore(SecretsManagerVersions):
    """AWS Secrets Manager: the secret ``<prefix><SECRET>`` holds a JSON object of the variables
    (named as in the ``.env``: ``{"POSTGRES_USER": ..., "POSTGRES_PASSWORD": ..., "DATABASE_URL": ...}``).

    The consumers' deployment reads the ``AWSCURRENT`` version. The staging labels move as AWS's
    own rotation functions move them: the new credential is put as ``AWSPENDING`` (a copy of the
    current variables with the login, the secret and the URL's userinfo switched), with a client
    request token derived from the rotation id, and its document names, under ``_rotation`` (a key
    the consumers ignore), the rotation id and the versions that were ``AWSCURRENT`` and
    ``AWSPREVIOUS`` when it was staged. The switch moves ``AWSCURRENT`` onto it (Secrets Manager then
    moves ``AWSPREVIOUS`` onto the outgoing version by itself); the finish makes sure
    ``AWSPREVIOUS`` is there and removes ``AWSPENDING``; switching back moves ``AWSCURRENT`` onto the
    outgoing version and ``AWSPREVIOUS`` back where it was.
    """

    name = "aws_secrets_manager"

    def __init__(self, client: Any, prefix: str, envs: Mapping[str, SecretEnv]) -> None:
        self.client = client
        self.prefix = prefix
        self._envs = _Envs(envs)

    def __repr__(self) -> str:
        return f"SecretsManagerSecretStore(prefix={self.prefix!r})"

    def secret_id(self, secret: str) -> str:
        self._envs.env(secret)
        return f"{self.prefix}{secret}"

    def _document(self, secret: str, version_id: str) -> dict[str, Any]:
        try:
            answer = self.client.get_secret_value(SecretId=self.secret_id(secret), VersionId=version_id)
        except Exception as exc:
            raise self._fail(f"reading version {version_id}", secret, exc) from None
        try:
            document = json.loads(answer.get("SecretString") or "")
        except ValueError:
            document = None
        if not isinstance(document, dict):
            raise KeyStoreError(
                f"version {version_id} of Secrets Manager secret {self.secret_id(secret)!r} is not a JSON "
                f"object of variables ({', '.join(self._names(secret))})"
            )
        return document

    def _names(self, secret: str) -> list[str]:
        env = self._envs.env(secret)
        return [name for name in (env.identity, env.secret, env.url) if name]

    def _credential(self, secret: str, version_id: str) -> Credential | None:
        where = f"version {version_id} of {self.secret_id(secret)!r}"
        return self._envs.credential(secret, self._document(secret, version_id), where)

    @staticmethod
    def _pending_token(secret: str, rotation_id: str) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"stellar-ops/secret-rotation/{secret}/{rotation_id}"))

    def _staged(self, secret: str, labels: dict[str, str]) -> tuple[Credential, dict[str, Any]] | None:
        """The pending credential and its ``_rotation`` record."""
        version = labels.get(PENDING)
        if version is None:
            return None
        document = self._document(secret, version)
        credential = self._envs.credential(
            secret, document, f"the AWSPENDING version of {self.secret_id(secret)!r}"
        )
        record = document.get(ROTATION_KEY)
        if credential is None or not isinstance(record, dict) or "rotation_id" not in record:
            raise KeyStoreError(
                f"the AWSPENDING version {version} of {self.secret_id(secret)!r} was not staged by a rotation "
                f"(no {ROTATION_KEY}.rotation_id, or no {self._envs.env(secret).secret}): remove its label"
            )
        return credential, record

    def current(self, secret: str) -> Credential | None:
        labels = self.labels(secret)
        if CURRENT not in labels:
            raise KeyStoreError(
                f"Secrets Manager secret {self.secret_id(secret)!r} has no AWSCURRENT version"
            )
        return self._credential(secret, labels[CURRENT])

    def pending(self, secret: str) -> tuple[Credential, str] | None:
        staged = self._staged(secret, self.labels(secret))
        return None if staged is None else (staged[0], str(staged[1]["rotation_id"]))

    def outgoing(self, secret: str) -> Credential | None:
        labels = self.labels(secret)
        staged = self._staged(secret, labels)
        if staged is None or labels.get(CURRENT) != labels[PENDING]:
            return None
        version = staged[1].get("outgoing_version")
        return self._credential(secret, version) if version else None

    def previous(self, secret: str) -> Credential | None:
        labels = self.labels(secret)
        staged = self._staged(secret, labels)
        if staged is not None and labels.get(CURRENT) == labels[PENDING]:
            # switched: Secrets Manager moved AWSPREVIOUS onto the outgoing version; the previous
            # one is still the one before the last finished rotation, as staged
            version = staged[1].get("previous_version")
        else:
            version = labels.get(PREVIOUS)
        return self._credential(secret, version) if version else None

    def stage_pending(self, secret: str, credential: Credential, rotation_id: str) -> Credential:
        labels = self.labels(secret)
        staged = self._staged(secret, labels)
        if staged is not None:
            if staged[1]["rotation_id"] != rotation_id:
                raise KeyStoreError(
                    f"{secret} has a pending credential of another rotation, {staged[1]['rotation_id']} "
                    f"({staged[0]}), in Secrets Manager {self.secret_id(secret)!r}: finish or discard it first"
                )
            return staged[0]
        if CURRENT not in labels:
            raise KeyStoreError(
                f"Secrets Manager secret {self.secret_id(secret)!r} has no AWSCURRENT version"
            )
        current = {k: v for k, v in self._document(secret, labels[CURRENT]).items() if k != ROTATION_KEY}
        env = self._envs.env(secret)
        url = current.get(env.url) if env.url else None
        document = {
            **current,
            **_values_for(env, credential, str(url) if url is not None else None),
            ROTATION_KEY: {
                "rotation_id": rotation_id,
                "outgoing_version": labels[CURRENT],
                "previous_version": labels.get(PREVIOUS),
            },
        }
        try:
            self.client.put_secret_value(
                SecretId=self.secret_id(secret),
                ClientRequestToken=self._pending_token(secret, rotation_id),
                SecretString=json.dumps(document),
                VersionStages=[PENDING],
            )
        except Exception as exc:
            raise self._fail("putting the pending version", secret, exc) from None
        return credential

    def _staged_or_fail(
        self, secret: str, labels: dict[str, str], action: str
    ) -> tuple[Credential, dict[str, Any]]:
        staged = self._staged(secret, labels)
        if staged is None:
            raise KeyStoreError(
                f"Secrets Manager secret {self.secret_id(secret)!r} has no AWSPENDING version: nothing to {action}"
            )
        return staged

    def switch(self, secret: str) -> None:
        labels = self.labels(secret)
        _, record = self._staged_or_fail(secret, labels, "switch to")
        if labels.get(CURRENT) == labels[PENDING]:
            return
        if labels.get(CURRENT) != record.get("outgoing_version"):
            raise KeyStoreError(
                f"AWSCURRENT of {self.secret_id(secret)!r} moved (to {labels.get(CURRENT)}) since rotation "
                f"{record['rotation_id']} staged its credential beside {record.get('outgoing_version')}: "
                "switching would undo that change; discard this rotation's credential and start again"
            )
        self.move_label(secret, CURRENT, labels[PENDING], labels.get(CURRENT))

    def unswitch(self, secret: str) -> None:
        labels = self.labels(secret)
        staged = self._staged(secret, labels)
        if staged is None:
            return
        record = staged[1]
        if labels.get(CURRENT) == labels[PENDING]:
            outgoing = record.get("outgoing_version")
            if not outgoing:
                raise KeyStoreError(
                    f"rotation {record['rotation_id']} of {self.secret_id(secret)!r} names no outgoing version "
                    "to switch back to"
                )
            self.move_label(secret, CURRENT, outgoing, labels[PENDING])
            labels = self.labels(secret)
        # Secrets Manager moved AWSPREVIOUS with each AWSCURRENT move: put it back where it was
        self.move_label(secret, PREVIOUS, record.get("previous_version"), labels.get(PREVIOUS))

    def finish(self, secret: str) -> None:
        labels = self.labels(secret)
        staged = self._staged(secret, labels)
        if staged is None:
            return
        record = staged[1]
        if labels.get(CURRENT) != labels[PENDING]:
            raise KeyStoreError(
                f"{secret}: rotation {record['rotation_id']} was not switched in {self.secret_id(secret)!r}: "
                "finishing it would drop its new credential; switch first, or discard it"
            )
        self.move_label(secret, PREVIOUS, record.get("outgoing_version"), labels.get(PREVIOUS))
        self.move_label(secret, PENDING, None, labels[PENDING])

    def discard(self, secret: str) -> None:
        labels = self.labels(secret)
        staged = self._staged(secret, labels)
        if staged is None:
            return
        if labels.get(CURRENT) == labels[PENDING]:
            raise KeyStoreError(
                f"the pending {secret} of {staged[1]['rotation_id']} ({staged[0]}) is AWSCURRENT of "
                f"{self.secret_id(secret)!r}: the consumers already use it; switch back (unswitch) before "
                "discarding it, or finish the rotation"
            )
        self.move_label(secret, PENDING, None, labels[PENDING])


def build_secret_store(
    settings: RotationConfig,
    *,
    secrets_client: Callable[[], Any],
    env: Mapping[str, str] | None = None,
) -> SecretStore:
    """The store ``rotation.key_store`` names, holding the secrets of ``rotation.SECRETS``."""
    envs = secret_envs(settings)
    if settings.key_store == "env_file":
        return EnvSecretStore(env_file_path(settings, env), envs)
    return SecretsManagerSecretStore(secrets_client(), settings.secret_prefix, envs)
