"""Keys, the env-file key store, the ledger's arithmetic and the section's validation."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta

import pytest

from stellar_ops.core.errors import ConfigError
from stellar_ops.registry import parse_config
from stellar_ops.rotation import keys, ledger
from stellar_ops.rotation.keystore import EnvFileStore
from stellar_ops_dev.load import LoadGenerator


def test_keys_are_random_hex_of_the_configured_size_and_named_by_fingerprint():
    made = keys.generate(3, prefix="sk_live_", nbytes=32)
    assert len(set(made)) == 3
    for key in made:
        assert key.startswith("sk_live_") and len(key) == len("sk_live_") + 64
        int(key.removeprefix("sk_live_"), 16)
    assert keys.fingerprint("abc") == "ba7816bf"  # sha256("abc")
    with pytest.raises(ValueError, match="count"):
        keys.generate(0)


@pytest.mark.parametrize(
    ("month", "quarter"), [(1, "2026-Q1"), (3, "2026-Q1"), (4, "2026-Q2"), (9, "2026-Q3"), (12, "2026-Q4")]
)
def test_quarter(month, quarter):
    assert keys.quarter(datetime(2026, month, 15, tzinfo=UTC)) == quarter


@pytest.fixture
def env_file(tmp_path):
    path = tmp_path / "api.env"
    path.write_text(
        "# settings\nDATABASE_URL=postgresql://x@y/z\nAPI_KEYS=a,b\nexport ADMIN_KEYS='c'\nLOG=1\n"
    )
    return path


def test_env_file_store_keeps_other_lines_writes_0600_and_keeps_the_previous_file(env_file):
    store = EnvFileStore(env_file)
    assert store.state("API_KEYS").served == ("a", "b")
    assert store.state("ADMIN_KEYS").served == ("c",)
    before = env_file.read_text()
    store.stage_pending("API_KEYS", ["n1", "n2"], "API_KEYS-2026-Q4")
    assert env_file.read_text() == before, "staging writes only the rotation state"
    state = store.state("API_KEYS")
    assert (
        state.pending == ("n1", "n2")
        and state.outgoing == ("a", "b")
        and state.rotation_id == "API_KEYS-2026-Q4"
    )
    store.serve("API_KEYS", ["a", "b", "n1", "n2"])
    text = env_file.read_text()
    assert "API_KEYS=a,b,n1,n2" in text and "DATABASE_URL=postgresql://x@y/z" in text and "LOG=1" in text
    assert text.index("DATABASE_URL") < text.index("API_KEYS") < text.index("LOG=1"), "lines keep their order"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.state_path.stat().st_mode) == 0o600
    assert (env_file.parent / "api.env.previous").read_text() == before
    assert not list(env_file.parent.glob(".api.env.*.tmp")), "no temporary file is left"
    store.serve("API_KEYS", ["n1", "n2"])
    store.finish("API_KEYS")
    done = store.state("API_KEYS")
    assert done.served == ("n1", "n2") and done.pending is None and done.previous == ("a", "b")
    assert store.admin_key() == "c"


def test_env_file_store_discard_leaves_what_is_served(env_file):
    store = EnvFileStore(env_file)
    store.stage_pending("API_KEYS", ["n1"], "r1")
    store.discard_pending("API_KEYS")
    state = store.state("API_KEYS")
    assert state.pending is None and state.outgoing is None and state.served == ("a", "b")


def test_env_file_store_names_a_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="rotation.env_file"):
        EnvFileStore(tmp_path / "nope.env")


def test_ledger_overdue_by_period_and_never_recorded():
    now = datetime(2026, 12, 1, tzinfo=UTC)
    document = {
        "secrets": {
            "API_KEYS": {"rotated_at": (now - timedelta(days=10)).isoformat()},
            "ADMIN_KEYS": {"rotated_at": (now - timedelta(days=93)).isoformat()},
            "POSTGRES_PASSWORD": {"rotated_at": (now - timedelta(days=300)).isoformat()},
        }
    }
    config = parse_config(
        {"rotation": {"periods_days": {**parse_config(None).rotation.periods_days, "S3_CREDENTIALS": 30}}}
    )
    found = {
        o.secret: o
        for o in ledger.overdue(document, config.rotation.periods_days, config.rotation.procedures, now)
    }
    assert set(found) == {"ADMIN_KEYS", "REDIS_PASSWORD", "GRAFANA_ADMIN_PASSWORD", "S3_CREDENTIALS"}
    assert "93 days ago" in found["ADMIN_KEYS"].describe(now)
    assert "api_key_rotation" in found["ADMIN_KEYS"].describe(now)
    assert "has no recorded rotation" in found["REDIS_PASSWORD"].describe(now)
    assert "secret_rotation with secret REDIS_PASSWORD" in found["REDIS_PASSWORD"].procedure


def test_the_section_names_bad_fields():
    with pytest.raises(ConfigError, match="rotation.key_store"):
        parse_config({"rotation": {"key_store": "vault"}})
    with pytest.raises(ConfigError, match="rotation.probe_paths.*ADMIN_KEYS"):
        parse_config({"rotation": {"probe_paths": {"API_KEYS": "/health"}}})
    with pytest.raises(ConfigError, match="rotation.periods_days.*API_KEYS"):
        parse_config({"rotation": {"periods_days": {"API_KEYS": 0}}})


def test_the_load_generator_stays_on_loopback_and_bounded():
    with pytest.raises(ValueError, match="loopback"):
        LoadGenerator("http://example.com", [])
    with pytest.raises(ValueError, match="rate_per_second"):
        LoadGenerator("http://127.0.0.1:1", [], rate_per_second=10_000)


def test_the_audit_digest_names_every_overdue_secret_at_the_highest_severity() -> None:
    from dataclasses import replace

    from stellar_ops.core.alerts import finding_message, markdown_leftovers
    from stellar_ops.core.config import AlertsConfig
    from stellar_ops.rotation.flow import overdue_digest

    now = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
    found = [
        ledger.Overdue("API_KEYS", now - timedelta(days=100), now - timedelta(days=8), 92, "rotate API"),
        ledger.Overdue("REDIS_PASSWORD", None, None, 365, "set requirepass"),
        ledger.Overdue(
            "S3_CREDENTIALS",
            now - timedelta(days=181, hours=5),
            now - timedelta(days=1, hours=5),
            180,
            "new key",
        ),
    ]
    digest = overdue_digest(found, now)
    assert (
        digest.severity == "P3"
        and digest.alert_name == "SecretRotationOverdue"
        and digest.runbook == "SEC-3.3"
    )
    assert digest.summary == "3 secrets overdue for rotation: API_KEYS, REDIS_PASSWORD, S3_CREDENTIALS"
    assert digest.details == (
        "API_KEYS was last rotated 2026-08-29 (100 days ago, overdue by 8 days); its period is 92 days. "
        "Rotate it: rotate API",
        "REDIS_PASSWORD has no recorded rotation; its period is 365 days. Rotate it: set requirepass",
        "S3_CREDENTIALS was last rotated 2026-06-09 (181 days 5 h ago, overdue by 1 day 5 h); its period is "
        "180 days. Rotate it: new key",
    )
    text = finding_message(digest, AlertsConfig())["text"]
    assert text.count("• ") == 3 and markdown_leftovers(text) == []
    assert overdue_digest([found[0], replace(found[1], severity="P2")], now).severity == "P2"
    assert overdue_digest(found[:1], now).summary == "1 secret overdue for rotation: API_KEYS"
