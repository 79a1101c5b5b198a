"""Where the API's keys live: one interface, two stores.

A key set (``API_KEYS`` or ``ADMIN_KEYS``) has, as in AWS Secrets Manager's rotation:

- *served*: what the API reads at its next start (``AWSCURRENT``; the line of the ``.env``);
- *pending*: the new keys of the rotation under way (``AWSPENDING``), with its rotation id;
- *outgoing*: the keys served when the rotation began, kept until it finishes or rolls back;
- *previous*: the set served before the last finished rotation (``AWSPREVIOUS``), for rollback.

Every operation is idempotent, so a step re-run after a crash finds its own work done.
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from stellar_ops.core.errors import ConfigError, StellarOpsError
from stellar_ops.rotation.keys import join_keys, parse_keys


class KeyStoreError(StellarOpsError):
    """The key store could not be read or written."""


@dataclass(frozen=True)
class KeyState:
    served: tuple[str, ...] = field(repr=False)
    pending: tuple[str, ...] | None = field(default=None, repr=False)
    rotation_id: str | None = None
    outgoing: tuple[str, ...] | None = field(default=None, repr=False)
    previous: tuple[str, ...] | None = field(default=None, repr=False)


class KeyStore(Protocol):
    name: str

    def state(self, key_set: str) -> KeyState: ...

    def stage_pending(self, key_set: str, keys: list[str], rotation_id: str) -> None:
        """Keep ``keys`` as pending for ``rotation_id``, the served set as outgoing."""
        ...

    def serve(self, key_set: str, keys: list[str]) -> None:
        """Make ``keys`` what the API reads at its next start."""
        ...

    def discard_pending(self, key_set: str) -> None:
        """Forget the rotation under way (pending and outgoing); the served set is untouched."""
        ...

    def finish(self, key_set: str) -> None:
        """Pending becomes current (it is served), outgoing becomes previous."""
        ...

    def admin_key(self) -> str | None:
        """A served admin key (for the API's reload endpoint), or None."""
        ...


def write_atomically(path: Path, text: str | bytes, mode: int = 0o600) -> None:
    """Write ``path`` through a temporary file in its directory: fsync, rename, fsync the directory.

    ``bytes`` are written as they are (a config revert gives back the very file it kept).
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(text.encode() if isinstance(text, str) else text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def read_sidecar(path: Path) -> dict[str, Any]:
    """A rotation state sidecar (JSON beside an env file); empty when there is none yet."""
    if not path.exists():
        return {}
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError) as exc:
        raise KeyStoreError(f"cannot read the rotation state {path}: {exc}") from None


def write_sidecar(path: Path, data: dict[str, Any]) -> None:
    write_atomically(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


class EnvFileStore:
    """The API's ``.env``: ``KEY_SET=a,b`` lines; everything else in the file is kept as it is.

    Each write keeps the file as it was in ``<env>.previous`` and is atomic (mode 0600). The
    rotation state (pending, outgoing, previous) is kept beside it in ``<env>.rotation.json``
    (0600), which the API never reads.
    """

    name = "env_file"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.state_path = path.with_name(path.name + ".rotation.json")
        if not path.is_file():
            raise ConfigError(f"rotation.env_file {str(path)!r} is not a file: name the API's .env file")

    def _lines(self) -> list[str]:
        try:
            return self.path.read_text().splitlines()
        except OSError as exc:
            raise KeyStoreError(f"cannot read {self.path}: {exc.strerror}") from None

    def _served(self, key_set: str) -> list[str]:
        for line in self._lines():
            name, sep, value = line.strip().removeprefix("export ").partition("=")
            if sep and name.strip() == key_set:
                return parse_keys(value.strip().strip("'\""))
        return []

    def _sidecar(self) -> dict[str, Any]:
        return read_sidecar(self.state_path)

    def _save_sidecar(self, data: dict[str, Any]) -> None:
        write_sidecar(self.state_path, data)

    def state(self, key_set: str) -> KeyState:
        entry = self._sidecar().get(key_set, {})
        pending = entry.get("pending")
        return KeyState(
            served=tuple(self._served(key_set)),
            pending=tuple(pending["keys"]) if pending else None,
            rotation_id=pending["rotation_id"] if pending else None,
            outgoing=tuple(entry["outgoing"]) if entry.get("outgoing") is not None else None,
            previous=tuple(entry["previous"]) if entry.get("previous") is not None else None,
        )

    def stage_pending(self, key_set: str, keys: list[str], rotation_id: str) -> None:
        data = self._sidecar()
        entry = data.setdefault(key_set, {})
        entry["pending"] = {"keys": list(keys), "rotation_id": rotation_id}
        entry["outgoing"] = self._served(key_set)
        self._save_sidecar(data)

    def serve(self, key_set: str, keys: list[str]) -> None:
        lines = self._lines()
        if self._served(key_set) == list(keys):
            return
        wanted = f"{key_set}={join_keys(keys)}"
        replaced = False
        for index, line in enumerate(lines):
            name, sep, _ = line.strip().removeprefix("export ").partition("=")
            if sep and name.strip() == key_set:
                lines[index] = wanted
                replaced = True
        if not replaced:
            lines.append(wanted)
        write_atomically(self.path.with_name(self.path.name + ".previous"), self.path.read_text())
        write_atomically(self.path, "\n".join(lines) + "\n")

    def discard_pending(self, key_set: str) -> None:
        data = self._sidecar()
        entry = data.get(key_set, {})
        if "pending" in entry or "outgoing" in entry:
            entry.pop("pending", None)
            entry.pop("outgoing", None)
            self._save_sidecar(data)

    def finish(self, key_set: str) -> None:
        data = self._sidecar()
        entry = data.get(key_set, {})
        if entry.get("pending") is None:
            return
        entry["previous"] = entry.get("outgoing") or []
        entry.pop("pending", None)
        entry.pop("outgoing", None)
        self._save_sidecar(data)

    def admin_key(self) -> str | None:
        served = self._served("ADMIN_KEYS")
        return served[0] if served else None


PENDING, CURRENT, PREVIOUS = "AWSPENDING", "AWSCURRENT", "AWSPREVIOUS"


class SecretsManagerVersions:
    """A Secrets Manager secret's versions and staging labels: what both stores built on it share
    (the API's key sets here, the rotated credentials in :mod:`stellar_ops.rotation.secret_store`)."""

    client: Any

    def secret_id(self, name: str) -> str:
        raise NotImplementedError

    def _fail(self, action: str, name: str, exc: Exception) -> KeyStoreError:
        error = (getattr(exc, "response", None) or {}).get("Error", {})
        detail = f"{error.get('Code')}: {error.get('Message')}" if error else type(exc).__name__
        return KeyStoreError(f"Secrets Manager {action} of {self.secret_id(name)!r} failed: {detail}")

    def labels(self, name: str) -> dict[str, str]:
        """Version id of each staging label."""
        labels: dict[str, str] = {}
        args: dict[str, Any] = {"SecretId": self.secret_id(name), "IncludeDeprecated": False}
        try:
            while True:
                page = self.client.list_secret_version_ids(**args)
                for version in page["Versions"]:
                    for stage in version.get("VersionStages", []):
                        labels[stage] = version["VersionId"]
                if not page.get("NextToken"):
                    break
                args["NextToken"] = page["NextToken"]
        except Exception as exc:
            raise self._fail("listing the versions", name, exc) from None
        return labels

    def move_label(self, name: str, stage: str, to: str | None, from_: str | None) -> None:
        if to == from_:
            return
        args: dict[str, Any] = {"SecretId": self.secret_id(name), "VersionStage": stage}
        if to:
            args["MoveToVersionId"] = to
        if from_:
            args["RemoveFromVersionId"] = from_
        try:
            self.client.update_secret_version_stage(**args)
        except Exception as exc:
            raise self._fail(f"moving {stage}", name, exc) from None


class SecretsManagerStore(SecretsManagerVersions):
    """AWS Secrets Manager: the secret ``<prefix><KEY_SET>`` holds ``{"keys": [...]}``.

    The API's deployment reads the ``AWSCURRENT`` version. The rotation moves the staging labels
    as AWS's own rotation functions do: the new keys are put as ``AWSPENDING`` (with a client
    request token derived from the rotation id, so a re-run finds them) and name the outgoing
    version by id; serving the new keys moves ``AWSCURRENT`` onto the pending version, and the
    finish moves ``AWSPREVIOUS`` onto the outgoing one, for rollback.
    """

    name = "aws_secrets_manager"

    def __init__(self, client: Any, prefix: str) -> None:
        self.client = client
        self.prefix = prefix

    def secret_id(self, key_set: str) -> str:
        return f"{self.prefix}{key_set}"

    def _document(self, key_set: str, version_id: str) -> dict[str, Any]:
        try:
            answer = self.client.get_secret_value(SecretId=self.secret_id(key_set), VersionId=version_id)
        except Exception as exc:
            raise self._fail("reading a version", key_set, exc) from None
        text = answer.get("SecretString") or ""
        try:
            document = json.loads(text)
        except ValueError:
            return {"keys": parse_keys(text)}  # a plain "a,b" secret, as the old scripts kept it
        return document if isinstance(document, dict) else {"keys": []}

    def _value(self, key_set: str, version_id: str) -> list[str]:
        return [str(k) for k in self._document(key_set, version_id).get("keys", [])]

    @staticmethod
    def _pending_token(rotation_id: str) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"stellar-ops/rotation/{rotation_id}"))

    def _pending(self, key_set: str, labels: dict[str, str]) -> dict[str, Any] | None:
        version = labels.get(PENDING)
        return self._document(key_set, version) if version else None

    def state(self, key_set: str) -> KeyState:
        labels = self.labels(key_set)
        if CURRENT not in labels:
            raise KeyStoreError(
                f"Secrets Manager secret {self.secret_id(key_set)!r} has no AWSCURRENT version"
            )
        pending = self._pending(key_set, labels)
        outgoing = pending.get("outgoing_version") if pending else None
        return KeyState(
            served=tuple(self._value(key_set, labels[CURRENT])),
            pending=tuple(str(k) for k in pending.get("keys", [])) if pending else None,
            rotation_id=pending.get("rotation_id") if pending else None,
            outgoing=tuple(self._value(key_set, outgoing)) if outgoing else None,
            previous=tuple(self._value(key_set, labels[PREVIOUS])) if PREVIOUS in labels else None,
        )

    def stage_pending(self, key_set: str, keys: list[str], rotation_id: str) -> None:
        labels = self.labels(key_set)
        document = {"keys": list(keys), "rotation_id": rotation_id, "outgoing_version": labels.get(CURRENT)}
        try:
            self.client.put_secret_value(
                SecretId=self.secret_id(key_set),
                ClientRequestToken=self._pending_token(rotation_id),
                SecretString=json.dumps(document),
                VersionStages=[PENDING],
            )
        except Exception as exc:
            raise self._fail("putting the pending version", key_set, exc) from None

    def serve(self, key_set: str, keys: list[str]) -> None:
        labels = self.labels(key_set)
        if self._value(key_set, labels[CURRENT]) == list(keys):
            return
        # the pending or the outgoing version itself, when it is what is asked: as finishSecret does
        pending = self._pending(key_set, labels) or {}
        for version in (labels.get(PENDING), pending.get("outgoing_version")):
            if version and self._value(key_set, version) == list(keys):
                self.move_label(key_set, CURRENT, version, labels[CURRENT])
                return
        try:
            self.client.put_secret_value(
                SecretId=self.secret_id(key_set),
                SecretString=json.dumps({"keys": list(keys)}),
                VersionStages=[CURRENT],
            )
        except Exception as exc:
            raise self._fail("putting the served version", key_set, exc) from None

    def discard_pending(self, key_set: str) -> None:
        labels = self.labels(key_set)
        self.move_label(key_set, PENDING, None, labels.get(PENDING))

    def finish(self, key_set: str) -> None:
        labels = self.labels(key_set)
        pending = self._pending(key_set, labels)
        if pending is None:
            return
        outgoing = pending.get("outgoing_version")
        if outgoing:
            self.move_label(key_set, PREVIOUS, outgoing, self.labels(key_set).get(PREVIOUS))
        self.move_label(key_set, PENDING, None, labels[PENDING])

    def admin_key(self) -> str | None:
        try:
            served = self.state("ADMIN_KEYS").served
        except KeyStoreError:
            return None
        return served[0] if served else None
