"""Policy every DAG must follow; stricter than the usual template (see STYLE.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from stellar_ops.registry import CATALOGUE, allowed_tags, procedure_for

REPO = Path(__file__).resolve().parents[2]
DAG_FILES = sorted(p for p in (REPO / "dags").glob("*.py") if not p.name.startswith("_"))
VERBS = {
    "add",
    "analyze",
    "approve",
    "assemble",
    "audit",
    "collect",
    "compare",
    "discard",
    "finish",
    "generate",
    "list",
    "page",
    "probe",
    "record",
    "rehearse",
    "reload",
    "remove",
    "switch",
    "renew",
    "rename",
    "restart",
    "revert",
    "roll",
    "send",
    "store",
    "summarize",
    "test",
    "wait",
    "write",
    "check",
    "dump",
    "verify",
    "publish",
    "apply",
    "notify",
    "resolve",
    "create",
    "restore",
    "drop",
    "measure",
    "vacuum",
    "report",
    "confirm",
    "trigger",
    "take",
}


@pytest.fixture(scope="module")
def bag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(str(REPO / "dags"))


@pytest.fixture(scope="module")
def dags(bag):
    return list(bag.dags.values())


def test_no_import_errors_and_one_dag_per_file(bag):
    assert bag.import_errors == {}
    assert sorted(bag.dags) == sorted(p.stem for p in DAG_FILES)
    for dag in bag.dags.values():
        assert Path(dag.fileloc).stem == dag.dag_id


def test_every_dag_is_in_the_catalogue_with_its_schedule(dags):
    for dag in dags:
        assert dag.dag_id in CATALOGUE
        expected = CATALOGUE[dag.dag_id].schedule
        if expected is None:
            assert type(dag.timetable).__name__ == "NullTimetable", f"{dag.dag_id} is manual only"
            continue
        timetable = dag.timetable
        # the SDK's cron schedules, or a core one of this project's (stellar_ops.adapters.common.schedules)
        expression = getattr(timetable, "expression", None) or timetable._expression
        zone = getattr(timetable, "timezone", None) or timetable._timezone
        assert expression == expected, dag.dag_id
        assert str(zone) in ("UTC", "Timezone('UTC')"), dag.dag_id


def test_every_registered_dag_has_its_file():
    assert sorted(CATALOGUE) == sorted(p.stem for p in DAG_FILES)


def test_every_dag_file_uses_the_one_header():
    for path in DAG_FILES:
        text = path.read_text()
        assert "@procedure_dag(" in text and "@dag(" not in text, path.name


def test_the_dr_test_follows_new_backups_only_when_asked(dags):
    """A new backup starts a drill of it only when dr.trigger_on_new_backup says so: the drill is
    scheduled by time alone, so no run of it starts to do nothing."""
    from stellar_ops.adapters.common.assets import BACKUP_ASSET

    (dr,) = [d for d in dags if d.dag_id == "dr_restore_test"]
    assert type(dr.timetable).__name__ == "CronTriggerTimetable"
    (backup,) = [d for d in dags if d.dag_id == "db_backup"]
    assert [o.name for o in backup.get_task("publish_backup").outlets] == [BACKUP_ASSET.name]
    trigger = backup.get_task("trigger_drill")
    assert trigger.upstream_task_ids == {"publish_backup"}
    assert [t.task_id for t in trigger.downstream_list] == ["confirm_success"]


def test_dag_header(dags):
    for dag in dags:
        assert dag.catchup is False, dag.dag_id
        # a rotation lasts days: a second run starts and waits in check_rotation_due, saying why
        assert dag.max_active_runs == (2 if dag.dag_id in ("api_key_rotation", "secret_rotation") else 1), (
            dag.dag_id
        )
        assert dag.start_date is not None and dag.start_date.tzinfo is not None, dag.dag_id
        assert dag.start_date.utcoffset().total_seconds() == 0
        assert dag.start_date < datetime(2026, 6, 1, tzinfo=UTC), "a fixed start date, not now()"
        assert dag.doc_md and len(dag.doc_md) > 500, dag.dag_id
        for section in ("## What it does", "## Is it safe to re-run?", "## When it fails", "## Triage"):
            assert section in dag.doc_md, (dag.dag_id, section)


def test_tags_come_from_the_taxonomy(dags):
    for dag in dags:
        assert set(dag.tags) <= allowed_tags(), dag.dag_id
        assert set(dag.tags) == set(procedure_for(dag.dag_id).tags), dag.dag_id


def test_every_task_retries_times_out_and_alerts(dags):
    from stellar_ops.adapters.common.alerting import StellarAlertNotifier

    for dag in dags:
        for task in dag.tasks:
            where = f"{dag.dag_id}.{task.task_id}"
            assert task.retries >= 2, where
            assert task.retry_exponential_backoff and task.max_retry_delay, where
            assert task.execution_timeout is not None, where
            callbacks = task.on_failure_callback or []
            callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
            assert any(
                isinstance(cb, StellarAlertNotifier) and cb.dag_id == dag.dag_id for cb in callbacks
            ), where
            assert task.owner == procedure_for(dag.dag_id).owner, where
            assert task.retry_policy is not None, where


DEPLOYED_ENV = {"STELLAR_OPS_DEADLINES": '{"enabled": true}', "STELLAR_OPS_DOCKER_QUEUE": "docker"}

# The tasks that may call the Docker daemon: only these go to the docker queue, whose workers
# alone mount the socket (docker-compose.yaml).
DOCKER_TASKS = {
    ("secret_rotation", "switch_consumers"),
    ("secret_rotation", "test_new_secret"),
    ("dr_restore_test", "create_scratch"),
    ("dr_restore_test", "restore_backup"),
    ("dr_restore_test", "drop_scratch"),
    ("tls_cert_check", "renew_certificate"),
    ("morning_health_check", "check_services"),
    ("morning_health_check", "check_disk"),
    ("perf_analysis", "check_performance"),
    ("api_key_rotation", "restart_api"),
    ("api_key_rotation", "test_new_keys"),
    ("api_key_rotation", "restart_api_after_removal"),
    ("config_change", "restart_services"),
    ("config_change", "revert_change"),
}


@pytest.fixture(scope="module")
def dags_with_deadlines():
    """The DAGs as the DAG processor of docker-compose.yaml parses them: with their deadlines and
    the docker queue."""
    import os

    from airflow.dag_processing.dagbag import DagBag

    before = {name: os.environ.get(name) for name in DEPLOYED_ENV}
    os.environ.update(DEPLOYED_ENV)
    try:
        bag = DagBag(str(REPO / "dags"))
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    assert bag.import_errors == {}
    return list(bag.dags.values())


def test_only_the_tasks_that_use_docker_run_on_the_docker_queue(dags, dags_with_deadlines):
    on_docker_queue = {
        (d.dag_id, t.task_id) for d in dags_with_deadlines for t in d.tasks if t.queue == "docker"
    }
    assert on_docker_queue == DOCKER_TASKS
    # without the setting (the local stack, the tests), every task stays on the default queue
    assert {t.queue for d in dags for t in d.tasks} == {"default"}


def test_every_dag_has_its_deadline_alert(dags_with_deadlines):
    from datetime import timedelta

    from airflow.sdk.definitions.deadline import DeadlineReference

    from stellar_ops.adapters.common.deadlines import missed_deadline

    assert sorted(d.dag_id for d in dags_with_deadlines) == sorted(CATALOGUE)
    for dag in dags_with_deadlines:
        alerts = dag.deadline if isinstance(dag.deadline, list) else [dag.deadline]
        assert len(alerts) == 1 and alerts[0] is not None, dag.dag_id
        (alert,) = alerts
        assert isinstance(alert.reference, type(DeadlineReference.DAGRUN_QUEUED_AT)), dag.dag_id
        assert alert.interval == timedelta(minutes=CATALOGUE[dag.dag_id].expected_minutes), dag.dag_id
        assert alert.callback.path == f"{missed_deadline.__module__}.{missed_deadline.__qualname__}"
        assert alert.callback.kwargs["dag_id"] == dag.dag_id


def test_every_failed_try_is_recorded_and_every_final_failure_routed(dags):
    from stellar_ops.adapters.common.alerting import IncidentRecorder, StellarAlertNotifier

    for dag in dags:
        for task in dag.tasks:
            where = f"{dag.dag_id}.{task.task_id}"
            retries = (
                task.on_retry_callback
                if isinstance(task.on_retry_callback, list)
                else [task.on_retry_callback]
            )
            assert any(isinstance(cb, IncidentRecorder) and cb.dag_id == dag.dag_id for cb in retries), where
            failures = (
                task.on_failure_callback
                if isinstance(task.on_failure_callback, list)
                else [task.on_failure_callback]
            )
            assert any(isinstance(cb, StellarAlertNotifier) for cb in failures), where


def test_recovery_callback_on_every_dag(dags):
    from stellar_ops.adapters.common.alerting import announce_recovery

    for dag in dags:
        callbacks = (
            dag.on_success_callback
            if isinstance(dag.on_success_callback, list)
            else [dag.on_success_callback]
        )
        assert announce_recovery in callbacks, dag.dag_id


def test_task_ids_are_verb_phrases(dags):
    for dag in dags:
        for task in dag.tasks:
            verb = task.task_id.split("_", 1)[0]
            assert verb in VERBS, f"{dag.dag_id}.{task.task_id} should start with a verb"


def test_params_are_typed_and_described(dags):
    for dag in dags:
        for name in dag.params:
            param = dag.params.get_param(name)
            assert param.description, f"{dag.dag_id} param {name} has no description"
            assert "type" in param.schema, f"{dag.dag_id} param {name} has no type"


def test_pools_used_exist_in_airflow_settings(dags):
    settings = yaml.safe_load((REPO / "airflow_settings.yaml").read_text())
    pools = {p["pool_name"] for p in settings["airflow"]["pools"]} | {"default_pool"}
    for dag in dags:
        for task in dag.tasks:
            assert task.pool in pools, f"{dag.dag_id}.{task.task_id} uses pool {task.pool}"


def test_dag_files_stay_thin():
    import ast

    for path in DAG_FILES:
        text = path.read_text()
        runbook = ast.get_docstring(ast.parse(text), clean=False) or ""
        lines = text.replace(runbook, "").splitlines()
        assert len(lines) <= 130, f"{path.name} has {len(lines)} lines of code besides its runbook"
        code = [line for line in lines if line.strip().startswith("return steps.") or "steps." in line]
        assert code, f"{path.name} should call into stellar_ops.adapters"


PARSE_PROBE = r"""
import json, os, runpy, sys
import airflow.sdk  # the framework's own imports are not the DAG's doing
from airflow.sdk import CronTriggerTimetable  # croniter runs `file` on the interpreter at import

roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(sys.argv[1]), *sys.path}
allowed = tuple(os.path.realpath(p) for p in roots if p)
events = []

def audit(event, args):
    if event in ("socket.connect", "socket.getaddrinfo", "subprocess.Popen", "os.system", "os.exec", "sqlite3.connect", "os.posix_spawn"):
        events.append([event, repr(args)[:200]])
    elif event == "open":
        path, mode = args[0], args[1]
        if isinstance(path, int):
            return
        writing = isinstance(mode, str) and any(c in mode for c in "wax+")
        real = os.path.realpath(os.fsdecode(path))
        if writing or not real.startswith(allowed):
            events.append([event, real, str(mode)])

# Connections and Variables at parse time reach a database or an API: record every lookup.
from airflow.sdk.execution_time.supervisor import ensure_secrets_backend_loaded

def recorder(name, method):
    def record(*args, **kwargs):
        events.append(["secrets", name, repr(args or kwargs)[:100]])
        return method(*args, **kwargs)
    return record

for backend_class in {type(b) for b in ensure_secrets_backend_loaded()}:
    for name in ("get_variable", "get_connection", "get_conn_value"):
        if name in vars(backend_class):
            setattr(backend_class, name, recorder(name, vars(backend_class)[name]))

sys.addaudithook(audit)
error = None
try:
    runpy.run_path(sys.argv[1], run_name="dag_under_test")
