"""The ``perf`` section: which checks run, their thresholds (the operations manual's table as
defaults), the sources they read, and how the week-over-week comparison judges a regression."""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from stellar_ops.core.config import Section

CHECKS: tuple[str, ...] = (
    "slow_queries",
    "index_usage",
    "cache_hit_ratio",
    "connections",
    "sessions",
    "vacuum",
    "sequences",
    "wraparound",
    "api_latency",
    "containers",
    "redis_hit_rate",
    "disk",
)


class Above(Section):
    """A value that is bad when high: ``warning`` when above ``warning``, ``critical`` above ``critical``."""

    warning: float = Field(description="Warning when the value is above this.")
    critical: float = Field(description="Critical when the value is above this.")

    @model_validator(mode="after")
    def _ordered(self) -> Above:
        if self.critical < self.warning:
            raise ValueError(f"critical: must be at least warning ({self.warning}), got {self.critical}")
        return self


class Below(Section):
    """A value that is bad when low: ``warning`` when below ``warning``, ``critical`` below ``critical``."""

    warning: float = Field(description="Warning when the value is below this.")
    critical: float = Field(description="Critical when the value is below this.")

    @model_validator(mode="after")
    def _ordered(self) -> Below:
        if self.critical > self.warning:
            raise ValueError(f"critical: must be at most warning ({self.warning}), got {self.critical}")
        return self


def _above(warning: float, critical: float, what: str) -> Above:
    return Field(  # type: ignore[no-any-return]
        default_factory=lambda: Above(warning=warning, critical=critical),
        description=f"{what} (warning above {warning:g}, critical above {critical:g}).",
    )


def _below(warning: float, critical: float, what: str) -> Below:
    return Field(  # type: ignore[no-any-return]
        default_factory=lambda: Below(warning=warning, critical=critical),
        description=f"{what} (warning below {warning:g}, critical below {critical:g}).",
    )


class PerfConfig(Section):
    checks: list[str] = Field(
        default_factory=lambda: list(CHECKS),
        description=f"The checks a scheduled run makes, from: {', '.join(CHECKS)}.",
    )
    # The operations manual's table.
    ttfb_ms: Above = _above(400, 800, "API time to first byte in ms, at `api_percentile`")
    query_mean_ms: Above = _above(20, 50, "Mean time in ms of each hot-path query")
    redis_hit_rate_percent: Below = _below(70, 60, "Redis keyspace hit rate in percent")
    indexer_memory_mb: Above = _above(200, 400, "Memory of the indexer container in MB")
    disk_usage_percent: Above = _above(70, 85, "Usage of each of `disk_paths` in percent")
    connections_share: Above = _above(0.8, 0.9, "Client connections as a share of max_connections")
    # PgHero's and the usual DBA thresholds for the rest.
    cache_hit_percent: Below = _below(99, 95, "Buffer cache hit ratio of the database in percent")
    long_running_seconds: Above = _above(300, 1800, "Age in seconds of the oldest active query")
    idle_in_transaction_seconds: Above = _above(
        60, 600, "Age in seconds of the oldest idle-in-transaction session"
    )
    sequence_used_share: Above = _above(0.75, 0.9, "Share of its range a sequence has used")
    wraparound_used_share: Above = _above(
        0.5, 0.75, "Share of the 2^31 transaction ids the oldest database has used"
    )
    dead_tuple_share: Above = _above(
        0.2, 0.5, "Dead tuples as a share of a table's tuples (tables with at least `min_dead_tuples`)"
    )
    api_percentile: str = Field(
        "p95", description="Which TTFB percentile of /health/metrics is graded: p50, p95 or p99."
    )
    top_queries: int = Field(
        10, ge=1, le=100, description="How many queries the slow-query list shows (by mean time)."
    )
    hot_paths: int = Field(
        5, ge=1, le=100, description="How many of the top queries by total time count as hot paths."
    )
    min_calls: int = Field(
        1, ge=1, description="Queries called fewer times than this are left out of the lists."
    )
    snapshot_size: int = Field(
        500,
        ge=10,
        le=10000,
        description="pg_stat_statements entries (by total time) stored for next week's comparison.",
    )
    min_table_rows: int = Field(
        10000, ge=0, description="Tables with fewer rows are not judged on their index use."
    )
    min_index_scan_share: float = Field(
        0.95,
        ge=0,
        le=1,
        description="A large table whose index scans are a lower share of its scans than this is reported.",
    )
    min_dead_tuples: int = Field(
        1000, ge=0, description="Tables with fewer dead tuples are not judged on them."
    )
    stale_analyze_days: float = Field(
        7,
        gt=0,
        description="A table not (auto)analyzed for this long, with rows changed since, is reported as stale.",
    )
    regression_share: float = Field(
        0.5,
        gt=0,
        description="A query whose mean time rose by more than this share week over week is a regression.",
    )
    regression_min_mean_ms: float = Field(
        1.0, ge=0, description="Queries faster than this now are never reported as regressions."
    )
    indexer_container: str = Field(
        "stellar-indexer", description="Name of the indexer's container (memory thresholds)."
    )
    containers: list[str] = Field(
        default_factory=list,
        description="Containers to report CPU and memory of; empty means every running one.",
    )
    disk_paths: list[str] = Field(
        default_factory=lambda: ["/"], description="Filesystem paths whose usage is checked."
    )
    statement_timeout_seconds: float = Field(
        30, gt=0, description="statement_timeout of every query of the analysis."
    )
    lock_timeout_seconds: float = Field(5, gt=0, description="lock_timeout of every query of the analysis.")
    timeout_seconds: float = Field(10, gt=0, description="Timeout of each API, Redis and Docker request.")
    report_prefix: str = Field(
        "",
        description="Key prefix of the reports in the backups bucket: <report_prefix>perf/<YYYY-MM-DD>.json and .md.",
    )

    @field_validator("checks")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = [name for name in value if name not in CHECKS]
        if unknown:
            raise ValueError(f"unknown check {', '.join(unknown)}; the checks are {', '.join(CHECKS)}")
        return value

    @field_validator("api_percentile")
    @classmethod
    def _percentile(cls, value: str) -> str:
        if value not in ("p50", "p95", "p99"):
            raise ValueError(f"must be p50, p95 or p99, got {value!r}")
        return value

    @field_validator("report_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if value and (
            value.startswith("/") or not value.endswith("/") or not re.fullmatch(r"[\w./-]+", value)
        ):
            raise ValueError(f"must be empty or a key prefix ending in '/', got {value!r}")
        return value
