"""``stellar-ops secrets status`` and the stuck-rotation alert against the stack's S3: progress
records and the ledger in the bucket, the credentials in an .env file or in Secrets Manager (moto)."""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from stellar_ops.core.alerts import markdown_leftovers
from stellar_ops.registry import parse_config
from stellar_ops.rotation import ledger, progress
from stellar_ops.rotation.credentials import Credential
from stellar_ops.rotation.keys import fingerprint, fingerprints
from stellar_ops.rotation.keystore import EnvFileStore
from stellar_ops.rotation.secret_store import EnvSecretStore, SecretsManagerSecretStore, secret_envs
from tests.integration.rotation.conftest import cli
from tests.support.dagrun import run_dag
from tests.support.rotation_servers import running_moto, secrets_client

pytestmark = pytest.mark.integration

ENVS = secret_envs(parse_config(None).rotation)
TABLE = [
    "POSTGRES_PASSWORD",
    "REDIS_PASSWORD",
    "API_KEYS",
    "ADMIN_KEYS",
    "GRAFANA_ADMIN_PASSWORD",
    "S3_CREDENTIALS",
]

PG_OLD = Credential("stellar_blue", "pg-old-secret")
PG_NEW = Credential("stellar_green", "pg-new-secret")
REDIS_OLD = Credential("stellar", "redis-old-secret")
REDIS_NEW = Credential("stellar", "redis-new-secret")
GRAFANA_OLD = Credential("admin", "grafana-old-secret")
GRAFANA_NEW = Credential("admin", "grafana-new-secret")
EVERY_SECRET = [c.secret for c in (PG_OLD, PG_NEW, REDIS_OLD, REDIS_NEW, GRAFANA_OLD, GRAFANA_NEW)] + [
    "sk_live_one",
    "sk_live_two",
    "sk_live_three",
    "sk_admin_one",
]


def record(
    secret: str,
    *,
    phase: str,
    phase_at: datetime,
    window: timedelta = timedelta(hours=1),
    new: Credential | None = None,
    old: Credential | None = None,
) -> progress.Progress:
    started = phase_at - window - timedelta(hours=1)
    return progress.Progress(
        secret=secret,
        rotation_id=f"{secret}-2026-12-01",
        run_id=f"scheduled__{secret.lower()}",
        reason="scheduled",
        by="oncall-lead",
        started_at=started.isoformat(),
        window_seconds=window.total_seconds(),
        phase=phase,
        phase_at=phase_at.isoformat(),
        new={"identity": new.identity, "fingerprint": new.fingerprint} if new else None,
        old={"identity": old.identity, "fingerprint": old.fingerprint} if old else None,
    )


@pytest.fixture
def secrets_ops(ops, tmp_path: Path):
    """The test's config: the ledger and the progress records under its prefix, an API .env of its own."""
    env_file = tmp_path / "api.env"
    env_file.write_text(
        "API_KEYS=sk_live_one,sk_live_two\nADMIN_KEYS=sk_admin_one\n"
        f"POSTGRES_USER={PG_OLD.identity}\nPOSTGRES_PASSWORD={PG_OLD.secret}\n"
        f"DATABASE_URL=postgresql://{PG_OLD.identity}:{PG_OLD.secret}@db:5432/stellar\n"
        f"REDIS_USER=stellar\nREDIS_PASSWORD={REDIS_OLD.secret}\nREDIS_URL=redis://stellar:{REDIS_OLD.secret}@cache:6379/0\n"
        f"GRAFANA_ADMIN_PASSWORD={GRAFANA_OLD.secret}\n"
    )
    env_file.chmod(0o600)
    ops.update(
        rotation={
            "env_file": str(env_file),
            "ledger_key": f"{ops.prefix}secrets-ledger.json",
            "secret_audit_prefix": f"{ops.prefix}secret-rotation/",
            "stuck_after_hours": 48,
        }
    )
    ops.env_file = env_file
    return ops


def save(ops, item: progress.Progress) -> None:
    progress.save(ops.store(), ops.config.rotation.secret_audit_prefix, item)


