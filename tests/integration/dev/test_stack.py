"""The local stack itself: every server answers, the API stand-in authenticates, data is realistic."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from stellar_ops.core.processes import pid_alive
from stellar_ops.postgres.target import connect

pytestmark = pytest.mark.integration

DEV_CLI = str(Path(sys.executable).parent / "stellar-dev")
REPO = Path(__file__).resolve().parents[3]


def test_every_server_answers_on_loopback(stack):
    for name, port in stack.ports.items():
        assert 1024 < port < 65536, name
    with connect(stack.db) as conn:
        assert conn.execute("SHOW listen_addresses").fetchone()[0] == "127.0.0.1"
        assert conn.execute("SELECT count(*) FROM pg_stat_statements").fetchone()[0] >= 0
    assert (
        stack.s3_client().head_bucket(Bucket="stellar-backups")["ResponseMetadata"]["HTTPStatusCode"] == 200
    )
    import redis

    client = redis.Redis(host="127.0.0.1", port=stack.ports["redis"])
    assert client.ping() is True
    assert "keyspace_hits" in client.info("stats")
    assert requests.get(stack.url("pushgateway") + "/-/ready", timeout=5).status_code == 200
    assert requests.get(stack.url("alertmanager") + "/-/ready", timeout=5).status_code == 200


def test_s3_rejects_unknown_credentials(stack):
    import boto3
    from botocore.exceptions import ClientError

    stranger = boto3.client(
        "s3",
        endpoint_url=stack.url("s3"),
        aws_access_key_id="nobody",
        aws_secret_access_key="x",
        region_name="us-east-1",
    )
    with pytest.raises(ClientError, match="InvalidAccessKeyId"):
        stranger.put_object(Bucket="stellar-backups", Key="intruder", Body=b"x")


def test_alertmanager_forwards_alerts_to_the_receiver(stack, receiver):
    alert = [
        {"labels": {"alertname": "StellarStackProbe", "severity": "P3"}, "annotations": {"summary": "probe"}}
    ]
    requests.post(stack.url("alertmanager") + "/api/v2/alerts", json=alert, timeout=5).raise_for_status()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        forwarded = [m for m in receiver.messages() if m["path"] == "/alertmanager"]
        if forwarded:
            break
        time.sleep(0.5)
    assert forwarded[0]["json"]["alerts"][0]["labels"]["alertname"] == "StellarStackProbe"
    listed = requests.get(stack.url("alertmanager") + "/api/v2/alerts", timeout=5).json()
    assert any(a["labels"]["alertname"] == "StellarStackProbe" for a in listed)


def test_the_receiver_can_be_told_to_fail(stack, receiver):
    requests.post(stack.url("receiver") + "/_fail", json={"status": 503, "count": 1}, timeout=5)
    assert requests.post(stack.webhook_url, json={"text": "a"}, timeout=5).status_code == 503
    assert requests.post(stack.webhook_url, json={"text": "b"}, timeout=5).status_code == 200
    assert receiver.texts() == ["a", "b"]


def test_the_api_stand_in_authenticates_every_request(stack):
    api = stack.url("api")
    assert requests.get(api + "/health", timeout=5).status_code == 401
    assert requests.get(api + "/health", headers={"X-API-Key": "wrong"}, timeout=5).status_code == 403
    health = requests.get(api + "/health", headers={"X-API-Key": stack.api_key}, timeout=5).json()
    assert health["status"] == "ok" and health["indexer_lag_seconds"] >= 0
    latency = requests.get(api + "/health/metrics", headers={"X-API-Key": stack.api_key}, timeout=5).json()[
        "latency"
    ]
    assert latency["requests"] >= 1 and latency["p99_ms"] >= latency["p50_ms"] >= 0
    headers = {"X-API-Key": stack.api_key}
    assert requests.post(api + "/api/metrics", data="{oops", headers=headers, timeout=5).status_code == 400
    assert (
        requests.post(api + "/api/metrics", json={"metrics": "no"}, headers=headers, timeout=5).status_code
        == 422
    )
    assert (
        requests.post(
            api + "/api/metrics", json={"metrics": [{"name": "x", "value": 1}]}, headers=headers, timeout=5
        ).status_code
        == 202
    )
    assert requests.get(api + "/api/metrics", headers=headers, timeout=5).status_code == 403, (
        "reading needs an admin key"
    )
    recorded = requests.get(api + "/api/metrics", headers={"X-API-Key": stack.admin_key}, timeout=5).json()[
        "metrics"
    ]
    assert recorded[-1]["payload"]["metrics"] == [{"name": "x", "value": 1}]


def health_status(stack, key: str) -> int:
    return requests.get(stack.url("api") + "/health", headers={"X-API-Key": key}, timeout=5).status_code


def test_the_api_stand_in_reads_rotated_keys_on_restart(stack_handle, stack):
    env_file = stack_handle.api_env_file
    original = env_file.read_text()
    try:
        env_file.write_text(f"API_KEYS=sk_live_rotated,{stack.api_key}\nADMIN_KEYS={stack.admin_key}\n")
        assert health_status(stack, "sk_live_rotated") == 403  # not before a restart
        stack_handle.restart_api()
        assert health_status(stack, "sk_live_rotated") == 200
        env_file.write_text(f"API_KEYS=sk_live_rotated\nADMIN_KEYS={stack.admin_key}\n")
        stack_handle.restart_api()
        assert health_status(stack, stack.api_key) == 403
    finally:
        env_file.write_text(original)
        stack_handle.restart_api()
    assert health_status(stack, stack.api_key) == 200


def test_demo_data_is_realistic(stack):
    with connect(stack.db) as conn:
        accounts = [r[0] for r in conn.execute("SELECT stellar_account FROM accounts LIMIT 200").fetchall()]
        assert all(re.fullmatch(r"G[A-Z2-7]{55}", a) for a in accounts)
        assert len(set(accounts)) == len(accounts)
        statuses = {r[0] for r in conn.execute("SELECT DISTINCT status FROM escrows").fetchall()}
        assert {"funded", "released", "disputed"} <= statuses
        assert conn.execute(
            "SELECT count(DISTINCT amount) > 1000, min(amount) > 0 FROM escrows"
        ).fetchone() == (True, True)
        payload = conn.execute("SELECT payload FROM events LIMIT 1").fetchone()[0]
        assert {"escrow", "amount", "asset", "memo", "signatures"} <= set(payload)
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM trades), (SELECT count(*) FROM events)"
        ).fetchone()
        assert counts[0] >= 30000 and counts[1] == 2 * counts[0]
        indexes = {
            r[0]
            for r in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'trades'").fetchall()
        }
        assert {"trades_pkey", "trades_escrow_idx", "trades_created_idx"} <= indexes


def test_demo_data_does_not_compress_trivially(stack):
    dump = subprocess.run(
        ["pg_dump", "--format=plain", "--table=events"],
        capture_output=True,
        env=stack.db.client_env(),
        check=True,
    ).stdout
    import zstandard

    ratio = len(dump) / len(zstandard.ZstdCompressor(level=3).compress(dump))
    assert 1.5 < ratio < 6, f"compression ratio {ratio:.1f}"


def test_make_stack_path_starts_writes_exports_and_stops(tmp_path):
    state = tmp_path / "stack"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN", "AIRFLOW_VAR"))}
    up = subprocess.run(
        [
            DEV_CLI,
            "stack",
            "up",
            "--state-dir",
            str(state),
            "--demo-rows",
            "300",
            "--dags-folder",
            str(REPO / "dags"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert up.returncode == 0, up.stderr
    try:
        exports = (state / "env").read_text()
        assert oct((state / "env").stat().st_mode & 0o777) == "0o600"
        values = dict(re.findall(r"^export (\w+)='(.*)'$", exports, re.MULTILINE))
        for name in (
            "AIRFLOW_CONN_STELLAR_DB",
            "AIRFLOW_CONN_STELLAR_S3",
            "AIRFLOW_VAR_STELLAR_OPS_CONFIG",
            "DATABASE_URL",
            "S3_BUCKET",
        ):
            assert name in values, name
        assert json.loads(values["AIRFLOW_CONN_STELLAR_DB"])["schema"] == "stellar_escrow"
        assert values["AIRFLOW__CORE__DAGS_FOLDER"] == str(REPO / "dags")
        # the README's promise: `source .stack/env && .venv/bin/airflow dags test db_maintenance`
        dags_test = subprocess.run(
            [
                "bash",
                "-c",
                f"source {state / 'env'} && airflow db migrate > /dev/null && timeout -s INT 300 airflow dags test db_maintenance",
            ],
            capture_output=True,
            text=True,
            env={**env, "PATH": f"{Path(sys.executable).parent}:{env['PATH']}"},
            timeout=400,
        )
        assert dags_test.returncode == 0, dags_test.stderr[-2000:]
        assert "state=success" in dags_test.stdout + dags_test.stderr
        size = subprocess.run(
            [DEV_CLI, "demo-data", "--size", "40MB"],
            capture_output=True,
            text=True,
            env={**env, "DATABASE_URL": values["DATABASE_URL"]},
            timeout=300,
        )
        assert size.returncode == 0, size.stderr
        assert json.loads(size.stdout)["database_bytes"] >= 40 << 20
        again = subprocess.run(
            [DEV_CLI, "stack", "up", "--state-dir", str(state)],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert again.returncode == 2 and "already running" in again.stderr
        pids = json.loads((state / "state.json").read_text())["pids"]
        assert set(pids) == {
            "postgres",
            "seaweedfs",
            "redis",
            "pushgateway",
            "alertmanager",
            "receiver",
            "api",
            "grafana",
            "canary",
            "acme-challtestsrv",
            "acme-pebble",
            "acme-nginx",
        }
    finally:
        down = subprocess.run(
            [DEV_CLI, "stack", "down", "--state-dir", str(state)],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
    assert down.returncode == 0, down.stderr
    assert not any(pid_alive(pid) for pid in pids.values())
    assert not (state / "state.json").exists()
