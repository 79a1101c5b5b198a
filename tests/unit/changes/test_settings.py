"""A config change: its validation, how it shows, and the env-file store's versions and exact revert."""

from __future__ import annotations

import stat

import pytest

from stellar_ops.changes.config import ChangesConfig
from stellar_ops.changes.settings import (
    EnvFileSettings,
    SettingsChange,
    SettingsError,
    describe,
    edit_env,
    open_store,
    parse_env,
)
from stellar_ops.core.errors import ConfigError
from stellar_ops.rotation.config import RotationConfig
from stellar_ops.rotation.keys import fingerprint

ORIGINAL = (
    b"# the API's settings\r\n"
    b"DATABASE_URL=postgresql://api:hunter2@db/escrow\r\n"
    b"API_KEYS=a,b\n"
    b"export LOG_LEVEL='info'\n"
    b"\n"
    b"INDEXER_LAG_SECONDS=2.5\n"
    b"INDEXER_LAG_SECONDS=3\n"
    b"FEATURE_X=on"
)


def change(set_=None, remove=(), reason="ticket OPS-1"):
    return SettingsChange(dict(set_ or {}), tuple(remove), reason)


@pytest.mark.parametrize(
    ("set_", "remove", "reason", "message"),
    [
        ({}, (), "why", "at least one"),
        ({"lower": "1"}, (), "why", "not a variable name"),
        ({"1ABC": "1"}, (), "why", "not a variable name"),
        ({"API_KEYS": "x"}, (), "why", "key rotation owns"),
        ({}, ("ADMIN_KEYS",), "why", "key rotation owns"),
        ({"A": "1"}, ("A",), "why", "both set and removed: A"),
        ({"A": "1\nB=2"}, (), "why", "line break"),
        ({"A": "1"}, (), "  ", "needs a reason"),
    ],
)
def test_a_change_is_refused_when(set_, remove, reason, message):
    with pytest.raises(SettingsError, match=message):
        SettingsChange(set_, remove, reason)


def test_a_change_keeps_its_values_out_of_repr_and_round_trips():
    made = SettingsChange.from_assignments(["DB_PASSWORD=s3cret", "MODE=a=b"], ["OLD", " "], "rotate")
    assert "s3cret" not in repr(made)
    assert made.set == {"DB_PASSWORD": "s3cret", "MODE": "a=b"} and made.remove == ("OLD",)
    assert SettingsChange.from_dict(made.as_dict()) == made
    with pytest.raises(SettingsError, match="'NOPE' is not NAME=value"):
        SettingsChange.from_assignments(["NOPE"], [], "x")


def test_describe_shows_secret_looking_values_only_by_fingerprint():
    before = {"DB_PASSWORD": "old-pw", "MODE": "a", "DATABASE_URL": "postgresql://u:pw@h/d", "GONE": "x"}
    made = change(
        {
            "DB_PASSWORD": "new-pw",
            "MODE": "b",
            "DATABASE_URL": "postgresql://u:pw2@h/d",
            "NEW": "1",
            "API_TOKEN": "t",
        },
        ["GONE", "ABSENT"],
    )
    lines = describe(made, before)
    text = "\n".join(lines)
    for secret in ("old-pw", "new-pw", "pw2", "u:pw@", "'t'"):
        assert secret not in text
    assert f"DB_PASSWORD: sha256:{fingerprint('old-pw')} -> sha256:{fingerprint('new-pw')}" in lines
    assert "MODE: 'a' -> 'b'" in lines
    assert "NEW: (unset) -> '1'" in lines
    assert "GONE: 'x' -> (removed)" in lines
    assert "ABSENT: (unset, nothing to remove)" in lines
    assert describe(change({"MODE": "a"}), before) == ["MODE: 'a' (unchanged)"]


