"""``stellar-dev perf-workload`` (run by ``make run``) leaves what the report then shows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from stellar_ops.perf import flow
from stellar_ops.postgres.target import connect
from tests.integration.perf.conftest import reset_statements

pytestmark = pytest.mark.integration

DEV_CLI = str(Path(sys.executable).parent / "stellar-dev")


@pytest.fixture
def clean(stack):
    client = redis.Redis(host="127.0.0.1", port=stack.ports["redis"])
    client.config_resetstat()
    reset_statements(stack)
    yield
    client.config_resetstat()
    client.close()
    with connect(stack.db) as conn:
        conn.execute(
            "DROP TABLE IF EXISTS demo_ledger, demo_sessions; DROP SEQUENCE IF EXISTS demo_ticket_seq"
        )


def test_the_demo_workload_is_what_the_report_finds(stack, runtime, clean):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_")}
    result = subprocess.run(
        [DEV_CLI, "perf-workload", "--calls", "8"], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    done = json.loads(result.stdout)
    assert done["hot_path_calls"] == 8 and done["redis_misses"] == 35 and done["api_requests"] == 10
    rt = runtime()
    slow = flow.run_check(rt, "slow_queries")
    assert slow.state == "critical"
    assert any("demo_ledger" in q["query"] and q["calls"] == 8 for q in slow.values["top"])
    redis_check = flow.run_check(rt, "redis_hit_rate")
    assert (redis_check.state, redis_check.values["hit_rate_percent"]) == ("warning", 65)
    index = flow.run_check(rt, "index_usage")
    assert "public.demo_ledger" in [t["table"] for t in index.values["low_index_scan_tables"]]
    assert {
        "table": "public.demo_ledger",
        "index": "demo_ledger_account",
        "covered_by": "demo_ledger_account_memo",
    } in index.values["duplicate_indexes"]
    vacuum = flow.run_check(rt, "vacuum")
    assert "public.demo_sessions" in [d["table"] for d in vacuum.values["dead_tuples"]]
    sequences = flow.run_check(rt, "sequences")
    assert "public.demo_ticket_seq" in [s["sequence"] for s in sequences.values["near_exhaustion"]]
    assert flow.run_check(rt, "api_latency").values["requests"] >= 10
