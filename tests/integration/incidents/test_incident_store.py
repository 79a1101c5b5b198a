"""The incident store under ``dag.test()``: ``Variable.keys`` answers in a mapped task's failure
callback (the in-process task supervisor) and in the DAG's success callback, which reads the
incident's events and closes them.

``dag.test()`` runs a DAG of a bundle only: the DAG below is written to a folder of its own, added
as a second bundle beside the repository's DAGs.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import replace

import pytest

pytestmark = pytest.mark.integration

DAG_ID, WIDTH = "it_incident_store", 5
PREFIX = f"stellar_ops_incident__{DAG_ID}__"  # other tests' DAGs may have incidents open
DAG_FILE = textwrap.dedent(
    f'''
    """A test DAG: {WIDTH} mapped tries that fail, recorded as StellarAlertNotifier records them."""
    import json
    import os
    from dataclasses import asdict, replace
    from datetime import timedelta

    import pendulum
    from airflow.sdk import DAG, Param, get_current_context, task

    from stellar_ops.adapters.common import alerting, incident_store
    from stellar_ops.registry import CATALOGUE, procedure_for

    ENTRY = CATALOGUE.setdefault("{DAG_ID}", replace(procedure_for("tls_cert_check"), dag_id="{DAG_ID}"))


    def on_failure(context):
        alerting.record(ENTRY.dag_id, alerting._try_event("failure", context["ti"], context.get("exception")))


    def on_success(context):  # as announce_recovery reads and closes
        stored = incident_store.read(ENTRY)
        seen = {{"events": [asdict(e) for e in stored.incident.events], "keys": list(stored.keys)}}
        with open(os.environ["IT_INCIDENT_SEEN"], "w") as out:
            json.dump(seen, out)
        incident_store.close(stored)


    with DAG(
        "{DAG_ID}",
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        params={{"fail": Param(True, type="boolean")}},
        on_success_callback=on_success,
        default_args={{"retries": 0, "on_failure_callback": on_failure, "execution_timeout": timedelta(minutes=1)}},
    ) as dag:

        @task
        def probe(index: int) -> int:
            if get_current_context()["params"]["fail"]:
                raise RuntimeError(f"probe {{index}} failed on purpose")
            return index

        probe.expand(index=list(range({WIDTH})))
    '''
)


def test_dag_test_records_each_mapped_failure_and_the_success_callback_closes_them(
    migrated_airflow_db, tmp_path, monkeypatch
):
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.variable import Variable
    from airflow.utils.session import create_session

    from stellar_ops.registry import CATALOGUE, procedure_for

    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / f"{DAG_ID}.py").write_text(DAG_FILE)
    bundles = [
        {
            "name": "it_incidents",
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(folder), "refresh_interval": 0},
        }
    ]
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps(bundles))
    seen_file = tmp_path / "seen.json"
    monkeypatch.setenv("IT_INCIDENT_SEEN", str(seen_file))
    # the DAG file registers its taxonomy entry when parsed, here in this process: registered
    # through monkeypatch first, it leaves the taxonomy as it was for the tests after this one
    monkeypatch.setitem(CATALOGUE, DAG_ID, replace(procedure_for("tls_cert_check"), dag_id=DAG_ID))
    bag = DagBag(str(folder))
    assert not bag.import_errors, bag.import_errors
    dag = bag.dags[DAG_ID]

    assert str(dag.test(run_conf={"fail": True}).state) == "failed"
    with create_session() as session:
        written = [k for (k,) in session.query(Variable.key).filter(Variable.key.startswith(PREFIX))]
    assert len(written) == WIDTH and not seen_file.exists()

    assert str(dag.test(run_conf={"fail": False}).state) == "success"
    seen = json.loads(seen_file.read_text())
    failures = [e for e in seen["events"] if e["kind"] == "failure"]
    assert sorted(e["map_index"] for e in failures) == list(range(WIDTH))
    assert all(e["task_id"] == "probe" and "failed on purpose" in e["error"] for e in failures)
    assert sorted(seen["keys"]) == sorted(written)
    with create_session() as session:
        left = session.query(Variable.key).filter(Variable.key.startswith(PREFIX)).all()
    assert left == [], "closing deleted the events"