except BaseException as exc:
    error = f"{type(exc).__name__}: {exc}"
heavy = sorted(m for m in ("boto3", "botocore", "docker", "psycopg", "psycopg2", "requests") if m in sys.modules)
print(json.dumps({"events": events, "heavy": heavy, "error": error}))
"""


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.stem)
def test_parsing_does_no_io_and_imports_no_heavy_sdk(path):
    import os

    with_deadlines = {**os.environ, "STELLAR_OPS_DEADLINES": '{"enabled": true}'}
    result = subprocess.run(
        [sys.executable, "-c", PARSE_PROBE, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=with_deadlines,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["error"] is None, report["error"]
    assert report["events"] == [], f"{path.name} does I/O while being parsed: {report['events'][:5]}"
    assert report["heavy"] == [], f"{path.name} imports {report['heavy']} at parse time"


def test_the_parse_probe_catches_io(tmp_path):
    """The probe above must be able to fail: a DAG file that reads a Variable at module scope."""
    bad = tmp_path / "bad_dag.py"
    bad.write_text(
        "from airflow.sdk import Variable\nCONFIG = Variable.get('stellar_ops_config', default=None)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", PARSE_PROBE, str(bad)], capture_output=True, text=True, timeout=60
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["events"], "a Variable.get at module scope must show as I/O"
