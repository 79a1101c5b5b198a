"""stellar_ops.airflow_settings: airflow_settings.yaml to Airflow's import files."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import pytest

from stellar_ops.core.errors import ConfigError
from stellar_ops_dev.airflow_settings import load, write_import_files

REPO_SETTINGS = Path(__file__).resolve().parents[3] / "airflow_settings.yaml"

SETTINGS = """
airflow:
  connections:
    - conn_id: stellar_db
      conn_type: postgres
      conn_host: 127.0.0.1
      conn_port: ${PG_PORT}
      conn_schema: stellar_escrow
      conn_login: stellar
      conn_password: ${DB_PASSWORD}
    - conn_id: stellar_s3
      conn_type: aws
      conn_login: ${S3_KEY}
      conn_password: ""
      conn_extra:
        endpoint_url: http://127.0.0.1:${S3_PORT}
        region_name: us-east-1
        tags: ["a-${S3_PORT}", 2]
    - conn_id: raw_extra
      conn_type: http
      conn_port: 8080
      conn_extra: '{"timeout": 5}'
  pools:
    - pool_name: stellar_db_heavy
      pool_slot: 2
      pool_description: Heavy work
    - pool_name: defaults
  variables:
    - variable_name: stellar_ops_config
      variable_value: '{"backup": {"local_dir": "${DATA}/local"}}'
    - variable_name: as_mapping
      variable_value:
        dr:
          work_dir: ${DATA}/scratch
    - variable_name: a_number
      variable_value: 5
