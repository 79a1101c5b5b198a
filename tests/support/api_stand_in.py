"""A private API stand-in (its own env file and port) for tests that rotate its keys."""

from __future__ import annotations

import secrets
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from stellar_ops.core.processes import ManagedProcess, free_port


@dataclass
class StandIn:
    directory: Path
    api_keys: list[str] = field(repr=False)
    admin_keys: list[str] = field(repr=False)
    port: int = 0
    process: ManagedProcess | None = None

    @property
    def env_file(self) -> Path:
        return self.directory / "api.env"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> StandIn:
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self.env_file.exists():
            self.env_file.write_text(
                "# the API's settings\nDATABASE_URL=postgresql://api@db/escrow\n"
                f"API_KEYS={','.join(self.api_keys)}\nADMIN_KEYS={','.join(self.admin_keys)}\nLOG_LEVEL=info\n"
            )
            self.env_file.chmod(0o600)
        self.port = self.port or free_port()
        argv = [sys.executable, "-m", "stellar_ops_dev.api_stub", "--port", str(self.port)]
        argv += ["--env-file", str(self.env_file), "--state-dir", str(self.directory / "state")]
        self.process = ManagedProcess("api-stand-in", argv, self.directory / "api.log")
        self.process.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.status(self.api_keys[0]) != 0:  # answering (its keys may have been rotated)
                return self
            time.sleep(0.02)
        raise RuntimeError(f"the API stand-in did not start:\n{self.process.log_tail()}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def restart(self) -> None:
        self.stop()
        self.start()

    def status(self, key: str, path: str = "/health") -> int:
        try:
            return requests.get(self.url + path, headers={"X-API-Key": key}, timeout=5).status_code
        except requests.RequestException:
            return 0


def new_stand_in(directory: Path, api_keys: int = 3, admin_keys: int = 1) -> StandIn:
    return StandIn(
        directory,
        [f"sk_live_{secrets.token_hex(16)}" for _ in range(api_keys)],
        [f"sk_admin_{secrets.token_hex(16)}" for _ in range(admin_keys)],
    ).start()
