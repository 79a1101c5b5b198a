"""stellar_ops.cli_env: the CLI's configuration and targets from the old scripts' environment."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stellar_ops.cli.env import config_from_env, db_target, optional
from stellar_ops.core.errors import ConfigError, MissingConnectionError
from stellar_ops.registry import StellarOpsConfig


def test_empty_environment_gives_defaults() -> None:
    assert config_from_env({}) == StellarOpsConfig()


def test_old_script_variables() -> None:
    config = config_from_env(
        {"S3_BUCKET": "legacy-bucket", "RETENTION_DAYS": "14", "BACKUP_DIR": "/var/backups"}
    )

    assert config.backup.bucket == "legacy-bucket"
    assert config.backup.retention_days == 14
    assert config.backup.local_retention_days == 14
    assert config.backup.local_dir == "/var/backups"
    # Everything else keeps its default.
    assert config.backup.min_keep == 7
    assert config.dr == StellarOpsConfig().dr


def test_empty_old_variables_are_ignored() -> None:
    assert config_from_env({"S3_BUCKET": "", "RETENTION_DAYS": "", "BACKUP_DIR": ""}) == StellarOpsConfig()


def test_inline_json_config() -> None:
    raw = json.dumps({"backup": {"min_keep": 3, "format": "plain"}, "dr": {"min_tables": 9}})

    config = config_from_env({"STELLAR_OPS_CONFIG": f"  {raw}\n"})

    assert config.backup.min_keep == 3
    assert config.backup.format == "plain"
    assert config.dr.min_tables == 9


def test_config_file_path(tmp_path: Path) -> None:
    path = tmp_path / "stellar_ops.json"
    path.write_text(json.dumps({"backup": {"bucket": "from-file", "retention_days": 45}}))

    config = config_from_env({"STELLAR_OPS_CONFIG": str(path)})

    assert config.backup.bucket == "from-file"
    assert config.backup.retention_days == 45


def test_old_variables_win_over_the_config(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"backup": {"bucket": "from-file", "retention_days": 45, "min_keep": 2}}))

    config = config_from_env(
        {"STELLAR_OPS_CONFIG": str(path), "S3_BUCKET": "from-env", "RETENTION_DAYS": "10"}
    )

    assert config.backup.bucket == "from-env"
    assert config.backup.retention_days == 10
    assert config.backup.min_keep == 2


def test_unreadable_config_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"

    with pytest.raises(ConfigError) as info:
        config_from_env({"STELLAR_OPS_CONFIG": str(missing)})

    assert (
        str(info.value)
        == f"STELLAR_OPS_CONFIG names {str(missing)!r}, which cannot be read: No such file or directory"
    )


def test_invalid_config_file_content_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text('{"backup": {"retentoin_days": 3}}')
    with pytest.raises(ConfigError, match=r"backup\.retentoin_days: unknown field"):
        config_from_env({"STELLAR_OPS_CONFIG": str(path)})


def test_invalid_inline_json_reports_position() -> None:
    with pytest.raises(ConfigError, match=r"not valid JSON \(line 1, column"):
        config_from_env({"STELLAR_OPS_CONFIG": '{"backup": }'})


@pytest.mark.parametrize("days", ["seven", "7d", "-1", "1.5", " 7"])
def test_non_numeric_retention_days(days: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_env({"RETENTION_DAYS": days})
    assert str(info.value) == f"RETENTION_DAYS must be a whole number of days, got {days!r}"


def test_zero_retention_days_fails_validation_naming_the_field() -> None:
    with pytest.raises(ConfigError, match=r"backup\.retention_days"):
        config_from_env({"RETENTION_DAYS": "0"})


def test_relative_backup_dir_fails_validation_naming_the_field() -> None:
    with pytest.raises(ConfigError, match=r"backup\.local_dir: must be an absolute path"):
        config_from_env({"BACKUP_DIR": "backups"})


def test_bad_bucket_from_the_environment_is_named() -> None:
    with pytest.raises(ConfigError, match=r"backup\.bucket"):
        config_from_env({"S3_BUCKET": "Not_A_Bucket"})


def test_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STELLAR_OPS_CONFIG", raising=False)
    monkeypatch.delenv("BACKUP_DIR", raising=False)
    monkeypatch.setenv("S3_BUCKET", "from-os-environ")
    monkeypatch.setenv("RETENTION_DAYS", "3")

    config = config_from_env()

    assert config.backup.bucket == "from-os-environ"
    assert config.backup.retention_days == 3


# -- db_target ------------------------------------------------------------------------------------


@pytest.mark.parametrize("env", [{}, {"DATABASE_URL": ""}])
def test_db_target_without_database_url(env: dict[str, str]) -> None:
    with pytest.raises(MissingConnectionError) as info:
        db_target(env)

    assert isinstance(info.value, ConfigError)
    assert str(info.value) == (
        "DATABASE_URL is not set: export DATABASE_URL=postgresql://user:password@host:5432/dbname"
    )


def test_db_target_from_database_url() -> None:
    target = db_target({"DATABASE_URL": "postgresql://stellar:pw@db:5433/stellar_escrow"})
    assert target.describe() == "stellar@db:5433/stellar_escrow"
    assert target.password == "pw"


def test_db_target_bad_url_names_database_url() -> None:
    with pytest.raises(ConfigError, match="^DATABASE_URL must be a postgresql:// URL"):
        db_target({"DATABASE_URL": "mysql://u@h/db"})


def test_db_target_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with pytest.raises(MissingConnectionError):
        db_target()
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@h/db")
    assert db_target().dbname == "db"


def test_optional() -> None:
    assert optional("X", {"X": "value"}) == "value"
    assert optional("X", {"X": ""}) is None
    assert optional("X", {}) is None
