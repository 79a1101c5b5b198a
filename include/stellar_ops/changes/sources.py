"""Where a migration script is read from: a path on the worker, a key in the backups bucket, or a
revision of the git checkout ``changes.git_dir`` names (``git:<rev>:<path>``).

What is read is kept in the change log with its sha256 (:mod:`stellar_ops.changes.changelog`),
so every later step of the change works on exactly the text that was checked and rehearsed.
"""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path

from stellar_ops.core.errors import ConfigError, StellarOpsError
from stellar_ops.storage.s3 import S3Store

MAX_BYTES = 4 << 20
GIT_PREFIX = "git:"


class SourceError(StellarOpsError):
    """A migration script cannot be read from where it was named."""


@dataclass(frozen=True)
class Source:
    name: str  # what the operator named: the path, the key, git:<rev>:<path>
    text: str
    sha256: str

    @classmethod
    def of(cls, name: str, text: str) -> Source:
        return cls(name, text, hashlib.sha256(text.encode()).hexdigest())

    def describe(self) -> str:
        return f"{self.name} (sha256 {self.sha256[:12]}, {len(self.text.encode())} bytes)"


def _decode(name: str, data: bytes) -> str:
    if len(data) > MAX_BYTES:
        raise SourceError(f"{name} is {len(data)} bytes: a migration script may be at most {MAX_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SourceError(f"{name} is not UTF-8 text (byte {exc.start})") from None


def _from_git(name: str, git_dir: str | None) -> str:
    if not git_dir:
        raise ConfigError(f"{name} names a git revision, but changes.git_dir is not set: name the checkout")
    rev, sep, path = name.removeprefix(GIT_PREFIX).partition(":")
    if not sep or not rev or not path:
        raise SourceError(f"{name!r} is not git:<rev>:<path> (for example git:main:migrations/0042.sql)")
    try:
        done = subprocess.run(
            ["git", "-C", git_dir, "show", f"{rev}:{path}"], capture_output=True, timeout=60, check=False
        )
    except FileNotFoundError:
        raise ConfigError(
            "git is not installed on this worker: cannot read a git:<rev>:<path> migration"
        ) from None
    if done.returncode != 0:
        why = done.stderr.decode(errors="replace").strip().splitlines()
        raise SourceError(f"cannot read {name} from {git_dir}: {why[-1] if why else 'git show failed'}")
    return _decode(name, done.stdout)


def read_source(name: str, *, store: S3Store, git_dir: str | None) -> Source:
    """The script ``name`` names: ``git:<rev>:<path>``, an absolute path, or a key in the bucket."""
    name = name.strip()
    if not name:
        raise SourceError(
            "no migration named: give a path on the worker, a key in the bucket, or git:<rev>:<path>"
        )
    if name.startswith(GIT_PREFIX):
        return Source.of(name, _from_git(name, git_dir))
    if name.startswith("/"):
        path = Path(name)
        if not path.is_file():
            raise SourceError(f"{name} is not a file on this worker")
        return Source.of(name, _decode(name, path.read_bytes()))
    key = name.removeprefix(f"s3://{store.bucket}/")
    if not store.exists(key):
        raise SourceError(
            f"{store.url(key)} does not exist: name a key of the bucket, a path or git:<rev>:<path>"
        )
    return Source.of(name, _decode(name, store.get_bytes(key)))
