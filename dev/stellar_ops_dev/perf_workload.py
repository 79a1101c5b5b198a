"""A workload for ``perf_analysis`` to find in the local stack (``stellar-dev perf-workload``).

It leaves in the database what the weekly review looks for: a hot query path slower than the
critical threshold, sequential scans on a large table, an unused and a duplicate index, a table
full of dead tuples, and a sequence near its maximum; Redis lookups at a hit rate under the
warning threshold; and API requests for its latency percentiles. Running it again adds to it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from stellar_ops.core.errors import StellarOpsError
from stellar_ops.core.http import HttpEndpoint, RedisTarget
from stellar_ops.postgres.target import PgTarget, connect

SETUP_SQL = """
CREATE TABLE IF NOT EXISTS demo_ledger (id bigint PRIMARY KEY, account int NOT NULL, memo text NOT NULL);
-- not ON CONFLICT: its probe of the primary key for each row would count as index scans
INSERT INTO demo_ledger SELECT g, g % 500, md5(g::text) FROM generate_series(1, 50000) g
    WHERE NOT EXISTS (SELECT FROM demo_ledger);
CREATE INDEX IF NOT EXISTS demo_ledger_account ON demo_ledger (account);
CREATE INDEX IF NOT EXISTS demo_ledger_account_memo ON demo_ledger (account, memo);
CREATE TABLE IF NOT EXISTS demo_sessions (id int PRIMARY KEY, seen int NOT NULL DEFAULT 0)
    WITH (autovacuum_enabled = false);
INSERT INTO demo_sessions SELECT g FROM generate_series(1, 20000) g WHERE NOT EXISTS (SELECT FROM demo_sessions);
UPDATE demo_sessions SET seen = seen + 1;
CREATE SEQUENCE IF NOT EXISTS demo_ticket_seq AS integer MAXVALUE 100000;
SELECT setval('demo_ticket_seq', 96000);
"""
REDIS_TIMEOUT_SECONDS = 5.0
HOT_PATH_SQL = "SELECT pg_sleep(0.06), count(*) FROM demo_ledger WHERE memo LIKE '%ab%'"


@dataclass
class WorkloadDone:
    hot_path_calls: int = 0
    seq_scans: int = 0
    redis_hits: int = 0
    redis_misses: int = 0
    api_requests: int = 0
    notes: list[str] = field(default_factory=list)


def generate(
    db: PgTarget,
    *,
    redis: RedisTarget | None = None,
    api: HttpEndpoint | None = None,
    calls: int = 20,
    say: Callable[[str], None] = print,
) -> WorkloadDone:
    done = WorkloadDone()
    with connect(db) as conn:
        conn.execute(SETUP_SQL)
        for _ in range(calls):
            conn.execute(HOT_PATH_SQL)
        # Hand the counters to the statistics system now, not at some later idle moment.
        conn.execute("SELECT pg_stat_force_next_flush()")
        conn.execute("SELECT 1")
        done.hot_path_calls = done.seq_scans = calls
    say(
        f"database: {calls} calls of a ~60 ms hot path scanning demo_ledger sequentially; dead tuples, a sequence near its end"
    )
    if redis is not None:
        # bounded: a port that accepts but never answers in Redis's protocol fails, it does not hang
        from redis.backoff import NoBackoff
        from redis.exceptions import RedisError
        from redis.retry import Retry

        client = redis.client(timeout=REDIS_TIMEOUT_SECONDS)
        # redis-py's default retries, each waiting the whole timeout, would add up to minutes
        client.set_retry(Retry(NoBackoff(), 1))
        try:
            client.set("demo:hot", "1")
            for i in range(100):
                # 65 of 100 lookups hit: under the 70% warning threshold, above the 60% critical one
                client.get("demo:hot" if i < 65 else f"demo:cold:{i}")
        except RedisError as exc:
            raise StellarOpsError(f"Redis at {redis.describe()} did not answer the workload: {exc}") from None
        finally:
            client.close()
        done.redis_hits, done.redis_misses = 65, 35
        say("redis: 65 hits and 35 misses")
    if api is not None:
        import requests

        for _ in range(10):
            requests.get(api.url("/health"), headers={"X-API-Key": api.secret or ""}, timeout=10)
        done.api_requests = 10
        say("api: 10 requests to /health")
    return done
