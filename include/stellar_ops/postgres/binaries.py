"""The PostgreSQL client programs: which installation to use, and what version each one is."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from stellar_ops.core.errors import ConfigError, PrerequisiteError

CLIENT_PROGRAMS = ("pg_dump", "pg_dumpall", "pg_restore", "psql")


class BinariesSetting(Protocol):
    """A configuration section saying where the client programs are (the ``backup`` section)."""

    @property
    def pg_bin_dir(self) -> str | None: ...


@dataclass(frozen=True)
class PgBinaries:
    """The client programs of one PostgreSQL installation."""

    bin_dir: Path

    def path(self, program: str) -> str:
        return str(self.bin_dir / program)

    def version(self, program: str = "pg_dump") -> tuple[int, str]:
        """(major, full text) of ``program --version``."""
        try:
            out = subprocess.run(
                [self.path(program), "--version"], capture_output=True, text=True, check=True, timeout=30
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError) as exc:
            raise PrerequisiteError(f"cannot run {self.path(program)} --version: {exc}") from None
        match = re.search(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?", out)
        if not match:
            raise PrerequisiteError(f"cannot read the version of {self.path(program)} from {out!r}")
        return int(match.group(1)), out


def find_binaries(bin_dir: str | None = None) -> PgBinaries:
    """The configured bin dir, else the newest /usr/lib/postgresql/<major>/bin, else PATH."""
    if bin_dir:
        path = Path(bin_dir)
        missing = [p for p in CLIENT_PROGRAMS if not (path / p).exists()]
        if missing:
            raise ConfigError(f"backup.pg_bin_dir {bin_dir!r} lacks {', '.join(missing)}")
        return PgBinaries(path)
    installed = sorted(
        (p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "pg_dump").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if installed:
        return PgBinaries(installed[-1])
    found = shutil.which("pg_dump")
    if found:
        return PgBinaries(Path(found).resolve().parent)
    raise PrerequisiteError("pg_dump is not installed: install postgresql-client (see packages.txt)")