"""

ENV = {"PG_PORT": "55432", "DB_PASSWORD": "s3cr3t", "S3_KEY": "minio", "S3_PORT": "9000", "DATA": "/data"}


@pytest.fixture
def settings_file(tmp_path: Path) -> Path:
    path = tmp_path / "airflow_settings.yaml"
    path.write_text(SETTINGS)
    return path


def test_connections(settings_file: Path) -> None:
    connections = load(settings_file, ENV)["connections"]

    assert connections["stellar_db"] == {
        "conn_type": "postgres",
        "host": "127.0.0.1",
        "schema": "stellar_escrow",
        "login": "stellar",
        "password": "s3cr3t",
        "port": 55432,
    }
    assert isinstance(connections["stellar_db"]["port"], int)
    assert connections["raw_extra"] == {"conn_type": "http", "port": 8080, "extra": '{"timeout": 5}'}


def test_conn_extra_mapping_becomes_expanded_json(settings_file: Path) -> None:
    s3 = load(settings_file, ENV)["connections"]["stellar_s3"]

    assert s3 == {"conn_type": "aws", "login": "minio", "extra": s3["extra"]}  # empty password left out
    assert isinstance(s3["extra"], str)
    assert json.loads(s3["extra"]) == {
        "endpoint_url": "http://127.0.0.1:9000",
        "region_name": "us-east-1",
        "tags": ["a-9000", 2],
    }


def test_variables_are_strings(settings_file: Path) -> None:
    variables = load(settings_file, ENV)["variables"]

    assert variables["stellar_ops_config"] == '{"backup": {"local_dir": "/data/local"}}'
    assert json.loads(variables["as_mapping"]) == {"dr": {"work_dir": "/data/scratch"}}
    assert variables["a_number"] == "5"


def test_pools(settings_file: Path) -> None:
    assert load(settings_file, ENV)["pools"] == {
        "stellar_db_heavy": {"slots": 2, "description": "Heavy work", "include_deferred": False},
        "defaults": {"slots": 1, "description": "", "include_deferred": False},
    }


@pytest.mark.parametrize(
    ("missing", "where"),
    [
        ("DB_PASSWORD", "connections[0].conn_password"),
        ("S3_PORT", "connections[1].conn_extra.endpoint_url"),
        ("DATA", "variables[0].variable_value"),
    ],
)
def test_missing_variable_names_the_variable_and_where(settings_file: Path, missing: str, where: str) -> None:
    env = {k: v for k, v in ENV.items() if k != missing}

    with pytest.raises(ConfigError) as info:
        load(settings_file, env)

    assert str(info.value) == f"airflow_settings.yaml {where} uses ${{{missing}}}, which is not set"


def test_empty_variable_is_set(settings_file: Path) -> None:
    connections = load(settings_file, {**ENV, "DB_PASSWORD": ""})["connections"]
    assert "password" not in connections["stellar_db"]


def test_only_upper_case_references_expand(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "airflow:\n  variables:\n    - {variable_name: v, variable_value: '${lower} $HOME ${X}'}\n"
    )
    assert load(path, {"X": "y"})["variables"]["v"] == "${lower} $HOME y"


def test_environment_defaults_to_os_environ(settings_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DB_PASSWORD", "from-os-environ")

    assert load(settings_file)["connections"]["stellar_db"]["password"] == "from-os-environ"


def test_connection_needs_id_and_type(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("airflow:\n  connections:\n    - conn_id: a\n      conn_type: http\n    - conn_id: b\n")
    with pytest.raises(ConfigError, match=r"connections\[1\] needs conn_id and conn_type"):
        load(path, {})


@pytest.mark.parametrize("text", ["", "airflow:\n", "other: 1\n", "airflow:\n  connections: []\n"])
def test_empty_documents(tmp_path: Path, text: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    assert load(path, {}) == {"connections": {}, "variables": {}, "pools": {}}


def test_unreadable_and_invalid_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read .*nope.yaml"):
        load(tmp_path / "nope.yaml", {})
    bad = tmp_path / "bad.yaml"
    bad.write_text("airflow: [unclosed\n")
    with pytest.raises(ConfigError, match="cannot read .*bad.yaml"):
        load(bad, {})


def test_the_repository_settings_load_with_a_complete_environment() -> None:
    text = REPO_SETTINGS.read_text()
    names = set(re.findall(r"\$\{([A-Z0-9_]+)\}", text))
    env = {name: "7000" for name in names}

    settings = load(REPO_SETTINGS, env)

    assert {"stellar_db", "stellar_s3", "slack_alerts"} <= set(settings["connections"])
    assert settings["connections"]["stellar_db"]["port"] == 7000
    assert "stellar_ops_config" in settings["variables"]


def test_non_numeric_port_is_a_config_error(settings_file: Path) -> None:
    with pytest.raises(ConfigError, match=r"connections\[0\]"):
        load(settings_file, {**ENV, "PG_PORT": "54x32"})


def test_variable_without_name_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("airflow:\n  variables:\n    - variable_value: x\n")
    with pytest.raises(ConfigError, match=r"variables\[0\]"):
        load(path, {})


# -- write_import_files ---------------------------------------------------------------------------


def test_write_import_files(settings_file: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "out" / "nested"

    written = write_import_files(settings_file, out_dir, ENV)

    assert written == {name: out_dir / f"{name}.json" for name in ("connections", "variables", "pools")}
    expected = load(settings_file, ENV)
    for name, path in written.items():
        assert json.loads(path.read_text()) == expected[name]
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_write_import_files_replaces_old_content(settings_file: Path, tmp_path: Path) -> None:
    (tmp_path / "connections.json").write_text(json.dumps({"old": {"conn_type": "x"}}) + " " * 10_000)

    write_import_files(settings_file, tmp_path, ENV)

    assert set(json.loads((tmp_path / "connections.json").read_text())) == {
        "stellar_db",
        "stellar_s3",
        "raw_extra",
    }


def test_write_import_files_tightens_an_existing_file(settings_file: Path, tmp_path: Path) -> None:
    existing = tmp_path / "connections.json"
    existing.write_text("{}")
    existing.chmod(0o644)

    write_import_files(settings_file, tmp_path, ENV)

    assert stat.S_IMODE(existing.stat().st_mode) == 0o600


def test_failed_load_writes_nothing(settings_file: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    with pytest.raises(ConfigError):
        write_import_files(settings_file, out_dir, {})
    assert not out_dir.exists()


def test_settings_fixture_references_exactly_env() -> None:
    # Guards the fixture itself: every reference it uses is provided by ENV, and nothing more.
    assert set(re.findall(r"\$\{([A-Z0-9_]+)\}", SETTINGS)) == set(ENV)
