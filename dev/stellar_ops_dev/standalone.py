"""Airflow's four components on one machine with the package's auth manager, and the local users.

``airflow standalone`` (3.3) always runs SimpleAuthManager: it overwrites ``[core] auth_manager``
in its own environment and its components'. ``python -m stellar_ops_dev.standalone run`` does what
it does otherwise, for ``make run`` and the e2e harness: it starts the scheduler, the DAG
processor, the API server and the triggerer in the environment it is given (the configured auth
manager included; the metadata database already migrated; no log server, which would listen on
every interface), puts their output on its own, each
line after the component's name, and stops all four on SIGINT, SIGTERM or SIGHUP, or when one of
them exits. It creates no user: the roles set-up step does, before it.

``users FILE`` is ``make run``'s set-up of its local users (:data:`LOCAL_USERS`): a random
password for each one missing from ``FILE`` (a JSON ``{"username": "password"}``, made once and
kept, readable by its owner only), then the deployment's roles set-up step
(``python -m stellar_ops.adapters.common.roles``) on them. ``logins FILE`` prints who logs in with
what, for the banner of ``make run``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import IO

from stellar_ops.adapters.common.roles import ADMIN, PASSWORDS_FILE_VARIABLE, USERS_VARIABLES
from stellar_ops.core.approvals import ON_CALL, PLATFORM_LEAD

# No log server: Airflow's binds every interface, and on one machine the API server reads the task
# and trigger logs from the log folder itself.
COMPONENTS: dict[str, list[str]] = {
    "scheduler": ["scheduler", "--skip-serve-logs"],
    "dag-processor": ["dag-processor"],
    "api-server": ["api-server"],
    "triggerer": ["triggerer", "--skip-serve-logs"],
}
STOP_TIMEOUT = 30.0

# The local users: enough people to try an approval as several of them (a four-eyes step needs a
# second lead, or an on-call engineer who did not answer the first one)
LOCAL_USERS: dict[str, str] = {
    "admin": ADMIN,
    "oncall": ON_CALL,
    "oncall2": ON_CALL,
    "lead": PLATFORM_LEAD,
    "lead2": PLATFORM_LEAD,
}


def users_environment(users: Mapping[str, str], passwords_file: Path) -> dict[str, str]:
    """The environment of the roles set-up step that creates ``users`` ({username: role}) with the
    passwords in ``passwords_file``."""
    env = {PASSWORDS_FILE_VARIABLE: str(passwords_file)}
    for variable, role in USERS_VARIABLES.items():
        env[variable] = ",".join(name for name, their_role in users.items() if their_role == role)
    return env


def ensure_passwords(path: Path, usernames: Sequence[str]) -> dict[str, str]:
    """The passwords in ``path``, with a new random one for each of ``usernames`` missing there."""
    passwords: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    missing = [name for name in usernames if not passwords.get(name)]
    if missing:
        passwords.update({name: secrets.token_urlsafe(9) for name in missing})
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(passwords, out, indent=1)
    return passwords


def logins(path: Path, users: Mapping[str, str]) -> list[str]:
    passwords = json.loads(path.read_text())
    return [f"{name} / {passwords[name]}  ({role})" for name, role in users.items()]


def set_up_local_users(passwords_file: Path) -> int:
    """The roles set-up step on the local users; its exit status."""
    ensure_passwords(passwords_file, list(LOCAL_USERS))
    env = {**os.environ, **users_environment(LOCAL_USERS, passwords_file)}
    step = subprocess.run([sys.executable, "-m", "stellar_ops.adapters.common.roles"], env=env, check=False)
    return step.returncode


def _copy_lines(name: str, stream: IO[bytes], lock: threading.Lock) -> None:
    prefix = f"{name:<13} | ".encode()
    for line in iter(stream.readline, b""):
        with lock:
            sys.stdout.buffer.write(prefix + line)
            sys.stdout.buffer.flush()


def run_components(airflow: str = "airflow") -> int:
    """The four components until a signal (0) or until one of them exits (1); all stopped after."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # lines as they are written, not by the block
    lock = threading.Lock()
    processes: dict[str, subprocess.Popen[bytes]] = {}
    pumps = []
    for name, args in COMPONENTS.items():
        if stop.is_set():
            break
        process = subprocess.Popen(
            [airflow, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env
        )
        processes[name] = process
        assert process.stdout is not None
        pump = threading.Thread(target=_copy_lines, args=(name, process.stdout, lock), daemon=True)
        pump.start()
        pumps.append(pump)
    exited = ""
    while not stop.is_set() and not exited:
        exited = next((name for name, p in processes.items() if p.poll() is not None), "")
        stop.wait(0.5)
    if exited:
        print(
            f"standalone: {exited} exited ({processes[exited].returncode}); stopping the others", flush=True
        )
    for process in processes.values():
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + STOP_TIMEOUT
    for process in processes.values():
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    for pump in pumps:
        pump.join(timeout=5)
    return 1 if exited else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stellar_ops_dev.standalone",
        description="Airflow's components with the configured auth manager, and make run's users.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="the scheduler, DAG processor, API server and triggerer, until stopped")
    for name, text in (("users", "set up the local users"), ("logins", "print the logins")):
        p = sub.add_parser(name, help=f"{text}, with the passwords in FILE")
        p.add_argument("file", type=Path)
    args = parser.parse_args(argv)
    if args.command == "run":
        return run_components()
    if args.command == "users":
        return set_up_local_users(args.file)
    print("\n".join(logins(args.file, LOCAL_USERS)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
