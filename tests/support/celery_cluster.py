"""Airflow with CeleryExecutor and two workers, each on its own queue and its own temp directory.

A cluster policy (``airflow_local_settings.task_policy``) alternates the queues of consecutive
tasks, so each task runs on the other worker than the one before it: what a multi-worker
deployment does by chance, done every time. Its metadata database is PostgreSQL, and its users and
roles are the deployment's (FAB, set up by the same step as docker-compose's ``airflow-init``).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from stellar_ops.core.processes import free_port, pid_alive, stop_pid
from stellar_ops.postgres.target import connect
from stellar_ops_dev.stack import StackInfo
from tests.support.airflow_server import REPO, VENV_BIN, airflow_env, airflow_healthy, set_up_users

ALTERNATE = {
    "db_backup": [
        "check_prerequisites",
        "dump_to_s3",
        "verify_backup",
        "publish_backup",
        "apply_retention",
        "notify_success",
        "publish_metrics",
        "trigger_drill",
    ],
    "dr_restore_test": [
        "resolve_backup",
        "check_backup",
        "create_scratch",
        "restore_backup",
        "restore_to_moment",
        "verify_row_counts",
        "verify_schema",
        "verify_sanity_queries",
        "verify_canaries",
        "drop_scratch",
        "publish_report",
    ],
}
POLICY = f"""
ALTERNATE = {ALTERNATE!r}


def task_policy(task):
    order = ALTERNATE.get(task.dag_id, [])
    if task.task_id in order:
        task.queue = ("q1", "q2")[order.index(task.task_id) % 2]
"""


def queue_of(dag_id: str, task_id: str) -> str:
    return ("q1", "q2")[ALTERNATE[dag_id].index(task_id) % 2]


class CeleryCluster:
    def __init__(self, home: Path, stack: StackInfo) -> None:
        self.home = home
        self.stack = stack
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.temp_dirs: list[Path] = []
        password = secrets.token_urlsafe(12)
        self.db_password = password
        database = f"postgresql+psycopg2://airflow:{password}@127.0.0.1:{stack.ports['postgres']}/airflow"
        self.env = {
            **airflow_env(home, stack.env(), self.port),
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CORE__FERNET_KEY": "",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database,
            "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{stack.ports['redis']}/5",
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + database.replace("+psycopg2", ""),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(24),
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(24),
        }

    def _airflow(self, *args: str) -> None:
        result = subprocess.run(
            [str(VENV_BIN / "airflow"), *args], env=self.env, capture_output=True, text=True, timeout=300
        )
        if result.returncode != 0:
            raise RuntimeError(f"airflow {' '.join(args)} failed:\n{result.stderr[-3000:]}")

    def _spawn(self, name: str, args: list[str], extra_env: dict[str, str] | None = None) -> None:
        log = open(self.home / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
        try:
            self.processes[name] = subprocess.Popen(
                [str(VENV_BIN / "airflow"), *args],
                env={**self.env, **(extra_env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()

    def log(self, name: str) -> str:
        return (self.home / f"{name}.log").read_text(errors="replace")

    def start(self, timeout: float = 240) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "config").mkdir(exist_ok=True)
        (self.home / "config" / "airflow_local_settings.py").write_text(POLICY)
        with connect(self.stack.superuser.with_dbname("postgres")) as conn:
            conn.execute("DROP DATABASE IF EXISTS airflow")
            conn.execute("DROP ROLE IF EXISTS airflow")
            conn.execute(f"CREATE ROLE airflow LOGIN PASSWORD '{self.db_password}'")
            conn.execute("CREATE DATABASE airflow OWNER airflow")
        self._airflow("db", "migrate")
        set_up_users(self.env, self.home)
        subprocess.run(
            [str(REPO / "scripts" / "load_airflow_settings.sh")],
            env=self.env,
            check=True,
            capture_output=True,
            timeout=300,
        )
        self._spawn("api-server", ["api-server", "--port", str(self.port), "--host", "127.0.0.1"])
        self._spawn("scheduler", ["scheduler"])
        self._spawn("dag-processor", ["dag-processor"])
        self._spawn("triggerer", ["triggerer", "--skip-serve-logs"])
        for worker, queue in (("w1", "q1"), ("w2", "q2")):
            # Scratch servers run as an unprivileged user, who must reach the worker's TMPDIR.
            tmp = Path(tempfile.mkdtemp(prefix=f"stellar-celery-{worker}-"))
            tmp.chmod(0o755)
            self.temp_dirs.append(tmp)
            self._spawn(
                f"worker-{worker}",
                [
                    "celery",
                    "worker",
                    "--celery-hostname",
                    f"{worker}@%h",
                    "-q",
                    queue,
                    "-c",
                    "2",
                    "--skip-serve-logs",
                ],
                {"TMPDIR": str(tmp)},
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited:\n{self.log(name)[-3000:]}")
            if airflow_healthy(self.base_url) and all(
                "ready" in self.log(f"worker-{w}") for w in ("w1", "w2")
            ):
                return
            time.sleep(1)
        raise RuntimeError("the Celery cluster did not become ready")

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(os.getpgid(process.pid), signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(os.getpgid(process.pid), signal.SIGKILL)
                process.wait(timeout=10)
        for process in self.processes.values():
            if pid_alive(process.pid):
                stop_pid(process.pid, sig=signal.SIGKILL)
        for tmp in self.temp_dirs:
            shutil.rmtree(tmp, ignore_errors=True)
