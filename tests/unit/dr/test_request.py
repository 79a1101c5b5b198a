"""stellar_ops.dr.request: what the operator asks of a restore, from the trigger form or the CLI, checked once."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

import pytest

from stellar_ops.cli.restore import check_options, request_from
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


# -- point-in-time recovery: target_time (or --target-time) --------------------------------------


def test_a_target_time_asks_for_a_point_in_time_restore_and_needs_no_backup():
    request = RestoreRequest.from_params(
        {"backup": None, "target_conn_id": "stellar_restore", "target_time": " 2026-12-07T06:30:00Z "}
    )
    assert request.point_in_time and request.target_time == "2026-12-07T06:30:00Z"
    assert request.moment() == datetime(2026, 12, 7, 6, 30, tzinfo=UTC)
    latest = RestoreRequest.from_params({"target_conn_id": "c", "target_time": "latest"})
    assert latest.point_in_time and latest.moment() is None
    # the form's default (null, or an emptied field): a logical restore, as before the param existed
    for empty in (None, "", "  "):
        logical = RestoreRequest.from_params(
            {"backup": "latest", "target_conn_id": "c", "target_time": empty}
        )
        assert not logical.point_in_time and logical.target_time is None


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"target_conn_id": "c", "target_time": "yesterday"},
            r"target_time \(or --target-time\) 'yesterday' is neither",
        ),
        (
            {"target_conn_id": "c", "target_time": 7},
            r"target_time \(or --target-time\) must be an ISO-8601 time",
        ),
        ({"target_time": "latest"}, r"target_conn_id \(or --target\) is empty"),
        ({"target_conn_id": "c", "target_time": ""}, r"backup \(or --backup\) is empty"),
    ],
)
def test_a_bad_target_time_is_refused_naming_the_field(params, message):
    with pytest.raises(ConfigError, match=message):
        RestoreRequest.from_params(params)


def _options(**given):
    defaults = {
        "backup": None,
        "target_time": None,
        "target": None,
        "data_dir": None,
        "database": None,
        "replace": False,
    }
    return argparse.Namespace(**{**defaults, **given})


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (
            {"backup": "latest", "target_time": "latest", "target": "u"},
            "--backup and --target-time ask for two",
        ),
        ({"target": "u"}, "name what to restore: --backup .* or --target-time"),
        (
            {"backup": "latest", "data_dir": "/srv/pg"},
            "--data-dir recovers a whole server to a moment: it needs --target-time",
        ),
        (
            {"target_time": "latest", "data_dir": "/srv/pg", "target": "u"},
            "--data-dir and --target are two ways out",
        ),
        (
            {"target_time": "latest", "data_dir": "/srv/pg", "replace": True},
            "--data-dir and --replace are two ways out",
        ),
        ({"target_time": "latest"}, "--target is missing"),
    ],
)
def test_the_cli_refuses_options_of_two_kinds_of_restore(given, message):
    with pytest.raises(ConfigError, match=message):
        check_options(_options(**given))


def test_the_cli_takes_each_kind_of_restore():
    check_options(_options(backup="latest", target="u"))
    check_options(_options(target_time="latest", target="u", database="d", replace=True))
    check_options(_options(target_time="2026-12-07T06:30:00Z", data_dir="/srv/pg"))
    request = request_from(_options(target_time="latest", target="postgresql://dba@db/postgres"))
    assert request == RestoreRequest("", "postgresql://dba@db/postgres", None, False, "latest")
