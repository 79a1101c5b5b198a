"""Every procedure against a PostgreSQL that takes only verified TLS with client certificates.

One server for the module: ``ssl=on`` with a certificate for ``127.0.0.1`` from a local CA,
``hostssl ... cert`` in pg_hba.conf (the client certificate's CN is the user), and a small demo
dataset. The Airflow connection carries ``sslmode=verify-full``, ``sslrootcert``, ``sslcert`` and an
encrypted ``sslkey`` with its ``sslpassword`` (which reaches pg_dump and pg_restore only through a
service file); ``stellar-ops backup`` gets the same through ``DATABASE_URL``'s query string. The
server logs every statement with its session's ``application_name``, so each procedure's sessions,
the client programs' included, are seen naming the procedure and the run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from stellar_ops.core.errors import ConfigError
from stellar_ops.core.processes import chown_tree, unprivileged_user
from stellar_ops.postgres.server import LocalPgServer
from stellar_ops.postgres.target import PgTarget, connect, session_name
from stellar_ops.registry import parse_config
from stellar_ops_dev import demo_data
from stellar_ops_dev.certs import LocalCA
from tests.support.dagrun import run_dag
from tests.support.fixtures import reachable_dir

pytestmark = pytest.mark.integration

CLI = str(Path(sys.executable).parent / "stellar-ops")
USER = "stellar"
DB = "stellar_escrow"
KEY_PASSWORD = "key pass: not in argv"
PREFIX = "t/tls-db/"
RESTORED = "restored_over_tls"


@dataclass
class TlsDb:
    server: LocalPgServer
    ca: Path
    wrong_ca: Path
    cert: Path
    key: Path
    encrypted_key: Path

    @property
    def port(self) -> int:
        return self.server.port

    def extras(self, *, encrypted: bool = True, **changes: Any) -> dict[str, Any]:
        extras: dict[str, Any] = {
            "sslmode": "verify-full",
            "sslrootcert": str(self.ca),
            "sslcert": str(self.cert),
            "sslkey": str(self.encrypted_key if encrypted else self.key),
            "keepalives_idle": 30,  # no environment variable: a service file setting, as sslpassword
            "cursor": "dictcursor",  # PostgresHook's own: dropped, as the hook drops it
        }
        if encrypted:
            extras["sslpassword"] = KEY_PASSWORD
        extras.update(changes)
        return {k: v for k, v in extras.items() if v is not None}

    def connection(self, dbname: str = DB, host: str = "127.0.0.1", **changes: Any) -> str:
        return json.dumps(
            {
                "conn_type": "postgres",
                "host": host,
                "port": self.port,
                "login": USER,
                "schema": dbname,
                "extra": self.extras(**changes),
            }
        )

    def target(self, dbname: str = DB, host: str = "127.0.0.1", **changes: Any) -> PgTarget:
        from stellar_ops.postgres.target import libpq_settings

        return PgTarget.build(
            host=host,
            port=self.port,
            user=USER,
            dbname=dbname,
            settings=libpq_settings(self.extras(**changes), source="test"),
        )

    def url(self, host: str = "127.0.0.1") -> str:
        return (
            f"postgresql://{USER}@{host}:{self.port}/{DB}?sslmode=verify-full&sslrootcert={self.ca}"
            f"&sslcert={self.cert}&sslkey={self.key}"
        )

    def log(self) -> str:
        return self.server.log_path.read_text(errors="replace")


def _client_certificate(ca: LocalCA, user: str) -> tuple[bytes, Any]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, user)]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), key


def _write_private(path: Path, data: bytes) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return path


@pytest.fixture(scope="module")
def tls_db(stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsDb]:
    ca = LocalCA("stellar tls-db CA")
    client_dir = tmp_path_factory.mktemp("tls-db-client")
    ca_file = ca.write_bundle(client_dir / "ca.pem")
    wrong_ca = LocalCA("some other CA").write_bundle(client_dir / "wrong-ca.pem")
    cert_pem, key = _client_certificate(ca, USER)
    (client_dir / "client.crt").write_bytes(cert_pem)
    plain = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(KEY_PASSWORD.encode()),
    )
    with reachable_dir() as base:
        run_as = unprivileged_user("postgres")
        server_files = base / "tls"
        server_cert, server_key = ca.leaf("127.0.0.1", days=30).write(server_files, "server")
        ca.write_bundle(server_files / "ca.pem")
        server_files.chmod(0o755)
        server = LocalPgServer(
            base / "pg",
            run_as=run_as,
            settings={
                "ssl": "on",
                "ssl_cert_file": f"'{server_cert}'",
                "ssl_key_file": f"'{server_key}'",
                "ssl_ca_file": f"'{server_files / 'ca.pem'}'",
                "shared_preload_libraries": "'pg_stat_statements'",
                "log_statement": "'all'",
                "log_connections": "on",
                "log_line_prefix": "'%m [%p] app=%a: '",
                "fsync": "off",
            },
        )
        server.init()
        chown_tree(server_files, run_as)
        # the superuser (the fixture's own setup) logs in with its password over TLS; every
        # other role only with a client certificate whose CN is its name
        (server.data_dir / "pg_hba.conf").write_text(
            "hostssl all postgres 127.0.0.1/32 scram-sha-256\nhostssl all all 127.0.0.1/32 cert\n"
        )
        server.start()
        try:
            server.psql(f"CREATE ROLE {USER} LOGIN SUPERUSER")
            server.psql(f"CREATE DATABASE {DB} OWNER {USER}")
            for database in ("template1", DB):
                server.psql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements", database)
            db = TlsDb(
                server=server,
                ca=ca_file,
                wrong_ca=wrong_ca,
                cert=client_dir / "client.crt",
                key=_write_private(client_dir / "client.key", plain),
                encrypted_key=_write_private(client_dir / "client.enc.key", encrypted),
            )
            demo_data.generate(db.target(), trades=2000)
            server.psql("SELECT pg_stat_statements_reset()", DB)  # the load's own statements are no workload
            yield db
        finally:
            server.remove()


@pytest.fixture(scope="module")
def tls_ops(stack, airflow_db, tls_db: TlsDb) -> Iterator[dict[str, Any]]:
    """Airflow's and the CLI's config and connections pointed at the TLS server, for the module."""
    document = {
        "backup": {"bucket": "stellar-backups", "prefix": PREFIX, "local_dir": None},
        "dr": {"work_dir": str(Path(stack.data_dir) / "scratch"), "pitr_rehearsal": "off"},
        "perf": {"report_prefix": PREFIX},
        "maintenance": {"tables": ["public.trades"]},
    }
    text = json.dumps(document)
    parse_config(text)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW_VAR_STELLAR_OPS_CONFIG", text)
        patch.setenv("STELLAR_OPS_CONFIG", text)
        patch.setenv("AIRFLOW_CONN_STELLAR_DB", tls_db.connection())
        patch.setenv("AIRFLOW_CONN_TLS_RESTORE", tls_db.connection("postgres", encrypted=False))
        patch.setenv("DATABASE_URL", tls_db.url())
        yield document


class SecretWatch:
    """Samples this process's children (pg_dump, pg_restore...) while running: their argv and
    the environment we give them must never hold ``secret``."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.programs: set[str] = set()
        self.seen: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            for child in me.children(recursive=True):
                try:
                    # AIRFLOW_CONN_*: the test's own way of defining the connection, inherited
                    environ = {k: v for k, v in child.environ().items() if not k.startswith("AIRFLOW_CONN_")}
                    texts = [*child.cmdline(), *environ.values()]
                    name = child.name()
                except psutil.Error:
                    continue
                self.programs.add(name)
                if any(self.secret in text for text in texts):
                    self.seen.append(name)
            time.sleep(0.01)

    def __enter__(self) -> SecretWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture(scope="module")
