"""``scripts/run.sh`` (what ``make run`` runs) in the background, and what it may leave behind.

:class:`RunScript` starts it in a process group of its own, as ``make`` is in a terminal, with its
stack and Airflow home in the test's directories. Every wait is bounded, and whatever happens, the
test ends with nothing of it running: :meth:`RunScript.kill` stops its process group and every
process :func:`leftovers` finds.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from stellar_ops.core.processes import free_port, pid_alive

REPO = Path(__file__).resolve().parents[3]
VENV_BIN = Path(sys.executable).parent
READY_LINE = "Press Ctrl-C to stop everything."


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "STELLAR_"))}
    env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '/usr/bin:/bin')}"
    return env


def leftovers(markers: list[str], pgids: set[int] | None = None) -> list[psutil.Process]:
    """Processes that belong to a run: in one of ``pgids``, or with one of ``markers`` (its stack
    directory, Airflow home, stack data directory) in their environment, command line or cwd."""
    found = []
    for process in psutil.process_iter(["pid", "cmdline", "cwd", "environ"]):
        if process.pid == os.getpid():
            continue
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                continue
            pgid = os.getpgid(process.pid)
        except (psutil.Error, ProcessLookupError):
            continue
        info = process.info
        text = " ".join(
            [
                " ".join(info.get("cmdline") or []),
                info.get("cwd") or "",
                " ".join(f"{k}={v}" for k, v in (info.get("environ") or {}).items()),
            ]
        )
        if pgid in (pgids or set()) or any(marker in text for marker in markers):
            found.append(process)
    return found


def describe(processes: list[psutil.Process]) -> str:
    lines = []
    for process in processes:
        with contextlib.suppress(psutil.Error):
            lines.append(f"{process.pid} {' '.join(process.cmdline())[:200]}")
    return "\n".join(lines)


def _as_from_a_terminal() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


class RunScript:
    """``scripts/run.sh`` in the background, in given directories; see the module docstring."""

    def __init__(self, stack_dir: Path, airflow_home: Path) -> None:
        self.stack_dir = stack_dir
        self.airflow_home = airflow_home
        self.port = free_port()
        self.env = {
            **clean_env(),
            "STACK_DIR": str(stack_dir),
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW_PORT": str(self.port),
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "DEMO_ROWS": "300",
            "STELLAR_OPS_RETRY_DELAY_SECONDS": "1",
        }
        self.log = stack_dir.parent / f"run-{time.monotonic_ns()}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.data_dirs: set[str] = set()

    # Starting -----------------------------------------------------------------------------
    def start(self) -> RunScript:
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                [str(REPO / "scripts" / "run.sh")],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=REPO,
                process_group=0,  # a group of its own, as `make run` has in a terminal
                # and Ctrl-C's signal, as a terminal gives it: a test run started in the background
                # (a CI job, `make test &`) ignores SIGINT, which run.sh would inherit and could not trap
                preexec_fn=_as_from_a_terminal,
            )
        return self

    @property
    def pgid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def recorded_pids(self) -> dict[str, int]:
        """The stack's pids as ``state.json`` has them now (and its data directory, remembered)."""
        try:
            state = json.loads((self.stack_dir / "state.json").read_text())
        except (OSError, ValueError):
            return {}
        self.data_dirs.add(state["data_dir"])
        return dict(state["pids"])

    def wait_for(self, what: str, predicate: object, timeout: float) -> None:
        """Until ``predicate()``; on a timeout or an early exit, everything is killed and the test fails."""
        assert self.process is not None and callable(predicate)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.recorded_pids()
            if predicate():
                return
            if self.process.poll() is not None:
                self.kill()
                raise AssertionError(f"run.sh exited before {what}:\n{self.output()[-3000:]}")
            time.sleep(0.5)
        self.kill()
        raise AssertionError(f"no {what} within {timeout:.0f}s:\n{self.output()[-3000:]}")

    def wait_until_up(self, timeout: float = 420) -> None:
        self.wait_for("Airflow and the stack up", lambda: READY_LINE in self.output(), timeout)

    def __enter__(self) -> RunScript:
        self.start()
        self.wait_until_up()
        return self

    # Stopping -----------------------------------------------------------------------------
    def markers(self) -> list[str]:
        return [str(self.stack_dir), str(self.airflow_home), *sorted(self.data_dirs)]

    def leftovers(self) -> list[psutil.Process]:
        return leftovers(self.markers(), {self.pgid})

    def signal_script(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def signal_group(self, sig: int) -> None:
        os.killpg(self.pgid, sig)

    def wait_stopped(self, timeout: float = 180) -> int:
        """run.sh's exit status once it and everything of it has gone; kills all and fails otherwise."""
        assert self.process is not None
        try:
            status = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"run.sh did not stop within {timeout:.0f}s:\n{self.output()[-3000:]}"
            ) from None
        # stopping is over once run.sh has exited: nothing may be left, not even for a moment
        left = self.leftovers()
        if left:
            listing = describe(left)
            self.kill()
            raise AssertionError(
                f"run.sh exited ({status}) and left running:\n{listing}\n{self.output()[-2000:]}"
            )
        return status

    def stop_through_group(self, sig: int) -> None:
        """Stop it as a process manager or a closing terminal does: ``sig`` to its whole process
        group, then once more to the script (an impatient Ctrl-C, a process manager repeating
        itself must not cut the stop short). Fails unless it exits ``128 + sig`` with every server
        it started gone, its process group empty and its stack state removed."""
        seen = self.recorded_pids()
        assert seen, "the stack had started servers"
        try:
            self.signal_group(sig)
            time.sleep(1)
            self.signal_script(sig)
            status = self.wait_stopped()
        except BaseException:
            self.kill()
            raise
        assert status == 128 + sig, self.output()[-2000:]
        assert not any(pid_alive(pid) for pid in seen.values())
        try:
            os.killpg(self.pgid, 0)
        except ProcessLookupError:
            pass
        else:
            raise AssertionError(f"run.sh's process group {self.pgid} still has processes")
        assert not (self.stack_dir / "state.json").exists()
        left = leftovers(self.markers())
        assert not left, describe(left)

    def kill(self) -> None:
        """SIGKILL everything of this run: its process group, then whatever else the scan finds."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        for _ in range(3):
            left = self.leftovers()
            if not left:
                return
            for process in left:
                with contextlib.suppress(psutil.Error):
                    process.kill()
            psutil.wait_procs(left, timeout=10)

    def __exit__(self, kind: object, exc: object, tb: object) -> None:
        if exc is not None:
            self.kill()
            return
        self.signal_script(signal.SIGINT)
        self.wait_stopped()
        assert "stack stopped" in self.output()