def rows_of(result) -> dict[str, dict]:
    assert result.returncode in (0, 1), result.stderr
    rows = json.loads(result.stdout)["secrets"]
    return {row["secret"]: row for row in rows}


def test_status_shows_every_secret_of_the_table_with_its_rotation_and_no_secret(secrets_ops):
    ops = secrets_ops
    now = datetime.now(UTC)
    store = EnvSecretStore(ops.env_file, ENVS)
    # POSTGRES_PASSWORD: switched five days ago, its removal never approved: stuck
    store.stage_pending("POSTGRES_PASSWORD", PG_NEW, "POSTGRES_PASSWORD-2026-12-01")
    store.switch("POSTGRES_PASSWORD")
    save(
        ops,
        record(
            "POSTGRES_PASSWORD", phase="switched", phase_at=now - timedelta(days=5), new=PG_NEW, old=PG_OLD
        ),
    )
    # REDIS_PASSWORD: generated an hour ago, waiting for its roll-out approval
    store.stage_pending("REDIS_PASSWORD", REDIS_NEW, "REDIS_PASSWORD-2026-12-01")
    save(ops, record("REDIS_PASSWORD", phase="generated", phase_at=now - timedelta(hours=1), new=REDIS_NEW))
    # GRAFANA_ADMIN_PASSWORD: one rotation finished, in the ledger
    store.stage_pending("GRAFANA_ADMIN_PASSWORD", GRAFANA_NEW, "GRAFANA_ADMIN_PASSWORD-2026-11-01")
    store.switch("GRAFANA_ADMIN_PASSWORD")
    store.finish("GRAFANA_ADMIN_PASSWORD")
    save(ops, record("GRAFANA_ADMIN_PASSWORD", phase="finished", phase_at=now - timedelta(days=30)))
    ledger.record(
        ops.store(),
        ops.config.rotation.ledger_key,
        "GRAFANA_ADMIN_PASSWORD",
        at=now - timedelta(days=30),
        by="oncall-lead",
        how="secret_rotation GRAFANA_ADMIN_PASSWORD-2026-11-01 (scheduled)",
    )
    # API_KEYS: an api_key_rotation that added its keys beside the old ones
    keys = EnvFileStore(ops.env_file)
    keys.stage_pending("API_KEYS", ["sk_live_three"], "API_KEYS-2026-Q4")
    keys.serve("API_KEYS", ["sk_live_one", "sk_live_two", "sk_live_three"])

    result = cli("secrets", "status", "--json")
    assert result.returncode == 0, result.stderr
    for secret in EVERY_SECRET:
        assert secret not in result.stdout and secret not in result.stderr
    assert [row["secret"] for row in json.loads(result.stdout)["secrets"]] == TABLE
    rows = rows_of(result)
    assert not any("error" in row for row in rows.values())

    pg = rows["POSTGRES_PASSWORD"]
    assert (pg["state"], pg["phase"], pg["store"], pg["stuck"]) == ("rotating", "switched", "env_file", True)
    assert pg["current"] == {"identity": "stellar_green", "fingerprint": PG_NEW.fingerprint}
    pending = pg["pending"]
    assert pending["identity"] == "stellar_green" and pending["fingerprint"] == PG_NEW.fingerprint
    assert pending["rotation_id"] == "POSTGRES_PASSWORD-2026-12-01"
    assert pending["by"] == "oncall-lead" and pending["run_id"] == "scheduled__postgres_password"
    assert pending["phase"] == "switched"
    assert datetime.fromisoformat(pending["since"]) < now - timedelta(days=5)
    assert pg["previous"] is None and pg["last_rotation"] is None and pg["overdue"] is True

    redis = rows["REDIS_PASSWORD"]
    assert (redis["state"], redis["phase"], redis["stuck"]) == ("rotating", "generated", False)
    assert redis["current"] == {"identity": "stellar", "fingerprint": REDIS_OLD.fingerprint}
    assert (
        redis["pending"]["fingerprint"] == REDIS_NEW.fingerprint and redis["pending"]["removal_due"] is None
    )

    grafana = rows["GRAFANA_ADMIN_PASSWORD"]
    assert (grafana["state"], grafana["phase"], grafana["pending"]) == ("current", None, None)
    assert grafana["current"] == {"identity": "admin", "fingerprint": GRAFANA_NEW.fingerprint}
    assert grafana["previous"] == {"identity": "admin", "fingerprint": GRAFANA_OLD.fingerprint}
    assert grafana["last_rotation"]["by"] == "oncall-lead" and grafana["overdue"] is False
    assert grafana["last_rotation"]["how"].startswith("secret_rotation GRAFANA_ADMIN_PASSWORD-2026-11-01")
    assert datetime.fromisoformat(grafana["due"]) > now

    s3 = rows["S3_CREDENTIALS"]
    assert (s3["state"], s3["current"], s3["pending"]) == ("current", None, None)

    api = rows["API_KEYS"]
    assert (api["state"], api["phase"]) == ("rotating", "added")
    assert api["current"] == {"fingerprints": fingerprints(["sk_live_one", "sk_live_two", "sk_live_three"])}
    assert api["pending"] == {
        "fingerprints": [fingerprint("sk_live_three")],
        "rotation_id": "API_KEYS-2026-Q4",
        "phase": "added",
    }
    admin = rows["ADMIN_KEYS"]
    assert (admin["state"], admin["current"]) == ("current", {"fingerprints": [fingerprint("sk_admin_one")]})

    text = cli("secrets", "status")
    assert text.returncode == 0, text.stderr
    blocks = {block.split(":")[0]: block for block in text.stdout.strip().split("\n\n")}
    assert list(blocks) == TABLE
    assert blocks["POSTGRES_PASSWORD"].startswith("POSTGRES_PASSWORD: rotating (switched)  [env_file]")
    assert f"current:  stellar_green ({PG_NEW.fingerprint})" in blocks["POSTGRES_PASSWORD"]
    assert "STUCK: waits for its removal approval" in blocks["POSTGRES_PASSWORD"]
    assert "run scheduled__postgres_password" in blocks["POSTGRES_PASSWORD"]
    assert "STUCK" not in blocks["REDIS_PASSWORD"]
    assert f"previous: admin ({GRAFANA_OLD.fingerprint})" in blocks["GRAFANA_ADMIN_PASSWORD"]
    assert "by oncall-lead" in blocks["GRAFANA_ADMIN_PASSWORD"]
    for secret in EVERY_SECRET:
        assert secret not in text.stdout


