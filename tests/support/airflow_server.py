"""A real Airflow (``airflow standalone``'s four components) on the repository's DAGs, and a REST client.

Started once per test session: the scheduler, the DAG processor, the triggerer and the API server
are what only they can test (REST triggers, backfills, DAG callbacks, approvals). They run as
``airflow standalone`` would, but with the deployment's auth manager (FAB users and roles,
``stellar_ops.adapters.common.auth.StellarAuthManager``), which ``airflow standalone`` itself
replaces with SimpleAuthManager: ``python -m stellar_ops_dev.standalone run``, as ``make run``.
The users of :data:`TEST_USERS` are created by the deployment's roles set-up step, each with their
username as password (test-only).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psutil
import requests

from stellar_ops.adapters.common.roles import password_variable
from stellar_ops.core.processes import free_port
from stellar_ops_dev.standalone import LOCAL_USERS, users_environment

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
FINISHED = {"success", "failed"}
DEADLINE_MINUTES = 1.0
AUTH_MANAGER = "stellar_ops.adapters.common.auth.StellarAuthManager"
# {username: role}: admin (Admin), oncall and oncall2 (On-call engineer), lead and lead2 (Platform
# lead); each one's password is the username
TEST_USERS: dict[str, str] = dict(LOCAL_USERS)


def airflow_env(home: Path, stack_env: dict[str, str], port: int) -> dict[str, str]:
    """What every Airflow process of a test cluster shares: its home, the DAGs, the API, the auth manager.

    Connections and the config Variable come from the metadata DB (loaded from
    airflow_settings.yaml), as under `make run`: copies in the environment would shadow them.
    """
    inherited = ("AIRFLOW_CONN_", "AIRFLOW_VAR_", "AIRFLOW__")
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(inherited)},
        **{k: v for k, v in stack_env.items() if not k.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_"))},
        "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__CORE__AUTH_MANAGER": AUTH_MANAGER,
        # the browser tests log in several users within seconds; FAB's login allows 5 per 40 s
        "AIRFLOW__FAB__AUTH_RATE_LIMITED": "False",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        # the admin's password (the username, as every test user's): airflow_settings.yaml's
        # airflow_api connection, the cluster's own API as its admin, logs in with it
        password_variable("admin"): "admin",
        # Unpausing would otherwise start each DAG's latest missed slot at once (catchup=False
        # still runs the most recent one): tests create exactly the runs they look at.
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        "STELLAR_OPS_RETRY_DELAY_SECONDS": "1",
        # an approval's wait ends (reminder, escalation, timeout) within seconds of its moment, not 15
        "AIRFLOW__SCHEDULER__TRIGGER_TIMEOUT_CHECK_INTERVAL": "3",
        # every DAG has its deadline here; db_maintenance's is short enough to be missed in a test
        "STELLAR_OPS_DEADLINES": json.dumps(
            {"enabled": True, "minutes": {"db_maintenance": DEADLINE_MINUTES}}
        ),
    }


def set_up_users(env: dict[str, str], home: Path) -> None:
    """The deployment's roles set-up step (after ``airflow db migrate``): the roles, and :data:`TEST_USERS`."""
    passwords = home / "users.json"
    passwords.write_text(json.dumps({name: name for name in TEST_USERS}))
    result = subprocess.run(
        [str(VENV_BIN / "python"), "-m", "stellar_ops.adapters.common.roles"],
        env={**env, **users_environment(TEST_USERS, passwords)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        raise RuntimeError(f"the roles set-up step failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")


def airflow_healthy(base_url: str) -> bool:
    """The metadatabase, scheduler and DAG processor of the Airflow at ``base_url`` all report healthy."""
    try:
        health = requests.get(f"{base_url}/api/v2/monitor/health", timeout=2).json()
    except (requests.RequestException, ValueError):
        return False
    return all(
        health.get(part, {}).get("status") == "healthy"
        for part in ("metadatabase", "scheduler", "dag_processor")
    )


class AirflowStandalone:
    """One Airflow of four components in its own process group, with its own AIRFLOW_HOME and ports."""

    def __init__(
        self, home: Path, stack_env: dict[str, str], extra_dag_folders: list[Path] | None = None
    ) -> None:
        self.home = home
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = home / "standalone.log"
        self.process: subprocess.Popen[bytes] | None = None
        bundles = [
            {
                "name": "stellar_ops",
                "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                "kwargs": {"path": str(REPO / "dags"), "refresh_interval": 0},
            }
        ]
        for index, folder in enumerate(extra_dag_folders or []):
            bundles.append(
                {
                    "name": f"extra_{index}",
                    "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                    "kwargs": {"path": str(folder), "refresh_interval": 0},
                }
            )
        self.env = {
            **airflow_env(home, stack_env, self.port),
            "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(bundles),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        }

    def _airflow(self, *args: str, timeout: float = 300) -> None:
        result = subprocess.run(
            [str(VENV_BIN / "airflow"), *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if result.returncode != 0:
            raise RuntimeError(f"airflow {' '.join(args)} failed:\n{result.stderr[-3000:]}")

    def stored_connection(self, conn_id: str) -> dict[str, Any]:
        """The connection as Airflow resolves it (``airflow connections get -o json``), password
        included (the REST API redacts it); the port as a number."""
        result = subprocess.run(
            [str(VENV_BIN / "airflow"), "connections", "get", conn_id, "-o", "json"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            raise AssertionError(f"airflow connections get {conn_id}: {result.stderr[-2000:]}")
        (conn,) = json.loads(result.stdout[result.stdout.index("[") :])
        # the CLI's JSON prints every field as a string
        return {**conn, "port": int(conn["port"]) if conn["port"] not in (None, "", "None") else None}

    def start(self, timeout: float = 240) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self._airflow("db", "migrate")
        set_up_users(self.env, self.home)
        loaded = subprocess.run(
            [str(REPO / "scripts" / "load_airflow_settings.sh")],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if loaded.returncode != 0:
            raise RuntimeError(f"loading airflow_settings.yaml failed:\n{loaded.stdout}\n{loaded.stderr}")
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        try:
            self.process = subprocess.Popen(
                [str(VENV_BIN / "python"), "-m", "stellar_ops_dev.standalone", "run"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Airflow exited:\n{self.log_tail()}")
            if self._healthy():
                return
            time.sleep(1)
        raise RuntimeError(f"Airflow did not become healthy in {timeout}s:\n{self.log_tail()}")

    def _healthy(self) -> bool:
        return airflow_healthy(self.base_url)

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def dag_processor_log(self, dag_file: str) -> str:
        """What the DAG processor wrote while parsing ``dag_file`` and running its DAGs' callbacks."""
        paths = sorted((self.home / "logs" / "dag_processor").glob(f"*/*/{dag_file}.log"))
        return "".join(path.read_text(errors="replace") for path in paths)

    @contextmanager
    def dag_processor_paused(self) -> Iterator[None]:
        """The DAG processor stopped while the block runs, as when it is too busy to run callbacks:
        the scheduler's callback requests wait in the metadata DB, and run when it goes on."""
        assert self.process is not None, "Airflow is not running"
        (processor,) = [
            child
            for child in psutil.Process(self.process.pid).children()
            if "dag-processor" in " ".join(child.cmdline())
        ]
        processor.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            processor.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        pgid = os.getpgid(self.process.pid)
        os.killpg(pgid, signal.SIGTERM)
        try:
            self.process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            self.process.wait(timeout=10)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.5)
        with contextlib.suppress(ProcessLookupError):  # the group may end between the look and the kill
            os.killpg(pgid, signal.SIGKILL)


class AirflowClient:
    """The REST API v2 as the e2e tests use it."""

    def __init__(
        self,
        base_url: str,
        username: str = "admin",
        password: str = "admin",
        scheduler_log: Path | None = None,
    ) -> None:
        self.base_url = base_url
        self.scheduler_log = scheduler_log  # the scheduler's output, when the client may read it
        response = requests.post(
            f"{base_url}/auth/token", json={"username": username, "password": password}, timeout=10
        )
        response.raise_for_status()
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {response.json()['access_token']}"

    def send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """One API call; on SQLite, Airflow refuses one (500 "Database error") while the scheduler
        holds the database's write lock, and nothing is written, so a refused call is tried again."""
        kwargs.setdefault("timeout", 30)
        for _ in range(10):
            response = self.session.request(method, url, **kwargs)
            if not (response.status_code in (500, 503) and "Database" in response.text):
                return response
            time.sleep(2)
        return response

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.send(method, f"{self.base_url}/api/v2{path}", **kwargs)
        if response.status_code >= 400:
            raise AssertionError(f"{method} {path} -> {response.status_code}: {response.text[:1000]}")
        return response.json() if response.content else None

    def wait_for_dag(self, dag_id: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            response = self.session.get(f"{self.base_url}/api/v2/dags/{dag_id}", timeout=10)
            if response.status_code == 200:
                return
            time.sleep(1)
        errors = self.request("GET", "/importErrors")
        raise AssertionError(f"DAG {dag_id} did not appear in {timeout}s; import errors: {errors}")

    def unpause(self, dag_id: str) -> None:
        self.wait_for_dag(dag_id)
        self.request("PATCH", f"/dags/{dag_id}", json={"is_paused": False})

    def set_variable(self, key: str, value: Any) -> None:
        text = value if isinstance(value, str) else json.dumps(value)
        response = self.send(
            "PATCH", f"{self.base_url}/api/v2/variables/{key}", json={"key": key, "value": text}, timeout=10
        )
        if response.status_code == 404:
            self.request("POST", "/variables", json={"key": key, "value": text})
        elif response.status_code >= 400:
            raise AssertionError(f"setting variable {key}: {response.status_code} {response.text}")

    def trigger(
        self, dag_id: str, conf: dict[str, Any] | None = None, logical_date: str | None = None
    ) -> str:
        """Trigger a run (tried again while SQLite's write lock refuses it, see :meth:`send`)."""
        body = {"conf": conf or {}, "logical_date": logical_date}
        response = self.send("POST", f"{self.base_url}/api/v2/dags/{dag_id}/dagRuns", json=body)
        if response.status_code >= 400:
            raise AssertionError(
                f"POST /dags/{dag_id}/dagRuns -> {response.status_code}: {response.text[:1000]}"
            )
        return str(response.json()["dag_run_id"])

    def run_state(self, dag_id: str, run_id: str) -> str:
        return str(self.request("GET", f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}")["state"])

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 300) -> str:
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            state = self.run_state(dag_id, run_id)
            if state in FINISHED:
                return state
            time.sleep(1)
        raise AssertionError(
            f"{dag_id} run {run_id} still {state} after {timeout}s: {self.task_states(dag_id, run_id)}"
        )

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        data = self.request("GET", f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances")
        return {ti["task_id"]: ti["state"] for ti in data["task_instances"]}

    def task_tries(self, dag_id: str, run_id: str) -> dict[str, int]:
        data = self.request("GET", f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances")
        return {ti["task_id"]: ti["try_number"] for ti in data["task_instances"]}

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
        path = f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/logs/{try_number}"
        response = self.session.get(
            f"{self.base_url}/api/v2{path}",
            params={"full_content": "true"},
            headers={"Accept": "application/json"},
            timeout=30,
        )
        response.raise_for_status()
        content = response.json().get("content", [])
        if isinstance(content, list):
            return "\n".join(e.get("event", "") if isinstance(e, dict) else str(e) for e in content)
        return str(content)

    def xcom(self, dag_id: str, run_id: str, task_id: str) -> Any:
        path = f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/xcomEntries/return_value"
        value = self.request("GET", path, params={"deserialize": "true"})["value"]
        return json.loads(value) if isinstance(value, str) and value[:1] in "[{" else value

    def clear_tasks(self, dag_id: str, run_id: str, task_ids: list[str]) -> list[dict[str, Any]]:
        """Clear task instances as the UI's Clear button on a task instance does, with its defaults
        (downstream included, not only failed ones, a running task left alone), and return the
        cleared task instances. Airflow 3.3's UI sends each unmapped task as ``[task_id, -1]``."""
        cleared = self.request(
            "POST",
            f"/dags/{dag_id}/clearTaskInstances",
            json={
                "dag_run_id": run_id,
                "dry_run": False,
                "include_downstream": True,
                "include_future": False,
                "include_past": False,
                "include_upstream": False,
                "only_failed": False,
                "run_on_latest_version": False,
                "task_ids": [[task_id, -1] for task_id in task_ids],
                "prevent_running_task": True,
            },
        )
        return list(cleared["task_instances"])

    def backfill(self, dag_id: str, from_date: str, to_date: str, **options: Any) -> int:
        """Create a backfill; on SQLite, Airflow refuses one (503) while the scheduler holds the
        database's write lock and rolls it back, so a refused creation is tried again."""
        body = {"dag_id": dag_id, "from_date": from_date, "to_date": to_date, "max_active_runs": 1, **options}
        for _ in range(10):
            response = self.session.post(f"{self.base_url}/api/v2/backfills", json=body, timeout=30)
            if response.status_code == 503 and "Database is locked" in response.text:
                assert not self.backfills(dag_id), "a refused backfill creation left a backfill behind"
                time.sleep(2)
                continue
            if response.status_code >= 400:
                raise AssertionError(f"POST /backfills -> {response.status_code}: {response.text[:1000]}")
            return int(response.json()["id"])
        raise AssertionError(f"POST /backfills for {dag_id}: the database stayed locked")

    def backfills(self, dag_id: str) -> list[dict[str, Any]]:
        return list(self.request("GET", "/backfills", params={"dag_id": dag_id})["backfills"])

    def dag_runs(self, dag_id: str) -> list[dict[str, Any]]:
        return list(self.request("GET", f"/dags/{dag_id}/dagRuns", params={"limit": 100})["dag_runs"])

    def pending_approvals(self) -> list[dict[str, Any]]:
        return list(
            self.request("GET", "/dags/~/dagRuns/~/hitlDetails", params={"response_received": "false"})[
                "hitl_details"
            ]
        )

    def answer_approval(
        self, dag_id: str, run_id: str, task_id: str, option: str = "Approve", map_index: int = -1
    ) -> Any:
        path = (
            f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/{map_index}/hitlDetails"
        )
        return self.request("PATCH", path, json={"chosen_options": [option], "params_input": {}})

    def wait_for_approval(self, dag_id: str, run_id: str, task_id: str, timeout: float = 120) -> None:
        """Until the task awaits its answer and the scheduler has heard that its process paused.

        The executor reports the paused process's exit after the task shows as awaiting input; an
        answer that lands before the scheduler handles that report makes it fail the resumed try
        and start a new one, which waits for an answer again. So this follows the scheduler's log
        to that report when it can read it, and otherwise waits a while.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for item in self.pending_approvals():
                ti = item.get("task_instance", item)
                if (
                    ti.get("dag_id") == dag_id
                    and ti.get("dag_run_id", ti.get("run_id")) == run_id
                    and ti.get("task_id") == task_id
                ):
                    self._wait_for_the_pause_report(dag_id, run_id, task_id, ti.get("try_number"), deadline)
                    return
            time.sleep(1)
        raise AssertionError(f"no approval pending for {dag_id}.{task_id} in {run_id}")

    def _wait_for_the_pause_report(
        self, dag_id: str, run_id: str, task_id: str, try_number: int | None, deadline: float
    ) -> None:
        if self.scheduler_log is None or try_number is None:
            time.sleep(5)
            return
        report = (
            f"Received executor event with state success for task instance TaskInstanceKey("
            f"dag_id='{dag_id}', task_id='{task_id}', run_id='{run_id}', try_number={try_number},"
        )
        while time.monotonic() < deadline:
            if report in self.scheduler_log.read_text(errors="replace"):
                return
            time.sleep(0.5)
        raise AssertionError(f"the scheduler never handled the pause of {dag_id}.{task_id} try {try_number}")