def backup(tls_ops) -> dict[str, Any]:
    """One db_backup run, shared by the module's tests."""
    slot = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    with SecretWatch(KEY_PASSWORD) as watch:
        outcome = run_dag("db_backup", logical_date=slot)
    assert outcome.state == "success", outcome.tasks
    return {"key": outcome.xcom("publish_backup")["key"], "run_id": outcome.run_id, "watch": watch}


def _statements_of(log: str, application_name: str) -> list[str]:
    marker = f"app={application_name}: "
    return [line.split(marker, 1)[1] for line in log.splitlines() if marker in line]


def test_db_backup_over_verified_tls_names_its_run_in_every_session(tls_db, backup):
    name = session_name(None, "db_backup", backup["run_id"])
    assert name.startswith("stellar-ops/db_backup/") and len(name.encode()) <= 63
    statements = _statements_of(tls_db.log(), name)
    assert any("pg_export_snapshot" in s for s in statements), "the psycopg session"
    # pg_dump's own session, reading the exported snapshot: its settings came from the
    # environment and the service file (sslpassword, keepalives_idle)
    assert any("SET TRANSACTION SNAPSHOT" in s for s in statements), "pg_dump's session"
    assert any(re.search(r"COPY public\.trades .* TO stdout", s) for s in statements)
    assert KEY_PASSWORD not in tls_db.log()
    watch = backup["watch"]
    assert watch.programs, "no client program was seen"
    assert watch.seen == [], "sslpassword was in a client program's argv or environment"


