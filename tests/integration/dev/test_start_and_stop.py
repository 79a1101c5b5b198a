"""The stack and ``make run`` start only on servers that answer, fail fast, and stop everything.

- a port held by another program is refused at once, naming it;
- a server is ready only when it answers its own protocol: a listener that accepts and never
  answers (a gRPC port, to a Redis client) is not Redis, and no client of the stack waits on it
  for ever;
- a server that exits during start fails the start with its log;
- ``make run`` stopped by SIGTERM or SIGINT sent to its whole process group half-way through its
  start leaves no process behind (stopped once up, by SIGTERM and by SIGHUP: ``test_restart``).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stellar_ops.core.errors import StellarOpsError
from stellar_ops_dev.servers import redis_answers, start_server
from stellar_ops_dev.tls_servers import SilentServer
from tests.integration.dev.make_run import RunScript, clean_env, leftovers

pytestmark = pytest.mark.integration

DEV_CLI = str(Path(sys.executable).parent / "stellar-dev")


def test_a_required_port_held_by_another_listener_fails_the_start_at_once_naming_it(tmp_path):
    state = tmp_path / "stack"
    with SilentServer() as held:
        started = time.monotonic()
        up = subprocess.run(
            [DEV_CLI, "stack", "up", "--state-dir", str(state), "--demo-rows", "300"]
            + ["--port", f"redis={held.port}"],
            capture_output=True,
            text=True,
            env=clean_env(),
            timeout=120,
        )
        took = time.monotonic() - started
    assert up.returncode == 2, up.stdout + up.stderr
    assert f"port {held.port} for redis is already in use" in up.stderr
    assert took < 30, f"the start took {took:.0f}s to fail"
    assert not (state / "state.json").exists()
    assert not leftovers([str(state)])


def test_a_listener_that_never_answers_is_not_redis(stack):
    with SilentServer() as silent:
        started = time.monotonic()
        assert redis_answers(silent.port) is False
        assert time.monotonic() - started < 10
    assert redis_answers(stack.ports["redis"]) is True
    assert redis_answers(stack.ports["receiver"]) is False  # an HTTP server answers, but not PONG


def test_a_server_that_exits_during_start_fails_the_start_with_its_log(tmp_path):
    """Redis on a port another program holds: it cannot bind and exits; the start says so at once
    (waiting for the port to answer would have taken the other program's answer for Redis's)."""
    with SilentServer() as held:
        argv = ["redis-server", "--port", str(held.port), "--bind", "127.0.0.1", "--save", ""]
        started = time.monotonic()
        with pytest.raises(StellarOpsError) as failed:
            start_server(
                "redis",
                argv,
                log_path=tmp_path / "redis.log",
                port=held.port,
                ready=lambda: redis_answers(held.port),
                timeout=60,
            )
        took = time.monotonic() - started
    message = str(failed.value)
    assert f"redis (port {held.port}) exited" in message
    assert "Address already in use" in message, message  # the tail of its log
    assert took < 15, f"{took:.0f}s"


def test_perf_workload_fails_fast_on_a_redis_port_that_never_answers(stack):
    with SilentServer() as silent:
        started = time.monotonic()
        done = subprocess.run(
            [DEV_CLI, "perf-workload", "--calls", "1"],
            capture_output=True,
            text=True,
            env={
                **clean_env(),
                "DATABASE_URL": stack.env()["DATABASE_URL"],
                "REDIS_URL": f"redis://127.0.0.1:{silent.port}/0",
            },
            timeout=120,
        )
        took = time.monotonic() - started
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"Redis at redis://127.0.0.1:{silent.port}/0 did not answer" in done.stderr
    assert took < 60, f"{took:.0f}s"


def _stack_partly_up(run: RunScript) -> bool:
    return "redis" in run.recorded_pids()


def _airflow_starting(run: RunScript) -> bool:
    log = run.airflow_home / "standalone.log"
    return log.exists() and log.stat().st_size > 0


@pytest.mark.parametrize(
    ("sig", "moment"),
    [(signal.SIGTERM, "starting the stack"), (signal.SIGINT, "starting Airflow")],
    ids=["SIGTERM-starting-the-stack", "SIGINT-starting-Airflow"],
)
def test_make_run_stopped_through_its_process_group_while_starting_leaves_nothing_running(
    tmp_path, sig, moment
):
    """Half-way through its start; once it is up, SIGTERM and SIGHUP stop it in test_restart's
    ``make run`` twice (each start there is stopped through its process group)."""
    run = RunScript(tmp_path / "stack", tmp_path / "airflow").start()
    try:
        if moment == "starting the stack":
            run.wait_for("the stack half-way up", lambda: _stack_partly_up(run), 300)
        else:
            run.wait_for("Airflow starting", lambda: _airflow_starting(run), 400)
    except BaseException:
        run.kill()
        raise
    run.stop_through_group(sig)
