"""A second start of the stack in the same state directory is a whole new stack, credentials included.

Both paths a developer takes: ``make stack`` (``stellar-dev stack up``, then ``airflow dags test``)
and ``make run`` (``scripts/run.sh``, with its Airflow), each started, stopped and started again in
the same directories (``make run`` stopped once by SIGTERM and once by SIGHUP to its process group,
leaving nothing running); each time the key the stack exports must be the key its API accepts, and a
DAG that posts metrics to the API must succeed. ``make run``'s Airflow has the deployment's users
and roles: its five local users log in with the passwords its banner shows, made on the first
start and kept.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

from stellar_ops_dev.standalone import LOCAL_USERS
from tests.integration.dev.make_run import REPO, VENV_BIN, RunScript, clean_env
from tests.support.airflow_server import AirflowClient
from tests.support.faults import api_metrics

pytestmark = pytest.mark.integration

DEV_CLI = str(VENV_BIN / "stellar-dev")


def exports(env_file: Path) -> dict[str, str]:
    return dict(re.findall(r"^export (\w+)='(.*)'$", env_file.read_text(), re.MULTILINE))


def assert_the_exported_key_is_accepted(values: dict[str, str]) -> None:
    api, key = values["STELLAR_API_URL"], values["STELLAR_API_KEY"]
    connection = json.loads(values["AIRFLOW_CONN_STELLAR_API"])
    assert connection["password"] == key
    assert requests.get(f"{api}/health", headers={"X-API-Key": key}, timeout=5).status_code == 200
    posted = requests.post(
        f"{api}/api/metrics",
        json={"metrics": [{"name": "probe", "value": 1}]},
        headers={"X-API-Key": key},
        timeout=5,
    )
    assert posted.status_code == 202, posted.text
    admin = json.loads(Path(values["STELLAR_STACK_STATE"]).read_text())["admin_key"]
    env_file = Path(values["STELLAR_API_ENV_FILE"]).read_text()
    assert f"API_KEYS={key}\n" in env_file and f"ADMIN_KEYS={admin}\n" in env_file


def test_make_stack_twice_in_the_same_directory_hands_out_keys_the_api_accepts(tmp_path):
    state = tmp_path / "stack"
    seen_keys = []
    for attempt in (1, 2):
        up = subprocess.run(
            [
                DEV_CLI,
                "stack",
                "up",
                "--state-dir",
                str(state),
                "--demo-rows",
                "300",
                "--dags-folder",
                str(REPO / "dags"),
            ],
            capture_output=True,
            text=True,
            env=clean_env(),
            timeout=300,
        )
        assert up.returncode == 0, up.stderr
        try:
            values = exports(state / "env")
            seen_keys.append(values["STELLAR_API_KEY"])
            assert_the_exported_key_is_accepted(values)
            assert (state / "logs").is_dir() and (state / "logs.previous").is_dir() == (attempt == 2)
            dags_test = subprocess.run(
                [
                    "bash",
                    "-c",
                    f"source {state / 'env'} && airflow db migrate > /dev/null && "
                    "timeout -s INT 300 airflow dags test db_backup",
                ],
                capture_output=True,
                text=True,
                env=clean_env(),
                timeout=400,
            )
            output = dags_test.stdout + dags_test.stderr
            assert dags_test.returncode == 0 and "state=success" in output, output[-3000:]
            assert "answered 403" not in output
            posted = api_metrics(
                values["STELLAR_API_URL"],
                json.loads(Path(values["STELLAR_STACK_STATE"]).read_text())["admin_key"],
            )
            assert any(m["payload"].get("source") == "db_backup" for m in posted), posted
        finally:
            down = subprocess.run(
                [DEV_CLI, "stack", "down", "--state-dir", str(state)],
                capture_output=True,
                text=True,
                env=clean_env(),
                timeout=120,
            )
            assert down.returncode == 0, down.stderr
    assert seen_keys[0] != seen_keys[1], "each start makes its own credentials"


def assert_the_local_users_log_in_with_their_roles(run: RunScript) -> dict[str, str]:
    """Every local user is in the banner with their password and role, and logs in with it; the
    passwords, as kept in the Airflow home."""
    passwords = json.loads((run.airflow_home / "users.json").read_text())
    assert set(passwords) == set(LOCAL_USERS)
    assert (run.airflow_home / "users.json").stat().st_mode & 0o077 == 0, (
        "the passwords file is readable by others"
    )
    base = f"http://127.0.0.1:{run.port}"
    for name, role in LOCAL_USERS.items():
        assert f"{name} / {passwords[name]}  ({role})" in run.output(), f"the banner does not show {name}"
        AirflowClient(base, name, passwords[name])  # a token for each
    admin = AirflowClient(base, "admin", passwords["admin"])
    users = requests.get(
        f"{base}/auth/fab/v1/users", headers=admin.session.headers, params={"limit": 100}, timeout=10
    )
    users.raise_for_status()
    roles = {u["username"]: [r["name"] for r in u["roles"]] for u in users.json()["users"]}
    assert roles == {name: [role] for name, role in LOCAL_USERS.items()}
    oncall = AirflowClient(base, "oncall", passwords["oncall"])
    for _ in range(10):
        refused = oncall.session.patch(
            f"{base}/api/v2/variables/stellar_ops_config",
            json={"key": "stellar_ops_config", "value": "{}"},
            timeout=30,
        )
        # Airflow logs the request in its metadata DB first: on SQLite that can meet the scheduler's
        # write lock while make run's first runs start, and answers 500 with nothing done
        if not (refused.status_code == 500 and "database" in refused.text.lower()):
            break
        time.sleep(2)
    assert refused.status_code == 403, (
        f"an on-call engineer edited the config: {refused.status_code} {refused.text[:300]}"
    )
    return dict(passwords)


def test_make_run_twice_in_the_same_checkout_hands_out_keys_the_api_accepts(tmp_path):
    stack_dir, airflow_home = tmp_path / "stack", tmp_path / "airflow"
    passwords = []
    # the first start is stopped as a process manager stops it, the second as a closing terminal
    for stop_signal in (signal.SIGTERM, signal.SIGHUP):
        run = RunScript(stack_dir, airflow_home).start()
        try:
            run.wait_until_up()
            values = exports(stack_dir / "env")
            assert_the_exported_key_is_accepted(values)
            passwords.append(assert_the_local_users_log_in_with_their_roles(run))
            api = AirflowClient(f"http://127.0.0.1:{run.port}", "admin", passwords[-1]["admin"])
            api.wait_for_dag("db_backup")
            run_id = api.trigger("db_backup", conf={"force": True})
            assert api.wait_run("db_backup", run_id, timeout=400) == "success", api.task_states(
                "db_backup", run_id
            )
            assert api.task_states("db_backup", run_id)["publish_metrics"] == "success"
            admin = json.loads(Path(values["STELLAR_STACK_STATE"]).read_text())["admin_key"]
            sources = [m["payload"].get("source") for m in api_metrics(values["STELLAR_API_URL"], admin)]
            assert "db_backup" in sources
            # nothing of an earlier start: one run of db_backup's is this test's own
            assert run_id in [r["dag_run_id"] for r in api.dag_runs("db_backup")]
            assert all(r["state"] != "failed" for r in api.dag_runs("db_backup"))
        except BaseException:
            run.kill()
            raise
        run.stop_through_group(stop_signal)
    assert passwords[0] == passwords[1], "the local users' passwords are made once and kept"
