"""Each threshold of the table trips warning and critical exactly where it says, boundaries included."""

from __future__ import annotations

import pytest

from stellar_ops.core.errors import ConfigError
from stellar_ops.perf.checks import CheckResult, grade_above, grade_below, worst
from stellar_ops.perf.config import PerfConfig
from stellar_ops.registry import parse_config

DEFAULTS = PerfConfig()

# (threshold, value, expected): the operations manual's table, on both sides of each boundary.
ABOVE = [
    ("ttfb_ms", 400, "ok"),
    ("ttfb_ms", 400.001, "warning"),
    ("ttfb_ms", 800, "warning"),
    ("ttfb_ms", 800.001, "critical"),
    ("query_mean_ms", 20, "ok"),
    ("query_mean_ms", 20.01, "warning"),
    ("query_mean_ms", 50, "warning"),
    ("query_mean_ms", 50.01, "critical"),
    ("indexer_memory_mb", 200, "ok"),
    ("indexer_memory_mb", 200.1, "warning"),
    ("indexer_memory_mb", 400, "warning"),
    ("indexer_memory_mb", 400.1, "critical"),
    ("disk_usage_percent", 70, "ok"),
    ("disk_usage_percent", 70.01, "warning"),
    ("disk_usage_percent", 85, "warning"),
    ("disk_usage_percent", 85.01, "critical"),
    # connections: 8 of 10 is ok, 9 of 10 warning, 10 of 10 critical
    ("connections_share", 8 / 10, "ok"),
    ("connections_share", 9 / 10, "warning"),
    ("connections_share", 10 / 10, "critical"),
    ("connections_share", 80 / 100, "ok"),
    ("connections_share", 81 / 100, "warning"),
    ("connections_share", 90 / 100, "warning"),
    ("connections_share", 91 / 100, "critical"),
]
BELOW = [
    ("redis_hit_rate_percent", 70, "ok"),
    ("redis_hit_rate_percent", 69.99, "warning"),
    ("redis_hit_rate_percent", 60, "warning"),
    ("redis_hit_rate_percent", 59.99, "critical"),
    ("cache_hit_percent", 99, "ok"),
    ("cache_hit_percent", 98.9, "warning"),
    ("cache_hit_percent", 94.9, "critical"),
]


@pytest.mark.parametrize(("name", "value", "expected"), ABOVE)
def test_above_thresholds(name: str, value: float, expected: str) -> None:
    assert grade_above(value, getattr(DEFAULTS, name)) == expected


@pytest.mark.parametrize(("name", "value", "expected"), BELOW)
def test_below_thresholds(name: str, value: float, expected: str) -> None:
    assert grade_below(value, getattr(DEFAULTS, name)) == expected


def test_the_defaults_are_the_table() -> None:
    assert (DEFAULTS.ttfb_ms.warning, DEFAULTS.ttfb_ms.critical) == (400, 800)
    assert (DEFAULTS.query_mean_ms.warning, DEFAULTS.query_mean_ms.critical) == (20, 50)
    assert (DEFAULTS.redis_hit_rate_percent.warning, DEFAULTS.redis_hit_rate_percent.critical) == (70, 60)
    assert (DEFAULTS.indexer_memory_mb.warning, DEFAULTS.indexer_memory_mb.critical) == (200, 400)
    assert (DEFAULTS.disk_usage_percent.warning, DEFAULTS.disk_usage_percent.critical) == (70, 85)
    assert (DEFAULTS.connections_share.warning, DEFAULTS.connections_share.critical) == (0.8, 0.9)


def test_thresholds_come_from_config() -> None:
    config = parse_config({"perf": {"ttfb_ms": {"warning": 100, "critical": 200}}})
    assert grade_above(150, config.perf.ttfb_ms) == "warning"


def test_a_critical_below_its_warning_is_refused_naming_the_field() -> None:
    with pytest.raises(ConfigError, match=r"perf\.ttfb_ms"):
        parse_config({"perf": {"ttfb_ms": {"warning": 500, "critical": 100}}})
    with pytest.raises(ConfigError, match=r"perf\.redis_hit_rate_percent"):
        parse_config({"perf": {"redis_hit_rate_percent": {"warning": 50, "critical": 60}}})


def test_an_unknown_check_is_refused_naming_it() -> None:
    with pytest.raises(ConfigError, match="slow_querys"):
        parse_config({"perf": {"checks": ["slow_querys"]}})


def test_worst_ignores_unknown_and_ranks_the_rest() -> None:
    assert worst([]) == "ok"
    assert worst(["ok", "unknown"]) == "ok"
    assert worst(["ok", "warning", "critical"]) == "critical"
    assert worst(["warning", "ok"]) == "warning"


def test_a_result_without_a_valid_state_is_refused() -> None:
    with pytest.raises(ValueError, match="disk"):
        CheckResult.from_dict({"check": "disk", "state": "fine"})