def test_what_cannot_be_read_is_named_in_its_row_and_the_rest_is_shown(secrets_ops, monkeypatch):
    ops = secrets_ops
    ops.store().put_json(f"{ops.config.rotation.secret_audit_prefix}REDIS_PASSWORD/progress.json", {"x": 1})
    monkeypatch.delenv("STELLAR_API_ENV_FILE", raising=False)
    ops.update(rotation={"env_file": None})
    assert cli("secrets", "record", "API_KEYS", "--by", "someone").returncode == 0

    result = cli("secrets", "status", "--json")
    assert result.returncode == 1, result.stderr
    rows = rows_of(result)
    assert list(rows) == TABLE
    for secret in TABLE:
        assert "STELLAR_API_ENV_FILE is not in the environment" in rows[secret]["error"], secret
    assert "is not a rotation progress record" in rows["REDIS_PASSWORD"]["error"]
    assert "progress" not in rows["POSTGRES_PASSWORD"]["error"]
    assert rows["API_KEYS"]["last_rotation"]["by"] == "someone", "the ledger is still shown"
    text = cli("secrets", "status")
    assert text.returncode == 1
    assert "error: the secret store cannot be read" in text.stdout


def test_status_reads_secrets_manager(secrets_ops, tmp_path, monkeypatch):
    ops = secrets_ops
    with running_moto(tmp_path) as url:
        sm = secrets_client(url, os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))  # the CLI's region
        prefix = "status-test/"
        sm.create_secret(Name=prefix + "API_KEYS", SecretString=json.dumps({"keys": ["sk_live_one"]}))
        sm.create_secret(Name=prefix + "ADMIN_KEYS", SecretString=json.dumps({"keys": ["sk_admin_one"]}))
        sm.create_secret(
            Name=prefix + "POSTGRES_PASSWORD",
            SecretString=json.dumps({"POSTGRES_USER": PG_OLD.identity, "POSTGRES_PASSWORD": PG_OLD.secret}),
        )
        sm.create_secret(
            Name=prefix + "REDIS_PASSWORD",
            SecretString=json.dumps({"REDIS_USER": "stellar", "REDIS_PASSWORD": REDIS_OLD.secret}),
        )
        sm.create_secret(
            Name=prefix + "GRAFANA_ADMIN_PASSWORD",
            SecretString=json.dumps({"GRAFANA_ADMIN_PASSWORD": GRAFANA_OLD.secret}),
        )
        store = SecretsManagerSecretStore(sm, prefix, ENVS)
        store.stage_pending("POSTGRES_PASSWORD", PG_NEW, "POSTGRES_PASSWORD-sm")
        store.switch("POSTGRES_PASSWORD")
        ops.update(rotation={"key_store": "aws_secrets_manager", "secret_prefix": prefix})
        # the CLI's boto3 reaches moto through the environment, as a deployment's would reach AWS
        monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", url)
        result = cli("secrets", "status", "--json")

    rows = rows_of(result)
    assert result.returncode == 1, "S3_CREDENTIALS has no secret in Secrets Manager"
    assert "status-test/S3_CREDENTIALS" in rows["S3_CREDENTIALS"]["error"]
    pg = rows["POSTGRES_PASSWORD"]
    assert pg["store"] == "aws_secrets_manager" and "error" not in pg
    assert pg["current"] == {"identity": PG_NEW.identity, "fingerprint": PG_NEW.fingerprint}
    assert pg["pending"]["rotation_id"] == "POSTGRES_PASSWORD-sm"
    assert pg["state"] == "rotating" and pg["phase"] is None, "no progress record says which phase"
    assert rows["GRAFANA_ADMIN_PASSWORD"]["current"] == {
        "identity": "admin",
        "fingerprint": GRAFANA_OLD.fingerprint,
    }
    assert rows["API_KEYS"]["current"] == {"fingerprints": [fingerprint("sk_live_one")]}
    for secret in EVERY_SECRET:
        assert secret not in result.stdout and secret not in result.stderr


