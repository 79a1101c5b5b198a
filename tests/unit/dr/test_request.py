"""stellar_ops.dr.request: what the operator asks of a restore, from the trigger form or the CLI, checked once."""

from __future__ import annotations

import argparse

import pytest

from stellar_ops.cli.restore import request_from
from stellar_ops.core.errors import ConfigError
from stellar_ops.dr.request import MAX_IDENTIFIER, RestoreRequest


def test_the_trigger_params_are_one_request():
    request = RestoreRequest.from_params(
        {"backup": "latest", "target_conn_id": "stellar_restore", "target_database": "", "replace": False}
    )
    assert request == RestoreRequest(backup="latest", target="stellar_restore", database=None, replace=False)
    replacing = RestoreRequest.from_params(
        {"backup": "backups/x.dump.zst", "target_conn_id": "c", "target_database": "stellar", "replace": True}
    )
    assert (replacing.database, replacing.replace) == ("stellar", True)
    # params a run was triggered with before a param existed: its default
    assert RestoreRequest.from_params({"backup": "latest", "target_conn_id": "c"}).replace is False


def test_the_cli_options_are_the_same_request():
    args = argparse.Namespace(
        backup="latest", target="postgresql://dba@db:5432/postgres", database=None, replace=True
    )
    assert request_from(args) == RestoreRequest("latest", "postgresql://dba@db:5432/postgres", None, True)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"target_conn_id": "c"}, r"backup \(or --backup\) is empty"),
        ({"backup": " ", "target_conn_id": "c"}, r"backup \(or --backup\) is empty"),
        ({"backup": "latest", "target_conn_id": ""}, r"target_conn_id \(or --target\) is empty"),
        ({"backup": "latest"}, r"target_conn_id \(or --target\) is empty"),
        (
            {"backup": "latest", "target_conn_id": "c", "target_database": 7},
            r"target_database \(or --database\) must be a database name",
        ),
        (
            {"backup": "latest", "target_conn_id": "c", "target_database": "x" * (MAX_IDENTIFIER + 1)},
            r"target_database \(or --database\): .* longer than PostgreSQL's 63 bytes",
        ),
        (
            {"backup": "latest", "target_conn_id": "c", "replace": "false"},
            r"replace \(or --replace\) must be true or false, got 'false'",
        ),
    ],
)
def test_bad_input_is_refused_naming_the_field(params, message):
    with pytest.raises(ConfigError, match=message):
        RestoreRequest.from_params(params)


def test_a_name_of_exactly_the_limit_is_taken():
    name = "x" * MAX_IDENTIFIER
    assert RestoreRequest("latest", "c", name).database == name
