"""A realistic StellarEscrow database for the local stack, the tests and the benchmarks.

Rows are generated inside PostgreSQL (fast, no client round trips) from a fixed seed, so the
same request gives the same data. Values are deliberately varied: Stellar account ids, random
amounts and hashes, JSONB payloads, so the dump does not compress trivially.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

from stellar_ops.core.errors import ConfigError
from stellar_ops.postgres.target import PgTarget, connect

log = logging.getLogger(__name__)

TRADES_PER_ESCROW = 3
EVENTS_PER_ESCROW = 6
ACCOUNTS = 5000
BATCH_ESCROWS = 20000

_ACCOUNTS_SQL = """
INSERT INTO accounts (stellar_account, role, kyc_status, home_domain, created_at)
SELECT 'G' || array_to_string(ARRAY(
           SELECT substr('ABCDEFGHIJKLMNOPQRSTUVWXYZ234567', 1 + floor(random() * 32)::int, 1)
           FROM generate_series(1, 55) WHERE g > 0), ''),
       (ARRAY['buyer','seller','arbiter'])[1 + g %% 3],
       (ARRAY['pending','verified','verified','verified','rejected'])[1 + floor(random() * 5)::int],
       CASE WHEN random() < 0.3 THEN 'wallet' || (g %% 97) || '.example.org' END,
       timestamptz '2025-01-01 00:00:00+00' + random() * interval '600 days'
FROM generate_series(1, %(n)s) AS g
ON CONFLICT (stellar_account) DO NOTHING
"""

_ESCROWS_SQL = """
WITH acc AS (SELECT array_agg(stellar_account ORDER BY id) AS a, count(*)::int AS n FROM accounts),
rows AS (
    SELECT acc.a, acc.n,
           timestamptz '2025-01-01 00:00:00+00' + random() * interval '690 days' AS created,
           random() AS r
    FROM acc, generate_series(1, %(n)s)
)
INSERT INTO escrows (buyer_account, seller_account, arbiter_account, asset_code, asset_issuer, amount,
                     status, memo, created_at, funded_at, released_at, deadline)
SELECT a[1 + floor(random() * n)::int], a[1 + floor(random() * n)::int],
       CASE WHEN r < 0.7 THEN a[1 + floor(random() * n)::int] END,
       (ARRAY['XLM','USDC','EURC','BTC','ETH','AQUA'])[1 + floor(random() * 6)::int],
       CASE WHEN r > 0.2 THEN a[1 + floor(random() * n)::int] END,
       round((random() * 250000 + 0.0000001)::numeric, 7),
       (ARRAY['pending','funded','released','released','released','refunded','disputed','expired'])
           [1 + floor(random() * 8)::int],
       CASE WHEN random() < 0.5 THEN 'order-' || md5(random()::text) END,
       created, created + random() * interval '2 days', created + random() * interval '30 days',
       created + interval '45 days'
FROM rows
RETURNING id
"""

_TRADES_SQL = """
INSERT INTO trades (escrow_id, buyer_account, seller_account, base_asset, counter_asset, amount, price,
                    status, tx_hash, ledger, created_at, settled_at)
SELECT e.id, e.buyer_account, e.seller_account, e.asset_code,
       (ARRAY['XLM','USDC','EURC'])[1 + floor(random() * 3)::int],
       round((e.amount * (0.05 + random() * 0.4))::numeric, 7),
       round((random() * 3 + 0.0001)::numeric, 7),
       (ARRAY['open','matched','settled','settled','settled','cancelled','failed'])[1 + floor(random() * 7)::int],
       md5(random()::text) || md5(random()::text),
       40000000 + floor(random() * 20000000)::bigint,
       e.created_at + s * interval '7 minutes',
       CASE WHEN random() < 0.8 THEN e.created_at + s * interval '9 minutes' END