def test_edit_env_rewrites_only_the_lines_of_the_changed_variables():
    text = ORIGINAL.decode()
    edited = edit_env(
        text, change({"INDEXER_LAG_SECONDS": "9", "LOG_LEVEL": "debug", "NEW": "1"}, ["FEATURE_X"])
    )
    assert edited == (
        "# the API's settings\r\n"
        "DATABASE_URL=postgresql://api:hunter2@db/escrow\r\n"
        "API_KEYS=a,b\n"
        "export LOG_LEVEL=debug\n"
        "\n"
        "INDEXER_LAG_SECONDS=9\n"
        "INDEXER_LAG_SECONDS=9\n"
        "NEW=1\n"
    )
    assert parse_env(edited)["INDEXER_LAG_SECONDS"] == "9"
    # appending after a last line without its newline ends that line first
    assert edit_env("A=1", change({"B": "2"})) == "A=1\nB=2\n"


@pytest.fixture
def env_file(tmp_path):
    path = tmp_path / "api.env"
    path.write_bytes(ORIGINAL)
    path.chmod(0o640)
    return path


def test_env_file_store_keeps_every_version_and_reverts_byte_for_byte(env_file):
    store = EnvFileSettings(env_file)
    assert store.read()["INDEXER_LAG_SECONDS"] == "3" and store.read()["LOG_LEVEL"] == "info"
    first = store.current_version()
    assert store.current_version() == first  # the same bytes are the same kept version

    second = store.write(change({"INDEXER_LAG_SECONDS": "7"}))
    third = store.write(change({"HEALTH_STATUS": "degraded"}, ["FEATURE_X"]))
    assert first < second < third  # ids sort by time
    assert store.versions() == [first, second, third]
    assert store.current_version() == third
    assert store.read()["HEALTH_STATUS"] == "degraded" and "FEATURE_X" not in store.read()
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o640  # the file's own mode is kept
    assert stat.S_IMODE(store.versions_dir.stat().st_mode) == 0o700
    for version in store.versions():
        assert stat.S_IMODE((store.versions_dir / version).stat().st_mode) == 0o600

    # a change already in place writes nothing new
    assert store.write(change({"HEALTH_STATUS": "degraded"})) == third
    assert len(store.versions()) == 3

    store.revert(second)
    assert store.read()["INDEXER_LAG_SECONDS"] == "7" and "HEALTH_STATUS" not in store.read()
    store.revert(first)
    assert env_file.read_bytes() == ORIGINAL
    assert store.current_version() == first
    store.revert(first)  # again: nothing to do
    assert env_file.read_bytes() == ORIGINAL


def test_env_file_store_refuses_unknown_or_altered_versions(env_file, tmp_path):
    store = EnvFileSettings(env_file)
    version = store.write(change({"A": "1"}))
    with pytest.raises(SettingsError, match="'nope' of .* is not kept"):
        store.revert("nope")
    with pytest.raises(SettingsError, match="is not kept"):
        store.revert("../api.env")
    (store.versions_dir / version).write_bytes(b"A=2\n")
    with pytest.raises(SettingsError, match="does not match its hash"):
        store.revert(version)
    with pytest.raises(ConfigError, match="changes.config_env_file .* is not a file"):
        EnvFileSettings(tmp_path / "missing.env")


def test_open_store_takes_the_rotation_env_file_by_default(env_file, tmp_path):
    rotation = RotationConfig()
    store = open_store(
        ChangesConfig(), rotation, secrets_client=lambda: None, env={"STELLAR_API_ENV_FILE": str(env_file)}
    )
    assert isinstance(store, EnvFileSettings) and store.path == env_file
    other = tmp_path / "other.env"
    other.write_text("A=1\n")
    named = open_store(
        ChangesConfig(config_env_file=str(other)), rotation, secrets_client=lambda: None, env={}
    )
    assert isinstance(named, EnvFileSettings) and named.path == other
    with pytest.raises(ConfigError, match="STELLAR_API_ENV_FILE"):
        open_store(ChangesConfig(), rotation, secrets_client=lambda: None, env={})


def test_a_revert_never_brings_back_keys_a_rotation_replaced(env_file):
    store = EnvFileSettings(env_file)
    before = store.current_version()
    store.write(change({"MODE": "x"}))
    env_file.write_bytes(env_file.read_bytes().replace(b"API_KEYS=a,b", b"API_KEYS=c,d"))
    with pytest.raises(SettingsError, match="API_KEYS in .* changed since version"):
        store.revert(before)
    assert b"API_KEYS=c,d" in env_file.read_bytes()
