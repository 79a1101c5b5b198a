"""A private PostgreSQL server made with initdb in a directory of its own.

It backs the local stack (the demo StellarEscrow database) and the DR test's ``local`` scratch
backend. It listens on 127.0.0.1 only, on a free port, with no Unix socket, and it is stopped by
its own pid.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from stellar_ops.core.errors import ScratchServerError
from stellar_ops.core.processes import ManagedProcess, chown_tree, free_port, pid_alive, stop_pid
from stellar_ops.postgres.binaries import PgBinaries, find_binaries
from stellar_ops.postgres.target import PgTarget, connect

SUPERUSER = "postgres"


@dataclass
class LocalPgServer:
    """initdb + postgres in ``base_dir`` (data in ``base_dir/data``, log in ``base_dir/postgres.log``)."""

    base_dir: Path
    port: int = 0
    binaries: PgBinaries | None = None
    run_as: str | None = None
    settings: dict[str, str] = field(default_factory=dict)
    log_file: Path | None = None
    # the postmaster's environment (None: this process's); what its archive_command sees, so the
    # place for an archiver's credentials, which neither postgresql.conf nor an argv may hold
    env: dict[str, str] | None = field(default=None, repr=False)
    password: str = field(default_factory=lambda: secrets.token_urlsafe(18), repr=False)
    superuser: str = SUPERUSER
    _process: ManagedProcess | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.base_dir = Path(self.base_dir)
        if not self.port:
            self.port = free_port()
        if self.binaries is None:
            self.binaries = find_binaries()

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def log_path(self) -> Path:
        return self.log_file or self.base_dir / "postgres.log"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "postmaster.pid"

    def target(self, dbname: str = "postgres") -> PgTarget:
        return PgTarget("127.0.0.1", self.port, self.superuser, dbname, self.password)

    def _bin(self, program: str) -> str:
        assert self.binaries is not None
        server_bin = self.binaries.bin_dir / program
        if server_bin.exists():
            return str(server_bin)
        found = shutil.which(program)
        if not found:
            raise ScratchServerError(f"{program} is not installed: install the postgresql server package")
        return found

    def init(self) -> None:
        """Create the cluster: scram auth on loopback, tuned by ``settings``."""
        self.base_dir.mkdir(parents=True, exist_ok=True)
        if self.run_as is not None:
            _check_traversable(self.base_dir, self.run_as)
        pwfile = self.base_dir / "pwfile"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(self.password + "\n")
        chown_tree(self.base_dir, self.run_as)
        try:
            result = subprocess.run(
                [
                    self._bin("initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    self.superuser,
                    "--pwfile",
                    str(pwfile),
                    "--auth-host=scram-sha-256",
                    "--auth-local=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                ],
                capture_output=True,
                text=True,
                user=self.run_as,
                cwd=self.base_dir,
                timeout=120,
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise ScratchServerError(f"initdb failed in {self.data_dir}: {result.stderr.strip()[-500:]}")
        conf = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": "''",
            "logging_collector": "off",
            "log_min_messages": "warning",
            **self.settings,
        }
        with open(self.data_dir / "postgresql.auto.conf", "a") as handle:
            for key, value in conf.items():
                handle.write(f"{key} = {value}\n")

    def start(self, timeout: float = 60.0) -> None:
        self._process = ManagedProcess(
            name=f"postgres:{self.port}",
            argv=[self._bin("postgres"), "-D", str(self.data_dir)],
            log_path=self.log_path,
            env=self.env,
            user=self.run_as,
            cwd=self.base_dir,
            stop_signal=signal.SIGINT,  # fast shutdown
        )
        self._process.start()
        try:
            self._process.wait_ready(self._answers_queries, timeout=timeout)
        except Exception as exc:
            self.stop()
            raise ScratchServerError(f"PostgreSQL on port {self.port} did not start: {exc}") from None

    def _answers_queries(self) -> bool:
        """Whether a session can log in and run a query.

        The first session of a new cluster also builds the catalog caches every later session
        starts from, so the server's first real user does not wait for that.
        """
        try:
            with connect(self.target()) as conn:
                conn.execute("SELECT 1")
        except Exception:  # noqa: BLE001 - not ready yet: asked again
            return False
        return True

    @property
    def pid(self) -> int | None:
        if self._process and self._process.running():
            return self._process.pid
        return read_postmaster_pid(self.data_dir)

    def stop(self, timeout: float = 30.0) -> None:
        if self._process is not None:
            self._process.stop(timeout=timeout)
        pid = read_postmaster_pid(self.data_dir)
        if pid is not None:
            stop_pid(pid, sig=signal.SIGINT, timeout=timeout)

    def remove(self) -> None:
        """Stop the server and delete its directory; safe to call twice."""
        self.stop()
        shutil.rmtree(self.base_dir, ignore_errors=True)
        if self.base_dir.exists():
            raise ScratchServerError(f"could not remove {self.base_dir}")

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        """Run SQL as the superuser (used for setup statements)."""
        target = self.target(dbname)
        result = subprocess.run(
            [self._bin("psql"), "-X", "-v", "ON_ERROR_STOP=1", "-At", "-c", sql],
            capture_output=True,
            text=True,
            env=target.client_env(),
            timeout=300,
        )
        if result.returncode != 0:
            raise ScratchServerError(f"psql on port {self.port} failed: {result.stderr.strip()}")
        return result.stdout


def read_postmaster_pid(data_dir: Path) -> int | None:
    """The running postmaster's pid from ``postmaster.pid``, if it is alive."""
    try:
        first = (Path(data_dir) / "postmaster.pid").read_text().splitlines()[0]
        pid = int(first)
    except (OSError, ValueError, IndexError):
        return None
    return pid if pid_alive(pid) else None


def _check_traversable(path: Path, user: str) -> None:
    """PostgreSQL runs as ``user``: every parent of its directory must let that user through."""
    for parent in path.resolve().parents:
        if parent.stat().st_mode & 0o001 == 0:
            raise ScratchServerError(
                f"{parent} is not searchable by other users, so {user!r} cannot reach {path}: "
                "put the server's directory elsewhere (dr.work_dir)"
            )