FROM escrows e CROSS JOIN generate_series(1, %(per)s) AS s
WHERE e.id > %(after)s AND e.id <= %(upto)s
"""

_EVENTS_SQL = """
INSERT INTO events (escrow_id, event_type, payload, ledger, tx_hash, created_at)
SELECT e.id,
       (ARRAY['escrow.created','escrow.funded','trade.matched','trade.settled','escrow.released',
              'dispute.opened','webhook.delivered'])[1 + floor(random() * 7)::int],
       jsonb_build_object(
           'escrow', e.id,
           'amount', round((random() * 100000)::numeric, 7)::text,
           'asset', e.asset_code,
           'source', e.buyer_account,
           'destination', e.seller_account,
           'memo', md5(random()::text),
           'fee_stroops', 100 + floor(random() * 5000)::int,
           'signatures', jsonb_build_array(md5(random()::text), md5(random()::text)),
           'horizon_cursor', (floor(random() * 1e15))::bigint::text
       ),
       40000000 + floor(random() * 20000000)::bigint,
       CASE WHEN random() < 0.9 THEN md5(random()::text) || md5(random()::text) END,
       e.created_at + s * interval '3 minutes'
FROM escrows e CROSS JOIN generate_series(1, %(per)s) AS s
WHERE e.id > %(after)s AND e.id <= %(upto)s
"""

_SIZE_UNITS = {
    "": 1,
    "B": 1,
    "K": 1 << 10,
    "KB": 1 << 10,
    "M": 1 << 20,
    "MB": 1 << 20,
    "G": 1 << 30,
    "GB": 1 << 30,
}


def parse_size(text: str) -> int:
    """'500MB' -> bytes; binary units, case-insensitive."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]?B?)\s*", text.upper())
    if not match:
        raise ConfigError(f"--size must look like 500MB or 1GB, got {text!r}")
    return int(float(match[1]) * _SIZE_UNITS[match[2]])


@dataclass(frozen=True)
class DemoDataResult:
    escrows: int
    trades: int
    events: int
    accounts: int
    database_bytes: int


def apply_schema(target: PgTarget) -> None:
    schema = resources.files("stellar_ops_dev").joinpath("sql/demo_schema.sql").read_text()
    with connect(target) as conn:
        conn.execute(schema)


def _count(conn: Any, table: str) -> int:
    return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def _database_size(conn: Any) -> int:
    return int(conn.execute("SELECT pg_database_size(current_database())").fetchone()[0])


def generate(
    target: PgTarget,
    *,
    trades: int | None = None,
    size_bytes: int | None = None,
    seed: float = 0.42,
    progress: Callable[[str], None] | None = None,
) -> DemoDataResult:
    """Add about ``trades`` trades, or grow the database to ``size_bytes``; returns the totals."""
    if (trades is None) == (size_bytes is None):
        raise ConfigError("give exactly one of --rows or --size")
    if trades is not None and trades < 1:
        raise ConfigError(f"--rows must be at least 1, got {trades}")
    say = progress or log.info
    apply_schema(target)
    with connect(target) as conn:
        conn.execute("SELECT setseed(%s)", (seed,))
        if _count(conn, "accounts") < ACCOUNTS:
            conn.execute(_ACCOUNTS_SQL, {"n": ACCOUNTS})
        escrows_wanted = None if trades is None else -(-trades // TRADES_PER_ESCROW)
        made = 0
        bytes_per_escrow = 5000.0  # first guess; measured after each batch
        last_size = _database_size(conn)
        while True:
            if escrows_wanted is not None:
                batch = min(BATCH_ESCROWS, escrows_wanted - made)
                if batch <= 0:
                    break
            else:
                assert size_bytes is not None
                if last_size >= size_bytes:
                    break
                batch = int(min(BATCH_ESCROWS, max(500, (size_bytes - last_size) / bytes_per_escrow)))
            with conn.transaction():
                ids = [row[0] for row in conn.execute(_ESCROWS_SQL, {"n": batch}).fetchall()]
                bounds = {"after": min(ids) - 1, "upto": max(ids)}
                conn.execute(_TRADES_SQL, {"per": TRADES_PER_ESCROW, **bounds})
                conn.execute(_EVENTS_SQL, {"per": EVENTS_PER_ESCROW, **bounds})
            made += batch
            size = _database_size(conn)
            if size > last_size:
                bytes_per_escrow = (size - last_size) / batch
            last_size = size
            say(f"demo data: {made} escrows added, database is {size / 2**20:.0f} MiB")
        conn.execute("ANALYZE")
        return DemoDataResult(
            escrows=_count(conn, "escrows"),
            trades=_count(conn, "trades"),
            events=_count(conn, "events"),
            accounts=_count(conn, "accounts"),
            database_bytes=_database_size(conn),
        )