# --- the stuck-rotation alert ------------------------------------------------------------------


def stuck_alerts(receiver) -> list[str]:
    return [text for text in receiver.texts() if "SecretRotationStuck" in text]


def test_a_rotation_waiting_too_long_for_its_removal_alerts_and_one_within_its_time_does_not(
    secrets_ops, receiver
):
    ops = secrets_ops
    now = datetime.now(UTC)
    window = timedelta(hours=24)
    # waiting since its window ended 3 days ago, over the 48 h allowed
    save(
        ops,
        record(
            "POSTGRES_PASSWORD",
            phase="switched",
            phase_at=now - window - timedelta(days=3),
            window=window,
            new=PG_NEW,
            old=PG_OLD,
        ),
    )
    # waiting since its window ended 47 hours ago: not yet
    save(
        ops,
        record(
            "REDIS_PASSWORD", phase="switched", phase_at=now - window - timedelta(hours=47), window=window
        ),
    )
    # long ago, but not waiting for its removal: at its roll-out approval, or over
    save(ops, record("GRAFANA_ADMIN_PASSWORD", phase="generated", phase_at=now - timedelta(days=30)))
    save(ops, record("S3_CREDENTIALS", phase="finished", phase_at=now - timedelta(days=30)))

    result = cli("secrets", "audit", "--json")
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert [item["secret"] for item in report["stuck"]] == ["POSTGRES_PASSWORD"]
    assert report["stuck"][0]["run_id"] == "scheduled__postgres_password"

    (alert,) = stuck_alerts(receiver)
    headline = alert.splitlines()[0]
    assert re.fullmatch(
        r":red_circle: \[P2\] SecretRotationStuck: POSTGRES_PASSWORD rotation POSTGRES_PASSWORD-2026-12-01 "
        r"has waited for its removal approval since \d{4}-\d\d-\d\d \d\d:\d\d UTC \(3 days( \d+ h)?\): "
        r"answer approve_removal of secret_rotation run scheduled__postgres_password",
        headline,
    ), headline
    assert (
        f"stellar_green ({PG_NEW.fingerprint})" in alert and f"stellar_blue ({PG_OLD.fingerprint})" in alert
    )
    assert "SEC-3.3" in alert and "started" in alert and "oncall-lead" in alert
    assert markdown_leftovers(alert) == []
    # the overdue digest is its own message, as before
    assert [t for t in receiver.texts() if "SecretRotationOverdue" in t]

    # two hours later, Redis is stuck too: one alert per secret
    receiver.clear()
    save(
        ops,
        record(
            "REDIS_PASSWORD", phase="switched", phase_at=now - window - timedelta(hours=49), window=window
        ),
    )
    assert cli("secrets", "audit").returncode == 1
    alerts = stuck_alerts(receiver)
    assert len(alerts) == 2
    assert sorted(a.split("SecretRotationStuck: ")[1].split()[0] for a in alerts) == [
        "POSTGRES_PASSWORD",
        "REDIS_PASSWORD",
    ]

    # answered: nothing stuck, nothing sent
    receiver.clear()
    for secret in ("POSTGRES_PASSWORD", "REDIS_PASSWORD"):
        save(ops, record(secret, phase="finished", phase_at=now))
    for secret in TABLE:
        assert cli("secrets", "record", secret).returncode == 0
    quiet = cli("secrets", "audit", "--json")
    assert quiet.returncode == 0, quiet.stderr
    assert json.loads(quiet.stdout)["stuck"] == [] and receiver.texts() == []


