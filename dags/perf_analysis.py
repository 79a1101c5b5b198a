"""
# perf_analysis: the weekly performance review

**Schedule:** Sundays 03:00 UTC. **Severity:** P3. **Owner:** platform.

## What it does
1. `list_checks`: the checks of this run: the trigger form's `checks`, else `perf.checks` (all).
2. `check_performance` (one mapped task per check, labelled by its name): each check is `ok`,
   `warning`, `critical` or `unknown` (its source is not configured or did not answer) with its
   values, against the thresholds of `perf.*` (the operations manual's table by default):
   `slow_queries` (pg_stat_statements top 10 by mean; hot paths, the top by total time, graded on
   their mean), `index_usage` (large tables mostly scanned sequentially; unused, duplicate and
   invalid indexes), `cache_hit_ratio`, `connections` (share of `max_connections`), `sessions`
   (long-running, idle in transaction), `vacuum` (dead tuples, stale statistics), `sequences`
   (near exhaustion), `wraparound` (transaction-id headroom), `api_latency` (p50/p95/p99 TTFB of
   `/health/metrics`), `containers` (indexer memory, CPU, through `stellar_docker`),
   `redis_hit_rate` (`INFO stats`), `disk` (`perf.disk_paths`). Every query is read-only, with
   `statement_timeout` and `lock_timeout`, and takes no lock beyond ACCESS SHARE. Each result
   waits in the bucket (`<backup.prefix>.incoming/perf/<run>/`) for the report, so a bucket that
   refuses fails the checks; XCom carries its state, one line and its key.
3. `assemble_report`: compares this week's pg_stat_statements snapshot with the report named by
   `compare_to` (default: last week's, else the newest earlier one): queries whose mean rose by
   more than `perf.regression_share`, new entries in the top 10; a statistics reset between the
   two is said as one. Stores `<perf.report_prefix>perf/<YYYY-MM-DD>.json` and `.md` in the bucket.
4. `publish_report`: `stellar_perf_check_status{check}` (0 ok, 1 warning, 2 critical, 3 unknown)
   to the Pushgateway, a short summary to Slack (counts, the worst checks, the week-over-week
   changes, where the report is), and for critical checks an alert:
   RedisHitRate (RB-005) for Redis, DBQueryLatency (RB-006) for the rest, both P3.
5. `confirm_success`: the run's verdict: green when every step above succeeded, red when any
   failed. Checks that find problems succeed (the findings are the report); a check that cannot
   run at all is `unknown`, not a failure.

A backfilled run analyses the database as it is now: pg_stat_statements keeps no history, so a
past week cannot be measured again; its report is stored under the run's date.

## Is it safe to re-run?
Yes. It only reads, and a re-run of the same day overwrites that day's report.

## When it fails
A failed task means the analysis could not run (bad config, the bucket refused the report, the
Pushgateway is down), not that it found problems; problems are states in the report and alerts.
- *compare_to: no report at ...*: trigger again with an existing key, or leave it empty.
- *Invalid stellar_ops_config: perf...*: fix the named field of the Variable.
- An `unknown` check says why in its values: a connection to add, a server that did not answer.
- *check_performance* failed with an S3 error: the bucket (`backup.bucket`, `stellar_s3`) refused
  the check's result; fix it and clear the failed checks.

## Triage
P3, within 4 hours. Critical checks: RB-006 (queries, indexes, vacuum, connections), RB-005 (Redis).
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param, task

from stellar_ops.adapters import perf as steps
from stellar_ops.adapters.common.dag import procedure_dag
from stellar_ops.adapters.common.queues import docker_queue


@procedure_dag(
    "perf_analysis",
    schedule="0 3 * * 0",
    doc=__doc__,
    execution_timeout=timedelta(minutes=30),
    params={
        "checks": Param(
            [],
            type="array",
            items={"type": "string", "enum": list(steps.CHECKS)},
            description="The checks to make; empty makes perf.checks (every check by default)",
        ),
        "compare_to": Param(
            None,
            type=["null", "string"],
            description="S3 key of a previous report to compare with (perf/YYYY-MM-DD.json); "
            "empty compares with last week's",
        ),
    },
)
def perf_analysis() -> None:
    @task
    def list_checks(params: dict | None = None) -> list:
        return steps.list_checks((params or {}).get("checks"))

    @task(map_index_template="{{ check_name }}", **docker_queue())  # may read the Docker daemon
    def check_performance(check: str) -> dict:
        return steps.check_performance(check)

    @task
    def assemble_report(results: list, params: dict | None = None) -> dict:
        return steps.assemble_report(results, (params or {}).get("compare_to"))

    @task
    def publish_report(assembled: dict) -> dict:
        return steps.publish_report(assembled)

    results = check_performance.expand(check=list_checks())
    publish_report(assemble_report(results))


perf_analysis()
