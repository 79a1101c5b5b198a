"""The dr section: a saved config naming the retired restore engine still parses."""

from __future__ import annotations

import pytest

from stellar_ops.core.errors import ConfigError
from stellar_ops.registry import parse_config


@pytest.mark.parametrize("engine", ["streaming", "pg_restore"])
def test_a_config_naming_the_retired_restore_engine_still_parses(engine):
    config = parse_config({"dr": {"restore_engine": engine, "restore_jobs": 3}})
    assert config.dr.restore_jobs == 3
    assert "restore_engine" not in config.dr.model_dump()


def test_an_unknown_value_of_the_retired_key_is_refused_by_name():
    with pytest.raises(ConfigError, match="restore_engine was retired"):
        parse_config({"dr": {"restore_engine": "fast"}})
