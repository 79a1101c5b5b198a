"""The CLI's environment file follows a rotation: the variables it defines, and a URL's login."""

from __future__ import annotations

import pytest

from stellar_ops.core.errors import ConfigError
from stellar_ops.rotation.cli_env import CliEnvironment
from stellar_ops.rotation.config import RotationConfig
from stellar_ops.rotation.credentials import Credential
from stellar_ops.rotation.secret_store import secret_envs

OLD = Credential("stellar", "old-pass")
NEW = Credential("stellar_blue", "n3w/p@ss:word")


@pytest.fixture
def env_file(tmp_path):
    path = tmp_path / "env"
    path.write_text(
        "# Written by `stellar-ops stack up`\n"
        "export DATABASE_URL='postgresql://stellar:old-pass@127.0.0.1:5432/stellar_escrow'\n"
        "export STELLAR_OPS_CONFIG='{\"a\": 1}'\n"
        "export AWS_ACCESS_KEY_ID=AKIAOLD\n"
        "export AWS_SECRET_ACCESS_KEY=old-secret\n"
    )
    path.chmod(0o600)
    return path


def cli_env(path) -> CliEnvironment:
    return CliEnvironment(path, secret_envs(RotationConfig()))


def test_a_url_only_file_holds_and_switches_the_url_s_login(env_file):
    env = cli_env(env_file)
    assert env.defines("POSTGRES_PASSWORD") and env.holds("POSTGRES_PASSWORD", OLD)
    assert not env.holds("POSTGRES_PASSWORD", NEW)
    assert env.switch("POSTGRES_PASSWORD", NEW) is True
    assert env.switch("POSTGRES_PASSWORD", NEW) is False, "a second switch has nothing to do"
    assert env.holds("POSTGRES_PASSWORD", NEW) and not env.holds("POSTGRES_PASSWORD", OLD)
    text = env_file.read_text()
    assert (
        "export DATABASE_URL='postgresql://stellar_blue:n3w%2Fp%40ss%3Aword@127.0.0.1:5432/stellar_escrow'"
        in text
    )
    assert "export STELLAR_OPS_CONFIG='{\"a\": 1}'" in text and "POSTGRES_PASSWORD" not in text
    assert oct(env_file.stat().st_mode & 0o777) == "0o600"


def test_variables_it_defines_are_switched_and_secrets_it_lacks_are_left_alone(env_file):
    env = cli_env(env_file)
    key = Credential("AKIANEW", "new-secret")
    assert env.holds("S3_CREDENTIALS", Credential("AKIAOLD", "old-secret"))
    assert env.switch("S3_CREDENTIALS", key) and env.holds("S3_CREDENTIALS", key)
    assert "export AWS_ACCESS_KEY_ID=AKIANEW" in env_file.read_text()
    before = env_file.read_text()
    assert not env.defines("GRAFANA_ADMIN_PASSWORD")
    assert env.switch("GRAFANA_ADMIN_PASSWORD", Credential("admin", "x" * 20)) is False
    assert env_file.read_text() == before


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="rotation.cli_env_file .*missing-env"):
        cli_env(tmp_path / "missing-env")
