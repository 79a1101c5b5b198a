"""Scratch PostgreSQL servers for the DR test: made for one test, always removed after it.

- :class:`LocalScratch`: initdb in a directory of its own on the worker, on a free port. It lives
  inside one process (the restore task), so it works with any number of workers.
- :class:`DockerScratch`: a ``postgres:<major>`` container, found again by its name from any
  worker. Its superuser password is kept in the container's own environment (read back through
  the Docker API), never in XCom.

Both are tuned for a fast, throwaway restore (no fsync, large ``maintenance_work_mem``).
"""

from __future__ import annotations

import logging
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stellar_ops.core.errors import ScratchServerError
from stellar_ops.core.processes import stop_pid, unprivileged_user, wait_until
from stellar_ops.postgres.binaries import PgBinaries
from stellar_ops.postgres.server import SUPERUSER, LocalPgServer, read_postmaster_pid
from stellar_ops.postgres.target import PgTarget

log = logging.getLogger(__name__)

RESTORE_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "max_wal_size": "'4GB'",
    "checkpoint_timeout": "'30min'",
    "maintenance_work_mem": "'512MB'",
    "autovacuum": "off",
    "max_connections": "30",
}
LABEL = "stellar-ops.role"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


def scratch_name(run_id: str) -> str:
    """A container- and directory-safe name derived from the run id."""
    slug = re.sub(r"[^a-z0-9]+", "-", run_id.lower()).strip("-")[:40]
    return f"stellar-dr-{slug}-{secrets.token_hex(3)}"


def _check_name(name: str) -> str:
    if not _NAME.match(name):
        raise ScratchServerError(f"invalid scratch name {name!r}")
    return name


# -- local ------------------------------------------------------------------------------------------


@dataclass
class LocalScratch:
    """initdb + postgres under ``work_dir/<name>``; use :meth:`running` as a context manager."""

    name: str
    work_dir: Path | None
    binaries: PgBinaries
    run_as: str = "postgres"
    settings: dict[str, str] | None = None
    startup_timeout: float = 60.0

    def base_dir(self) -> Path:
        root = Path(self.work_dir) if self.work_dir else Path(tempfile.gettempdir())
        return root / _check_name(self.name)

    @contextmanager
    def running(self, *, keep_on_failure: bool = False) -> Iterator[LocalPgServer]:
        """Start the server; stop and delete it on the way out (kept on failure if asked)."""
        base = self.base_dir()
        if base.exists():
            raise ScratchServerError(f"scratch directory {base} already exists: another test is using it")
        base.parent.mkdir(parents=True, exist_ok=True)
        server = LocalPgServer(
            base,
            binaries=self.binaries,
            run_as=unprivileged_user(self.run_as),
            settings={**RESTORE_SETTINGS, **(self.settings or {})},
        )
        failed = False
        try:
            server.init()
            server.start(timeout=self.startup_timeout)
            yield server
        except BaseException:
            failed = True
            raise
        finally:
            if failed and keep_on_failure and server.pid:
                log.warning(
                    "keeping scratch server %s for debugging: port %s, data %s (remove it with drop_scratch)",
                    self.name,
                    server.port,
                    base,
                )
            else:
                server.remove()

    def remove_leftovers(self) -> list[str]:
        """Stop and delete whatever is left of this scratch server on this machine."""
        base = self.base_dir()
        removed: list[str] = []
        pid = read_postmaster_pid(base / "data")
        if pid:
            stop_pid(pid, sig=2, timeout=30)
            removed.append(f"postgres pid {pid}")
        if base.exists():
            shutil.rmtree(base, ignore_errors=True)
            removed.append(str(base))
            if base.exists():
                raise ScratchServerError(f"could not remove {base}")
        return removed


# -- docker -----------------------------------------------------------------------------------------


