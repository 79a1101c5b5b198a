"""perf_analysis triggered through the REST API of a running scheduler, as from the UI's form:
one labelled task per check, the report in the bucket and the task log, states on the Pushgateway."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from tests.support.faults import gauge

pytestmark = pytest.mark.e2e


@pytest.fixture
def demo_workload(stack):
    from stellar_ops.postgres.target import connect
    from stellar_ops_dev import perf_workload

    perf_workload.generate(stack.db, calls=6, say=lambda _: None)
    yield
    with connect(stack.db) as conn:
        conn.execute(
            "DROP TABLE IF EXISTS demo_ledger, demo_sessions; DROP SEQUENCE IF EXISTS demo_ticket_seq"
        )


def test_perf_analysis_triggered_from_the_form_reports_its_checks(
    api, stack, receiver, e2e_prefix, demo_workload
):
    api.set_variable(
        "stellar_ops_config", {"backup": {"bucket": "stellar-backups"}, "perf": {"report_prefix": e2e_prefix}}
    )
    api.wait_for_dag("perf_analysis")
    api.unpause("perf_analysis")
    checks = ["slow_queries", "sequences", "redis_hit_rate", "containers", "disk"]
    run_id = api.trigger("perf_analysis", conf={"checks": checks, "compare_to": ""})
    assert api.wait_run("perf_analysis", run_id, timeout=600) == "success", api.task_states(
        "perf_analysis", run_id
    )

    instances = api.request("GET", f"/dags/perf_analysis/dagRuns/{quote(run_id, safe='')}/taskInstances")[
        "task_instances"
    ]
    mapped = {
        ti["rendered_map_index"]: ti["state"] for ti in instances if ti["task_id"] == "check_performance"
    }
    assert mapped == dict.fromkeys(checks, "success")

    summary = api.xcom("perf_analysis", run_id, "assemble_report")
    assert summary["key"].startswith(f"{e2e_prefix}perf/") and summary["key"].endswith(".json")
    assert summary["states"]["slow_queries"] == "critical" and summary["states"]["sequences"] == "critical"
    assert summary["states"]["containers"] == "unknown"
    client = stack.s3_client()
    listed = client.list_objects_v2(Bucket="stellar-backups", Prefix=f"{e2e_prefix}perf/").get("Contents", [])
    assert sorted(o["Key"] for o in listed) == [summary["key"], summary["markdown_key"]]

    log = api.task_log("perf_analysis", run_id, "assemble_report")
    assert "| slow_queries | CRITICAL |" in log and "| containers | UNKNOWN |" in log
    assert stack.db_password not in log
    for name in checks:
        value = gauge(
            stack.url("pushgateway"), "stellar_perf_check_status", check=name, procedure="perf_analysis"
        )
        assert value == {"ok": 0, "warning": 1, "critical": 2, "unknown": 3}[summary["states"][name]], name
    assert any("DBQueryLatency" in t and "RB-006" in t for t in receiver.texts())
