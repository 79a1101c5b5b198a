"""A private API stand-in per test, and the CLI's environment pointed at it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.support.api_stand_in import new_stand_in

CLI = str(Path(sys.executable).parent / "stellar-ops")


@pytest.fixture
def stand_in(tmp_path):
    api = new_stand_in(tmp_path / "api", api_keys=3, admin_keys=1)
    try:
        yield api
    finally:
        api.stop()


@pytest.fixture
def rotation(ops, stand_in, monkeypatch):
    """The test's config: the stand-in's env file, HTTP reloads, audit and ledger under its prefix."""
    ops.update(
        rotation={
            "env_file": str(stand_in.env_file),
            "restart": "http_reload",
            "audit_prefix": f"{ops.prefix}audit/",
            "ledger_key": f"{ops.prefix}secrets-ledger.json",
            "secret_audit_prefix": f"{ops.prefix}secret-rotation/",
            "healthy_timeout_seconds": 20,
        }
    )
    monkeypatch.setenv("STELLAR_API_URL", stand_in.url)
    # the CLI's own key: one an API_KEYS rotation leaves alone (a removal refuses to lock it out)
    monkeypatch.setenv("STELLAR_API_KEY", stand_in.admin_keys[0])
    return ops


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=timeout, env=dict(os.environ))


def argv_of_every_process() -> list[str]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        found.append(" ".join(process.info.get("cmdline") or []))
    return found