@dataclass
class DockerScratch:
    """A scratch server in a container, reached through ``client`` (a ``docker.APIClient``)."""

    client: Any
    name: str
    image: str = "postgres:15"
    network: str | None = None
    host_address: str = "127.0.0.1"
    settings: dict[str, str] | None = None
    startup_timeout: float = 120.0

    def create(self, *, wait: bool = True) -> dict[str, Any]:
        """Pull if needed, create and start; with ``wait``, also wait until it accepts connections."""
        _check_name(self.name)
        self._ensure_image()
        password = secrets.token_urlsafe(18)
        command = ["postgres"]
        for key, value in {**RESTORE_SETTINGS, **(self.settings or {})}.items():
            command += ["-c", f"{key}={value.strip(chr(39))}"]
        host_config = self.client.create_host_config(
            port_bindings=None if self.network else {5432: (self.host_address, None)},
            network_mode=self.network,
        )
        try:
            self.client.create_container(
                image=self.image,
                name=self.name,
                command=command,
                environment={"POSTGRES_PASSWORD": password},
                labels={LABEL: "dr-scratch"},
                ports=[5432],
                host_config=host_config,
            )
            self.client.start(self.name)
        except Exception as exc:
            self.remove()
            raise ScratchServerError(
                f"cannot start scratch container {self.name} ({self.image}): {exc}"
            ) from None
        handle = self.handle()
        if wait:
            self.wait_ready(handle)
        return handle

    def wait_ready(self, handle: dict[str, Any]) -> None:
        """Wait until the server accepts connections; a container that died fails at once."""

        def ready() -> bool:
            state = self.client.inspect_container(self.name).get("State", {})
            if state.get("Status") in ("exited", "dead"):
                logs = self.client.logs(self.name, tail=5)
                tail = logs.decode(errors="replace").strip() if isinstance(logs, bytes) else str(logs)
                raise ScratchServerError(f"scratch container {self.name} exited: {tail}")
            return _accepts(self.target(handle))

        try:
            wait_until(ready, timeout=self.startup_timeout, what=f"scratch container {self.name}")
        except ScratchServerError:
            raise
        except Exception as exc:
            raise ScratchServerError(
                f"scratch container {self.name} did not accept connections: {exc}"
            ) from None

    def _ensure_image(self) -> None:
        try:
            self.client.inspect_image(self.image)
        except Exception:  # noqa: BLE001 - not present locally: pull it
            repository, _, tag = self.image.partition(":")
            log.info("pulling %s", self.image)
            self.client.pull(repository, tag=tag or "latest")

    def handle(self) -> dict[str, Any]:
        """Where the container listens: safe to pass between tasks (no secret in it)."""
        details = self.client.inspect_container(self.name)
        if self.network:
            return {"backend": "docker", "name": self.name, "host": self.name, "port": 5432}
        bindings = (details.get("NetworkSettings", {}).get("Ports") or {}).get("5432/tcp") or []
        if not bindings:
            raise ScratchServerError(f"scratch container {self.name} publishes no port for 5432")
        return {
            "backend": "docker",
            "name": self.name,
            "host": self.host_address,
            "port": int(bindings[0]["HostPort"]),
        }

    def target(self, handle: dict[str, Any], dbname: str = "postgres") -> PgTarget:
        """Log-in details; the password is read from the container, not from the handle."""
        env = self.client.inspect_container(self.name).get("Config", {}).get("Env") or []
        password = next((e.split("=", 1)[1] for e in env if e.startswith("POSTGRES_PASSWORD=")), None)
        if password is None:
            raise ScratchServerError(f"scratch container {self.name} has no POSTGRES_PASSWORD")
        return PgTarget(handle["host"], int(handle["port"]), SUPERUSER, dbname, password)

    def remove(self) -> bool:
        """Force-remove the container and its volumes; False if it was already gone."""
        try:
            self.client.remove_container(self.name, force=True, v=True)
        except Exception as exc:
            if "404" in str(exc) or "No such container" in str(exc):
                return False
            raise ScratchServerError(f"cannot remove scratch container {self.name}: {exc}") from None
        return True


def _accepts(target: PgTarget) -> bool:
    import psycopg

    try:
        kwargs = {**target.connect_kwargs(), "connect_timeout": 2}
        with psycopg.connect(**kwargs):
            return True
    except psycopg.Error:
        time.sleep(0.5)
        return False


def docker_image(template: str, server_major: int) -> str:
    return template.format(major=server_major)