def test_an_unreadable_progress_record_fails_the_audit_after_alerting_the_others(secrets_ops, receiver):
    ops = secrets_ops
    now = datetime.now(UTC)
    save(ops, record("S3_CREDENTIALS", phase="switched", phase_at=now - timedelta(days=10)))
    ops.store().put_json(
        f"{ops.config.rotation.secret_audit_prefix}REDIS_PASSWORD/progress.json", ["not", "it"]
    )
    result = cli("secrets", "audit", "--json")
    assert result.returncode == 2
    assert "the rotation progress of REDIS_PASSWORD cannot be read" in result.stderr
    assert "is not a rotation progress record" in result.stderr
    (alert,) = stuck_alerts(receiver)
    assert "S3_CREDENTIALS rotation" in alert


def test_the_audit_dag_alerts_a_stuck_rotation(airflow_db, secrets_ops, receiver):
    ops = secrets_ops
    now = datetime.now(UTC)
    for secret in TABLE:
        assert cli("secrets", "record", secret).returncode == 0
    save(ops, record("GRAFANA_ADMIN_PASSWORD", phase="switched", phase_at=now - timedelta(days=4)))
    save(ops, record("REDIS_PASSWORD", phase="switched", phase_at=now - timedelta(hours=2)))
    outcome = run_dag("secrets_rotation_audit")
    assert outcome.state == "success", outcome.tasks
    assert outcome.xcom("audit_rotation_ledger")["overdue_count"] == 0
    (alert,) = [t for t in receiver.texts() if "SecretRotationStuck" in t]
    assert (
        "[P2] SecretRotationStuck: GRAFANA_ADMIN_PASSWORD rotation GRAFANA_ADMIN_PASSWORD-2026-12-01" in alert
    )
    assert "secret_rotation run scheduled__grafana_admin_password" in alert
    assert len(receiver.texts()) == 1, "nothing overdue: no digest"
