"""The DAGs under CeleryExecutor with two workers: consecutive tasks on different workers."""

from __future__ import annotations

import pytest

from tests.support.airflow_server import AirflowClient
from tests.support.celery_cluster import ALTERNATE, CeleryCluster, queue_of

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cluster(stack, tmp_path_factory):
    celery = CeleryCluster(tmp_path_factory.mktemp("celery"), stack)
    try:
        celery.start()
        yield celery
    finally:
        celery.stop()


def test_backup_and_dr_test_run_with_each_task_on_the_other_worker(cluster, stack):
    api = AirflowClient(cluster.base_url)
    # No local directory: a worker's disk is its own. The DR test's work_dir defaults to each
    # worker's own TMPDIR, so nothing on one worker's disk can be seen by the next task.
    api.set_variable("stellar_ops_config", {"backup": {"bucket": "stellar-backups", "prefix": "celery/"}})
    for dag_id in ALTERNATE:
        api.unpause(dag_id)

    backup_run = api.trigger("db_backup")
    assert api.wait_run("db_backup", backup_run, timeout=300) == "success", api.task_states(
        "db_backup", backup_run
    )
    dr_run = api.trigger("dr_restore_test")
    assert api.wait_run("dr_restore_test", dr_run, timeout=300) == "success", api.task_states(
        "dr_restore_test", dr_run
    )

    worker_logs = {"q1": cluster.log("worker-w1"), "q2": cluster.log("worker-w2")}
    for dag_id, run_id in (("db_backup", backup_run), ("dr_restore_test", dr_run)):
        instances = api.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
        for ti in instances:
            if ti["task_id"] == "confirm_success":  # an EmptyOperator: the scheduler settles it
                assert ti["state"] == "success", (dag_id, ti)
                continue
            if ti["task_id"] == "trigger_drill":  # dr.trigger_on_new_backup is off
                assert ti["state"] == "skipped", ti
            else:
                assert ti["state"] == "success", (dag_id, ti["task_id"])
            queue = queue_of(dag_id, ti["task_id"])
            assert ti["queue"] == queue, (dag_id, ti["task_id"], ti["queue"])
            other = "q2" if queue == "q1" else "q1"
            assert ti["task_id"] in worker_logs[queue], (
                f"{ti['task_id']} should have run on the {queue} worker"
            )
            assert ti["task_id"] not in worker_logs[other], f"{ti['task_id']} also ran on the {other} worker"
    published = api.xcom("db_backup", backup_run, "publish_backup")
    assert api.xcom("dr_restore_test", dr_run, "resolve_backup")["location"] == published["key"]