def test_dr_restore_test_over_verified_tls(tls_db, tls_ops, backup):
    outcome = run_dag("dr_restore_test", conf={"backup": backup["key"]})
    assert outcome.state == "success", outcome.tasks
    assert outcome.xcom("verify_row_counts")["passed"] is True
    assert outcome.xcom("resolve_backup")["location"] == backup["key"]


def test_db_restore_into_a_tls_target(tls_db, tls_ops, backup, monkeypatch):
    from airflow.sdk.exceptions import AirflowSkipException

    from stellar_ops.adapters.common.approvals import Approval

    # Approvals block under dag.test() (AIRFLOW_NOTES trap 5): here a lead approves at once.
    def approved(self: Any, context: Any) -> Any:
        if self.ask_only_if and not context["params"].get(self.ask_only_if):
            raise AirflowSkipException("not asked")
        return {"chosen_options": ["Approve"], "params_input": {}}

    monkeypatch.setattr(Approval, "execute", approved)
    outcome = run_dag(
        "db_restore",
        conf={"backup": backup["key"], "target_conn_id": "tls_restore", "target_database": RESTORED},
    )
    assert outcome.state == "success", outcome.tasks
    assert outcome.tasks["restore_backup"] == "success"
    name = session_name(None, "db_restore", outcome.run_id)
    statements = _statements_of(tls_db.log(), name)
    # pg_restore creates the tables: the client program's session names the run too
    assert any("CREATE TABLE public.trades" in s for s in statements), "pg_restore's session"
    with connect(tls_db.target(RESTORED, encrypted=False)) as conn:
        assert conn.execute("SELECT count(*) FROM public.trades").fetchone()[0] > 0


def test_perf_analysis_and_db_maintenance_over_verified_tls(tls_db, tls_ops):
    perf = run_dag("perf_analysis", conf={"checks": ["cache_hit_ratio", "connections", "sequences"]})
    assert perf.state == "success", perf.tasks
    maintenance = run_dag("db_maintenance")
    assert maintenance.state == "success", maintenance.tasks
    log = tls_db.log()
    for outcome in (perf, maintenance):
        assert _statements_of(log, session_name(None, outcome.dag_id, outcome.run_id)), outcome.dag_id
    assert any(
        "VACUUM" in s for s in _statements_of(log, session_name(None, "db_maintenance", maintenance.run_id))
    )


def test_morning_health_check_over_verified_tls(tls_db, tls_ops, backup):
    outcome = run_dag("morning_health_check")
    services = outcome.xcom("check_services")
    assert "postgres" in json.dumps(services)
    assert outcome.state == "success", (outcome.tasks, services)


def test_stellar_ops_backup_through_database_url_with_tls_settings(tls_db, tls_ops):
    result = subprocess.run(
        [CLI, "backup", "--force"], capture_output=True, text=True, env=dict(os.environ), timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout)["key"].startswith(PREFIX)
    log = tls_db.log()
    assert re.search(r"app=stellar-ops/db_backup/cli-\d+: .*SET TRANSACTION SNAPSHOT", log), "pg_dump's"


def test_a_wrong_ca_fails_at_once_naming_sslrootcert(tls_db, tls_ops, monkeypatch):
    with (
        pytest.raises(ConfigError, match=r"sslrootcert=.*wrong-ca\.pem") as info,
        connect(tls_db.target(sslrootcert=str(tls_db.wrong_ca))),
    ):
        pass
    assert KEY_PASSWORD not in str(info.value)

    monkeypatch.setenv("AIRFLOW_CONN_STELLAR_DB", tls_db.connection(sslrootcert=str(tls_db.wrong_ca)))
    outcome = run_dag("db_maintenance")
    assert outcome.state == "failed"
    failed = [t for t, s in outcome.tasks.items() if s == "failed"]
    assert failed and all(outcome.tries[t] == 1 for t in failed), (outcome.tasks, outcome.tries)


def test_a_host_the_certificate_does_not_name_fails_at_once_naming_it(tls_db, tls_ops):
    with (
        pytest.raises(ConfigError, match=r"'localhost'.*sslmode=verify-full"),
        connect(tls_db.target(host="localhost")),
    ):
        pass
    env = {**os.environ, "DATABASE_URL": tls_db.url(host="localhost")}
    result = subprocess.run([CLI, "backup", "--force"], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 2
    assert "'localhost'" in result.stderr and "sslmode=verify-full" in result.stderr


def test_a_missing_certificate_file_is_named_with_its_path(tls_db):
    missing = str(tls_db.cert) + ".gone"
    with (
        pytest.raises(ConfigError, match=rf"sslcert={re.escape(missing)} does not exist"),
        connect(tls_db.target(sslcert=missing)),
    ):
        pass
    with (
        pytest.raises(ConfigError, match=r"sslkey=.*cannot be decrypted: check sslpassword"),
        connect(tls_db.target(sslpassword="not the password")),
    ):
        pass
