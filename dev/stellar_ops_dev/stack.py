"""The local stack: real servers on 127.0.0.1 for ``make run``, ``make stack`` and the tests.

- PostgreSQL 15 (initdb, ``pg_stat_statements`` preloaded) holding the demo StellarEscrow DB,
  archiving its WAL continuously to the S3 server with barman-cloud (``s3://<bucket>/pitr/stellar/``,
  :func:`wal_archiver`); a stack whose archiving does not work does not start;
  ``track_commit_timestamp`` is on, and a canary writer (``stellar-ops pitr canary``) commits a row
  into ``stellar_ops_canary`` every few seconds, against which a point-in-time recovery is checked;
- SeaweedFS as the S3 server, with the backups bucket created;
- Redis, Prometheus Pushgateway and Alertmanager from the Debian packages; Redis keeps its ACL in
  an ``aclfile`` (``ACL SAVE`` persists a rotated password) with the application's user
  ``stellar`` and an admin user ``stellar_admin`` that may only change passwords (the ``default``
  user stays passwordless, for Celery's broker and quick probes);
- the API stand-in (:mod:`stellar_ops_dev.api_stub`), whose env file is the key store of every
  secret ``secret_rotation`` rotates (the API keys, the database and Redis logins, Grafana's admin
  password);
- a stand-in for Grafana's admin API (:mod:`stellar_ops_dev.grafana_stub`), with the stack's
  admin password;
- a webhook receiver (:mod:`stellar_ops_dev.receiver`) standing in for Slack;
- nginx serving HTTPS for ``escrow.test`` on a loopback port, with a certificate issued by a local
  ACME server (pebble), renewable through certbot (:mod:`stellar_ops_dev.acme`).

Each server runs in its own session with its data in a temporary directory and its log under
``<state_dir>/logs`` (the previous start's in ``logs.previous``); ``state.json`` records each pid as
soon as the process exists, so ``stellar-dev stack down`` (or another process) stops exactly what
was started, even after an interrupted start. Every start is a new stack: new data, new
credentials, new logs; nothing of an earlier start is reused.

Ports come from one :class:`~stellar_ops_dev.servers.PortPicker` per start, which never hands out
a fixed port of ``make run`` (:data:`PREFERRED_PORTS`) as another server's, and a server is ready
only when it answers its own protocol on its port (:func:`~stellar_ops_dev.servers.start_server`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from stellar_ops.core.errors import StellarOpsError
from stellar_ops.core.http import RedisTarget
from stellar_ops.core.processes import ManagedProcess, pid_alive, stop_pid, unprivileged_user
from stellar_ops.pitr.canary import TABLE as CANARY_TABLE
from stellar_ops.postgres.pitr import barman_archive_command, conf_string
from stellar_ops.postgres.server import LocalPgServer, read_postmaster_pid
from stellar_ops.postgres.target import PgTarget
from stellar_ops_dev import demo_data, receiver
from stellar_ops_dev.acme import AcmeLab
from stellar_ops_dev.servers import (
    PortPicker,
    http_answers,
    redis_answers,
    signals_deferred,
    start_server,
)

log = logging.getLogger(__name__)

BUCKET = "stellar-backups"
DB_NAME = "stellar_escrow"
DB_USER = "stellar"
# the restore role (db_restore's default target connection): it may create databases and roles,
# and is no superuser, as a managed PostgreSQL's admin role is not
RESTORE_USER = "stellar_restore"
# Redis ACL users: the application's (whose password secret_rotation rotates) and the one a
# rotation logs in as, allowed what stellar_ops.rotation.redis_acl.RedisAclUser runs and no more
REDIS_USER = "stellar"
REDIS_ADMIN_USER = "stellar_admin"
REDIS_ACL_FILE = "users.acl"
REDIS_ADMIN_RULES = (
    "resetchannels -@all +acl|getuser +acl|setuser +acl|save +acl|list +acl|whoami "
    "+config|get +config|rewrite +ping"
)
GRAFANA_ADMIN_USER = "admin"
S3_REGION = "us-east-1"
# WAL archiving (point-in-time recovery): barman-cloud puts each segment under
# s3://BUCKET/PITR_PREFIX/PITR_SERVER/wals/, beside the backups and apart from their prefix
PITR_PREFIX = "pitr"
PITR_SERVER = "stellar"
PITR_ARCHIVE_TIMEOUT = 60  # seconds: a segment with any write in it is archived within a minute
# the canary writer (stellar_ops.pitr.canary) commits a row this often: a point-in-time recovery of
# the stack is checked against them
CANARY_INTERVAL = 3.0
# the venv of barman-cloud (scripts/pitr_venv.sh, run by `make deps`); this variable names another
PITR_VENV_VARIABLE = "STELLAR_PITR_VENV"
REPO = Path(__file__).resolve().parents[2]
# Stable ports for `make run`, so bookmarks stay valid between runs. No server of any stack is
# handed one of them as a free or derived port; `--fixed-ports` uses each one that is free.
PREFERRED_PORTS = {
    "postgres": 55432,
    "s3": 58333,
    "redis": 56379,
    "pushgateway": 59091,
    "alertmanager": 59093,
    "api": 58080,
    "receiver": 58090,
    "grafana": 53000,
}
WEED_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port.grpc",
    "s3.port.iceberg",
    "s3.port.lance",
    "debug.port",
    "metricsPort",
)

ALERTMANAGER_CONFIG = """route:
  receiver: webhook
  group_wait: 1s
  group_interval: 5s
  repeat_interval: 1h
receivers:
  - name: webhook
    webhook_configs:
      - url: http://127.0.0.1:{receiver}/alertmanager
        send_resolved: true
"""


@dataclass
class StackInfo:
    """Everything a client needs to reach the stack; written to ``state.json``."""

    state_dir: str
    data_dir: str
    ports: dict[str, int]
    pids: dict[str, int] = field(default_factory=dict)
    db_password: str = field(default="", repr=False)
    superuser_password: str = field(default="", repr=False)
    restore_password: str = field(default="", repr=False)
    api_key: str = field(default="", repr=False)
    admin_key: str = field(default="", repr=False)
    s3_access_key: str = "stellar-ops"
    s3_secret_key: str = field(default="", repr=False)
    webhook_token: str = field(default="", repr=False)
    redis_password: str = field(default="", repr=False)  # the ACL user ``stellar``
    redis_admin_password: str = field(default="", repr=False)  # the ACL user ``stellar_admin``
    grafana_admin_password: str = field(default="", repr=False)
    tls: dict[str, Any] = field(default_factory=dict)  # the ``tls`` config section of the stack's nginx

    @property
    def db(self) -> PgTarget:
        return PgTarget("127.0.0.1", self.ports["postgres"], DB_USER, DB_NAME, self.db_password)

    @property
    def superuser(self) -> PgTarget:
        return PgTarget("127.0.0.1", self.ports["postgres"], "postgres", DB_NAME, self.superuser_password)

    @property
    def redis(self) -> RedisTarget:
        """Redis as the application's ACL user ``stellar``."""
        return RedisTarget(
            "127.0.0.1", self.ports["redis"], username=REDIS_USER, password=self.redis_password
        )

    @property
    def redis_admin(self) -> RedisTarget:
        """Redis as ``stellar_admin``, which may change the ACL users' passwords and save them."""
        return RedisTarget(
            "127.0.0.1", self.ports["redis"], username=REDIS_ADMIN_USER, password=self.redis_admin_password
        )

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    @property
    def database_url(self) -> str:
        """The application role's ``DATABASE_URL`` on the stack's PostgreSQL."""
        return (
            f"postgresql://{DB_USER}:{quote(self.db_password, safe='')}@127.0.0.1:{self.ports['postgres']}"
            f"/{DB_NAME}"
        )

    @property
    def redis_url(self) -> str:
        """The ACL user ``stellar``'s ``REDIS_URL``."""
        return f"redis://{REDIS_USER}:{quote(self.redis_password, safe='')}@127.0.0.1:{self.ports['redis']}/0"

    def api_env(self) -> str:
        """The API's env file as a start writes it: its keys, and every login ``secret_rotation``
        rotates, under the variables ``rotation.<secret>.env`` names."""
        values = {
            "API_KEYS": self.api_key,
            "ADMIN_KEYS": self.admin_key,
            "POSTGRES_USER": DB_USER,
            "POSTGRES_PASSWORD": self.db_password,
            "DATABASE_URL": self.database_url,
            "REDIS_USER": REDIS_USER,
            "REDIS_PASSWORD": self.redis_password,
            "REDIS_URL": self.redis_url,
            "GRAFANA_ADMIN_PASSWORD": self.grafana_admin_password,
        }
        return "".join(f"{name}={value}\n" for name, value in values.items())

    @property
    def wal_archive_url(self) -> str:
        """barman-cloud's destination: the bucket and the prefix its server directories go under."""
        return f"s3://{BUCKET}/{PITR_PREFIX}"

    @property
    def wal_prefix(self) -> str:
        """The S3 prefix the archived WAL segments are under (``<segment>.zst``, in a directory per
        timeline and log file)."""
        return f"{PITR_PREFIX}/{PITR_SERVER}/wals/"

    @property
    def api_env_file(self) -> Path:
        """The API stand-in's env file, in this run's data directory: its keys (``API_KEYS``,
        ``ADMIN_KEYS``) and the logins it would use (:meth:`api_env`); the key store of the rotations."""
        return Path(self.data_dir) / "api" / "api.env"

    @property
    def webhook_url(self) -> str:
        """The ops channel's webhook (P2, P3 and everything informational)."""
        return f"{self.url('receiver')}/services/T0STELLAR/B0ALERTS/{self.webhook_token}"

    @property
    def paging_webhook_url(self) -> str:
        """The paging channel's webhook (P1)."""
        return f"{self.url('receiver')}/services/T0STELLAR/B0PAGING/{self.webhook_token}"

    def s3_client(
        self, *, connect_timeout: float = 5, read_timeout: float = 60, attempts: int | None = None
    ) -> Any:
        """A boto3 S3 client for the stack; ``attempts`` caps botocore's retries (its default if None)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.url("s3"),
            aws_access_key_id=self.s3_access_key,
            aws_secret_access_key=self.s3_secret_key,
            region_name=S3_REGION,
            config=Config(
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                retries={"total_max_attempts": attempts} if attempts else None,
            ),
        )

    def airflow_connections(self) -> dict[str, dict[str, Any]]:
        """The stack's connections in Airflow's JSON connection format, by conn id."""
        return {
            "stellar_db": {
                "conn_type": "postgres",
                "host": "127.0.0.1",
                "port": self.ports["postgres"],
                "login": DB_USER,
                "password": self.db_password,
                "schema": DB_NAME,
            },
            "stellar_restore": {
                "conn_type": "postgres",
                "host": "127.0.0.1",
                "port": self.ports["postgres"],
                "login": RESTORE_USER,
                "password": self.restore_password,
                "schema": "postgres",
            },
            # secret_rotation's admin of the twin login roles (it reads their SCRAM verifiers)
            "stellar_pg_admin": {
                "conn_type": "postgres",
                "host": "127.0.0.1",
                "port": self.ports["postgres"],
                "login": "postgres",
                "password": self.superuser_password,
                "schema": "postgres",
            },
            "stellar_s3": {
                "conn_type": "aws",
                "login": self.s3_access_key,
                "password": self.s3_secret_key,
                "extra": {"endpoint_url": self.url("s3"), "region_name": S3_REGION},
            },
            "stellar_api": {
                "conn_type": "http",
                "host": "127.0.0.1",
                "port": self.ports["api"],
                "schema": "http",
                "password": self.api_key,
            },
            "stellar_redis": {
                "conn_type": "redis",
                "host": "127.0.0.1",
                "port": self.ports["redis"],
                "login": REDIS_USER,
                "password": self.redis_password,
            },
            "stellar_redis_admin": {
                "conn_type": "redis",
                "host": "127.0.0.1",
                "port": self.ports["redis"],
                "login": REDIS_ADMIN_USER,
                "password": self.redis_admin_password,
            },
            "grafana": {
                "conn_type": "http",
                "host": "127.0.0.1",
                "port": self.ports["grafana"],
                "schema": "http",
                "login": GRAFANA_ADMIN_USER,
                "password": self.grafana_admin_password,
            },
            "stellar_docker": {"conn_type": "docker", "host": "unix:///var/run/docker.sock"},
            "slack_alerts": {"conn_type": "slackwebhook", "password": self.webhook_url},
            "slack_paging": {"conn_type": "slackwebhook", "password": self.paging_webhook_url},
            "alertmanager": {
                "conn_type": "http",
                "host": "127.0.0.1",
                "port": self.ports["alertmanager"],
                "schema": "http",
            },
            "pushgateway": {
                "conn_type": "http",
                "host": "127.0.0.1",
                "port": self.ports["pushgateway"],
                "schema": "http",
            },
        }

    def ops_config(self) -> dict[str, Any]:
        """The ``stellar_ops_config`` Variable for the stack: defaults plus what the stack differs in."""
        return {
            "backup": {"bucket": BUCKET, "local_dir": str(Path(self.data_dir) / "local-backups")},
            "dr": {"work_dir": str(Path(self.data_dir) / "scratch")},
            "alerts": {"alertmanager_severities": ["P1", "P2"]},
            **({"tls": self.tls} if self.tls else {}),
            # the API stand-in re-reads its env file on POST /_reload: the local restart backend
            # and secret_rotation switches the CLI's exports (this file) with Airflow's connections
            "rotation": {"restart": "http_reload", "cli_env_file": str(Path(self.state_dir) / "env")},
            # the stack's PostgreSQL archives its WAL: the morning check is red when that breaks
            "pitr": {"required": True, "tools_dir": str(pitr_venv() / "bin")},
        }

    def env(self) -> dict[str, str]:
        """Shell exports pointing Airflow (``AIRFLOW_CONN_*``, ``AIRFLOW_VAR_*``) and the CLI here."""
        env = {
            f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(conn)
            for conn_id, conn in self.airflow_connections().items()
        }
        env["AIRFLOW_VAR_STELLAR_OPS_CONFIG"] = json.dumps(self.ops_config())
        env.update(
            {
                "DATABASE_URL": self.database_url,
                "S3_BUCKET": BUCKET,
                "AWS_ENDPOINT_URL_S3": self.url("s3"),
                "AWS_ACCESS_KEY_ID": self.s3_access_key,
                "AWS_SECRET_ACCESS_KEY": self.s3_secret_key,
                "AWS_DEFAULT_REGION": S3_REGION,
                "STELLAR_API_URL": self.url("api"),
                "STELLAR_API_KEY": self.api_key,
                "PUSHGATEWAY_URL": self.url("pushgateway"),
                "REDIS_URL": self.redis_url,
                "ALERTMANAGER_URL": self.url("alertmanager"),
                "BACKUP_ALERT_WEBHOOK": self.webhook_url,
                "PAGING_WEBHOOK": self.paging_webhook_url,
                "STELLAR_OPS_CONFIG": json.dumps(self.ops_config()),
                "STELLAR_STACK_STATE": str(Path(self.state_dir) / "state.json"),
                "STELLAR_STACK_DATA": self.data_dir,
                "STELLAR_API_ENV_FILE": str(self.api_env_file),
                "STELLAR_DB_PASSWORD": self.db_password,
                "STELLAR_RESTORE_PASSWORD": self.restore_password,
                "STELLAR_PG_SUPERUSER_PASSWORD": self.superuser_password,
                "STELLAR_REDIS_PASSWORD": self.redis_password,
                "STELLAR_REDIS_ADMIN_PASSWORD": self.redis_admin_password,
                "STELLAR_GRAFANA_ADMIN_PASSWORD": self.grafana_admin_password,
                "STELLAR_S3_ACCESS_KEY": self.s3_access_key,
                "STELLAR_S3_SECRET_KEY": self.s3_secret_key,
                "STELLAR_WEBHOOK_URL": self.webhook_url,
                "STELLAR_PAGING_WEBHOOK_URL": self.paging_webhook_url,
                "STELLAR_TLS_CONFIG": json.dumps(self.tls or {}),
                "STELLAR_WAL_ARCHIVE": f"{self.wal_archive_url}/{PITR_SERVER}",
            }
        )
        env.update({f"STELLAR_{name.upper()}_PORT": str(port) for name, port in self.ports.items()})
        if self.tls:
            env["STELLAR_TLS_PORT"] = str(self.tls["domains"][0]["port"])
        return env

    def write_env_file(self, path: Path, extra: dict[str, str] | None = None) -> None:
        lines = ["# Written by `stellar-ops stack up`: source it to point Airflow and the CLI at the stack."]
        exports = {**self.env(), **(extra or {})}
        lines += [f"export {key}={_shell_quote(value)}" for key, value in sorted(exports.items())]
        _write_private(path, "\n".join(lines) + "\n")

    def save(self) -> None:
        _write_private(Path(self.state_dir) / "state.json", json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, state_file: Path) -> StackInfo:
        try:
            return cls(**json.loads(Path(state_file).read_text()))
        except (OSError, ValueError, TypeError) as exc:
            raise StellarOpsError(f"cannot read the stack state {state_file}: {exc}") from None


def _shell_quote(value: str) -> str:
    return "'" + value.replace("'", "'\"'\"'") + "'"


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # O_CREAT's mode does not apply to a file that already existed
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def _program(name: str) -> str:
    beside_python = Path(sys.executable).parent / name
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which(name)
    if not found:
        raise StellarOpsError(
            f"{name} is not installed: run `make deps` (see packages.txt and requirements.txt)"
        )
    return found


def pitr_venv() -> Path:
    """The venv of barman-cloud: ``.pitr-venv`` in the checkout, or ``$STELLAR_PITR_VENV``."""
    return Path(os.environ.get(PITR_VENV_VARIABLE) or REPO / ".pitr-venv")


def wal_archiver(run_as: str | None) -> str:
    """``barman-cloud-wal-archive`` of the pitr venv, checked to run as ``run_as`` (PostgreSQL's user).

    The venv is ``.pitr-venv`` in the checkout (``$STELLAR_PITR_VENV`` names another): made from
    Debian's python by ``make deps``, because PostgreSQL's user can run neither a python under
    /root nor the project's .venv made from it.
    """
    program = pitr_venv() / "bin" / "barman-cloud-wal-archive"
    if not program.exists():
        raise StellarOpsError(
            f"{program} is missing: run `make deps` (scripts/pitr_venv.sh builds it from "
            "requirements-pitr.txt), or point $STELLAR_PITR_VENV at a venv with barman[cloud]"
        )
    try:
        result = subprocess.run(
            [str(program), "--version"], capture_output=True, text=True, user=run_as, timeout=60
        )
    except OSError as exc:
        result = subprocess.CompletedProcess([str(program)], 126, "", str(exc))
    if result.returncode != 0:
        who = f"the user {run_as!r}" if run_as else "this user"
        raise StellarOpsError(
            f"{program} does not run as {who} (PostgreSQL's), status {result.returncode}: "
            f"{(result.stderr or result.stdout).strip()[-500:]} (every directory above it must be "
            "searchable by that user: build it elsewhere with STELLAR_PITR_VENV=DIR scripts/pitr_venv.sh "
            "and keep that variable set)"
        )
    return str(program)


class Stack:
    """Starts and stops the local stack; see the module docstring."""

    def __init__(
        self,
        state_dir: Path,
        *,
        fixed_ports: bool = False,
        demo_rows: int = 3000,
        acme: bool = True,
        ports: Mapping[str, int] | None = None,
        reserved_ports: Iterable[int] = (),
    ) -> None:
        """``ports`` are required ports by server name (the start fails if one is taken);
        ``reserved_ports`` are ports of others (such as Airflow's) no server may be given."""
        self.state_dir = Path(state_dir).resolve()
        self.acme = acme
        self.acme_lab: AcmeLab | None = None
        self.fixed_ports = fixed_ports
        self.demo_rows = demo_rows
        unknown = sorted(set(ports or {}) - set(PREFERRED_PORTS))
        if unknown:
            raise StellarOpsError(
                f"no server named {', '.join(unknown)}: the servers are {', '.join(PREFERRED_PORTS)}"
            )
        self.required_ports = dict(ports or {})
        self.reserved_ports = set(reserved_ports)
        self.picker = PortPicker()
        self.processes: dict[str, ManagedProcess] = {}
        self.postgres: LocalPgServer | None = None
        self.info: StackInfo | None = None
        self._weed_argv: list[str] = []
        self._redis_argv: list[str] = []

    @property
    def logs(self) -> Path:
        return self.state_dir / "logs"

    def pick_ports(self) -> dict[str, int]:
        """Each server's port: a required one, else (with ``fixed_ports``) its fixed one when that
        is free, else a free one. The fixed, required and reserved ports are set aside first."""
        self.picker = PortPicker(
            [*PREFERRED_PORTS.values(), *self.required_ports.values(), *self.reserved_ports]
        )
        ports: dict[str, int] = {}
        for name, port in self.required_ports.items():
            if not self.picker.claim(port):
                raise StellarOpsError(
                    f"port {port} for {name} is already in use on 127.0.0.1: stop what holds it or choose another"
                )
            ports[name] = port
        for name, preferred in PREFERRED_PORTS.items():
            if name in ports:
                continue
            ports[name] = (
                preferred if self.fixed_ports and self.picker.claim(preferred) else self.picker.free()
            )
        return {name: ports[name] for name in PREFERRED_PORTS}

    def up(self) -> StackInfo:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        ports = self.pick_ports()
        self._set_aside_previous_logs()
        data_dir = Path(tempfile.mkdtemp(prefix="stellar-stack-"))
        os.chmod(data_dir, 0o755)  # PostgreSQL runs as an unprivileged user when we are root
        self.info = StackInfo(
            state_dir=str(self.state_dir),
            data_dir=str(data_dir),
            ports=ports,
            db_password=secrets.token_urlsafe(16),
            restore_password=secrets.token_urlsafe(16),
            api_key="sk_live_" + secrets.token_hex(16),
            admin_key="sk_admin_" + secrets.token_hex(16),
            s3_secret_key=secrets.token_urlsafe(24),
            webhook_token=secrets.token_hex(12),
            redis_password=secrets.token_urlsafe(24),
            redis_admin_password=secrets.token_urlsafe(24),
            grafana_admin_password=secrets.token_urlsafe(16),
        )
        try:
            self.info.save()  # from here on, `stack down` finds the data directory and every pid
            self._start_s3()  # first: PostgreSQL archives its WAL there from its first segment
            self._start_postgres()
            self._start_redis()
            self._start_pushgateway()
            self._start_alertmanager()
            self._start_receiver()
            self._start_api(fresh_keys=True)
            self._start_grafana()
            if self.acme:
                self._start_acme()
            self.seed()
            self._start_canary()
            self.confirm_archiving()
        except BaseException:
            self.down()
            raise
        self.info.save()
        return self.info

    def _set_aside_previous_logs(self) -> None:
        """This run's logs start empty; the previous run's are kept once, in ``logs.previous``."""
        if self.logs.exists():
            previous = self.state_dir / "logs.previous"
            shutil.rmtree(previous, ignore_errors=True)
            self.logs.rename(previous)
        self.logs.mkdir(parents=True)

    def _record(self, name: str, process: ManagedProcess) -> None:
        assert self.info is not None
        self.processes[name] = process
        if process.pid:
            self.info.pids[name] = process.pid
        self.info.save()

    def _spawn(
        self,
        name: str,
        argv: list[str],
        port: int,
        ready: Callable[[], bool],
        *,
        timeout: float = 30.0,
        env: dict[str, str] | None = None,
    ) -> None:
        start_server(
            name,
            argv,
            log_path=self.logs / f"{name}.log",
            port=port,
            ready=ready,
            timeout=timeout,
            env=env,
            on_start=lambda process: self._record(name, process),
        )

    def _start_postgres(self) -> None:
        assert self.info is not None
        run_as = unprivileged_user("postgres")
        archive_command = barman_archive_command(
            wal_archiver(run_as),
            self.info.wal_archive_url,
            PITR_SERVER,
            endpoint_url=self.info.url("s3"),
            compression="zstd",
            encryption="AES256",  # as the backups are put
        )
        # barman's boto3 reads the credentials from the postmaster's environment, inherited by
        # each archive_command: never in postgresql.conf or in an argv. No other AWS_* variable
        # of ours (a profile, another endpoint) reaches it.
        env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
        env.update(
            AWS_ACCESS_KEY_ID=self.info.s3_access_key,
            AWS_SECRET_ACCESS_KEY=self.info.s3_secret_key,
            AWS_DEFAULT_REGION=S3_REGION,
        )
        server = LocalPgServer(
            Path(self.info.data_dir) / "postgres",
            port=self.info.ports["postgres"],
            run_as=run_as,
            env=env,
            settings={
                "shared_preload_libraries": "'pg_stat_statements'",
                "pg_stat_statements.track": "all",
                "max_connections": "100",
                "shared_buffers": "'256MB'",
                "maintenance_work_mem": "'256MB'",
                "fsync": "off",  # a throwaway dev server: speed over durability
                "synchronous_commit": "off",
                "full_page_writes": "off",
                "wal_level": "replica",
                "archive_mode": "on",
                "archive_timeout": str(PITR_ARCHIVE_TIMEOUT),
                "archive_command": conf_string(archive_command),
                # the canaries' exact commit times: pg_xact_commit_timestamp(xmin)
                "track_commit_timestamp": "on",
            },
            log_file=self.logs / "postgres.log",
        )
        self.postgres = server
        self.info.superuser_password = server.password
        server.init()
        # ready when it answers `SELECT 1`; a signal waits for the start to end (a second or two),
        # so the postmaster is never left running unrecorded
        with signals_deferred():
            server.start()
        if server.pid:
            self.info.pids["postgres"] = server.pid
        self.info.save()
        quoted = self.info.db_password.replace("'", "''")
        server.psql(f"CREATE ROLE {DB_USER} LOGIN PASSWORD '{quoted}'")
        server.psql(f"CREATE DATABASE {DB_NAME} OWNER {DB_USER}")
        server.psql(f"GRANT pg_read_all_stats TO {DB_USER}")
        # db_base_backup streams pg_basebackup over a replication connection of the stellar_db role
        # (initdb's pg_hba.conf admits replication connections on loopback)
        server.psql(f"ALTER ROLE {DB_USER} REPLICATION")
        # the DR drill closes the current WAL segment to rehearse a recovery up to the present. A
        # function's privileges are its database's: granted in postgres, where the drill switches,
        # for a grant in stellar_escrow would travel in its dumps and fail a non-superuser's restore
        server.psql(f"GRANT EXECUTE ON FUNCTION pg_switch_wal() TO {DB_USER}", "postgres")
        server.psql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements", DB_NAME)
        restore_quoted = self.info.restore_password.replace("'", "''")
        server.psql(f"CREATE ROLE {RESTORE_USER} LOGIN CREATEDB CREATEROLE PASSWORD '{restore_quoted}'")
        # only a superuser may create pg_stat_statements: every new database gets it from template1
        server.psql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements", "template1")

    def _start_s3(self) -> None:
        assert self.info is not None
        weed_dir = Path(self.info.data_dir) / "seaweedfs"
        weed_dir.mkdir(exist_ok=True)
        argv = [
            _program("weed"),
            "mini",
            f"-dir={weed_dir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-admin.ui=false",
            "-webdav=false",
            "-master.telemetry=false",
            f"-bucket={BUCKET}",
            f"-s3.port={self.info.ports['s3']}",
            f"-filer.localSocket={weed_dir}/filer.sock",
            f"-s3.localSocket={weed_dir}/s3.sock",
        ]
        argv += [f"-{flag}={self.picker.free()}" for flag in WEED_PORT_FLAGS]
        # The embedded worker dials the admin server at its http port + 10000: keep both ours.
        admin = self.picker.pair(10000)
        argv += [f"-admin.port={admin}", f"-admin.port.grpc={admin + 10000}"]
        self._weed_argv = argv
        self._launch_s3()

    def _launch_s3(self) -> None:
        assert self.info is not None
        env = dict(os.environ, AWS_ACCESS_KEY_ID=self.info.s3_access_key)
        env["AWS_SECRET_ACCESS_KEY"] = self.info.s3_secret_key
        self._spawn(
            "seaweedfs", self._weed_argv, self.info.ports["s3"], self._bucket_ready, timeout=60, env=env
        )

    def stop_s3(self) -> None:
        """Stop the S3 server, keeping its data (to test an outage)."""
        process = self.processes.pop("seaweedfs", None)
        if process is not None:
            process.stop()

    def start_s3(self) -> None:
        """Start the S3 server again on the same port and data after :meth:`stop_s3`; return once
        PostgreSQL's archiver has pushed what waited (a segment closed now is archived), so the
        stack is whole again: no archiving failure newer than its last success is left behind."""
        self._launch_s3()
        if self.postgres is not None:
            self.confirm_archiving(tolerate_failures=True)

    def _bucket_ready(self) -> bool:
        """A signed S3 request for the bucket `-bucket` creates at start, answered 200."""
        assert self.info is not None
        client = self.info.s3_client(connect_timeout=2, read_timeout=5, attempts=1)
        try:
            client.head_bucket(Bucket=BUCKET)
        except Exception:  # noqa: BLE001 - not ready yet, whatever the reason
            return False
        finally:
            client.close()
        return True

    def _start_redis(self) -> None:
        assert self.info is not None
        redis_dir = Path(self.info.data_dir) / "redis"
        redis_dir.mkdir()
        port = self.info.ports["redis"]
        # The users live in an aclfile, so `ACL SAVE` keeps a rotated password across a restart
        # (secret_rotation's persist step); it holds only the passwords' sha256, never a password.
        acl_file = redis_dir / REDIS_ACL_FILE
        _write_private(acl_file, redis_acl(self.info.redis_password, self.info.redis_admin_password))
        self._redis_argv = [_program("redis-server"), "--port", str(port), "--bind", "127.0.0.1"]
        self._redis_argv += ["--save", "", "--appendonly", "no", "--dir", str(redis_dir)]
        self._redis_argv += ["--protected-mode", "yes", "--aclfile", str(acl_file)]
        self._launch_redis()

    def _launch_redis(self) -> None:
        assert self.info is not None
        port = self.info.ports["redis"]
        self._spawn("redis", self._redis_argv, port, lambda: redis_answers(port))

    def restart_redis(self) -> None:
        """Stop Redis and start it again on the same port, directory and aclfile: it comes back
        with the users its aclfile holds (what the last ``ACL SAVE`` wrote)."""
        process = self.processes.pop("redis", None)
        if process is not None:
            process.stop()
        self._launch_redis()

    def _start_pushgateway(self) -> None:
        assert self.info is not None
        port = self.info.ports["pushgateway"]
        argv = [_program("prometheus-pushgateway"), f"--web.listen-address=127.0.0.1:{port}"]
        self._spawn("pushgateway", argv, port, lambda: http_answers(f"http://127.0.0.1:{port}/-/ready"))

    def _start_alertmanager(self) -> None:
        assert self.info is not None
        am_dir = Path(self.info.data_dir) / "alertmanager"
        am_dir.mkdir()
        config = am_dir / "alertmanager.yml"
        config.write_text(ALERTMANAGER_CONFIG.format(receiver=self.info.ports["receiver"]))
        port = self.info.ports["alertmanager"]
        argv = [
            _program("prometheus-alertmanager"),
            f"--config.file={config}",
            f"--storage.path={am_dir}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ]
        self._spawn("alertmanager", argv, port, lambda: http_answers(f"http://127.0.0.1:{port}/-/ready"))

    def _start_receiver(self) -> None:
        assert self.info is not None
        port = self.info.ports["receiver"]
        argv = [sys.executable, "-m", "stellar_ops_dev.receiver", "--port", str(port)]
        self._spawn(
            "receiver", argv, port, lambda: http_answers(f"http://127.0.0.1:{port}/", body=receiver.BANNER)
        )

    @property
    def api_env_file(self) -> Path:
        assert self.info is not None
        return self.info.api_env_file

    def _start_api(self, *, fresh_keys: bool = False) -> None:
        assert self.info is not None
        if fresh_keys:
            # The stack's credentials are one set: the keys the API accepts are the keys the stack
            # exports (state.json, the env file, the Airflow connections). The env file lives in
            # this run's data directory, made for this start, so no key from an earlier stack can
            # survive into it; within a run, a key rotation rewrites it and a restart reads it.
            _write_private(self.api_env_file, self.info.api_env())
        port = self.info.ports["api"]
        argv = [sys.executable, "-m", "stellar_ops_dev.api_stub", "--port", str(port)]
        argv += ["--env-file", str(self.api_env_file), "--state-dir", str(Path(self.info.data_dir) / "api")]
        self._spawn("api", argv, port, lambda: http_answers(f"http://127.0.0.1:{port}/_ready", body=b"ready"))

    def _start_grafana(self) -> None:
        """The stand-in for Grafana's admin API; the admin's password reaches it through its
        environment (``GF_SECURITY_ADMIN_PASSWORD``, as Grafana's own), never its argv."""
        assert self.info is not None
        port = self.info.ports["grafana"]
        env = dict(os.environ)
        env["GF_SECURITY_ADMIN_USER"] = GRAFANA_ADMIN_USER
        env["GF_SECURITY_ADMIN_PASSWORD"] = self.info.grafana_admin_password
        argv = [sys.executable, "-m", "stellar_ops_dev.grafana_stub", "--port", str(port)]
        # /api/health needs no login and is not recorded in /_calls, which a test reads from empty
        url = f"http://127.0.0.1:{port}/api/health"
        self._spawn("grafana", argv, port, lambda: http_answers(url, body=b'"database": "ok"'), env=env)

    def _start_acme(self) -> None:
        assert self.info is not None
        info = self.info

        def record(name: str, process: ManagedProcess) -> None:
            if process.pid:
                info.pids[f"acme-{name}"] = process.pid
                info.save()

        lab = AcmeLab(
            Path(info.data_dir) / "acme", logs=self.logs / "acme", ports=self.picker.free, on_start=record
        )
        self.acme_lab = lab
        lab.up()
        # pebble issues 20-day certificates: renew under 10 days left, or every run would renew.
        self.info.tls = lab.tls_config(renew_below_days=10, warning_days=10, critical_days=5)
        self.info.save()

    def restart_api(self) -> None:
        """Stop and start the API stand-in: it re-reads its env file (rotated keys)."""
        process = self.processes.get("api")
        if process is not None:
            process.stop()
        self._start_api()

    def seed(self) -> None:
        """Load the demo StellarEscrow data (``demo_rows`` trades)."""
        assert self.info is not None
        demo_data.generate(self.info.db, trades=self.demo_rows)

    def _start_canary(self) -> None:
        """The canary writer (``stellar-ops pitr canary``): a row committed every few seconds into
        the demo database; ready when its first row is there."""
        assert self.info is not None
        env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "STELLAR_"))}
        env["DATABASE_URL"] = self.info.env()["DATABASE_URL"]
        argv = [sys.executable, "-m", "stellar_ops.cli.main", "pitr", "canary"]
        argv += ["--interval", f"{CANARY_INTERVAL:g}"]
        process = ManagedProcess(name="canary", argv=argv, log_path=self.logs / "canary.log", env=env)
        with signals_deferred():
            process.start()
            self._record("canary", process)
        process.wait_ready(lambda: self.canaries() > 0, timeout=60)

    def canaries(self) -> int:
        """How many canary rows the demo database holds (0 before the writer's first)."""
        assert self.postgres is not None
        if self.postgres.psql(f"SELECT to_regclass('{CANARY_TABLE}') IS NULL", DB_NAME).strip() == "t":
            return 0
        return int(self.postgres.psql(f"SELECT count(*) FROM {CANARY_TABLE}", DB_NAME).strip())

    def confirm_archiving(self, timeout: float = 120.0, *, tolerate_failures: bool = False) -> str:
        """Close the current WAL segment and wait until it is archived; its name.

        A start ends with this, so the stack's archive has a first segment (the morning check is
        green from the start) and a stack whose archiving is broken fails to start, saying why.
        ``tolerate_failures``: failures before (an S3 outage just ended) do not stop the wait.
        """
        assert self.postgres is not None
        assert self.info is not None
        server = self.postgres
        closed = server.psql("SELECT pg_walfile_name(pg_switch_wal())").strip()
        deadline = time.monotonic() + timeout
        while True:
            row = server.psql(
                "SELECT coalesce(last_archived_wal, ''), failed_count, coalesce(last_failed_wal, '') "
                "FROM pg_stat_archiver"
            ).strip()
            last, failed, failed_wal = row.split("|")
            if last >= closed:  # names of one timeline sort in the order of their segments
                return closed
            where = f"{self.info.wal_archive_url}/{PITR_SERVER}"
            if failed != "0" and not tolerate_failures:
                raise StellarOpsError(
                    f"WAL archiving to {where} fails: {failed_wal} was not archived "
                    f"({failed} failure(s)); barman-cloud-wal-archive says, in {server.log_path}:\n"
                    + "\n".join(server.log_path.read_text(errors="replace").splitlines()[-15:])
                )
            if time.monotonic() > deadline:
                raise StellarOpsError(
                    f"WAL segment {closed} was not archived to {where} within {timeout:.0f}s "
                    f"(last archived: {last or 'none'}); see {server.log_path}"
                )
            time.sleep(0.2)

    def down(self) -> None:
        """Stop every server of this start and remove its data and ``state.json``."""
        if self.acme_lab is not None:
            self.acme_lab.down()
        if self.info is not None:
            stop_recorded(self.info)
        for process in reversed(list(self.processes.values())):
            process.stop()
        if self.postgres is not None:
            self.postgres.stop()
        if self.info is not None:
            (Path(self.info.state_dir) / "state.json").unlink(missing_ok=True)


def redis_acl(app_password: str, admin_password: str) -> str:
    """The stack's Redis aclfile: ``default`` as Redis makes it (no password, everything), the
    application's user and the admin user, each password as its sha256 (``#<hash>``)."""

    def digest(secret: str) -> str:
        return hashlib.sha256(secret.encode()).hexdigest()

    return (
        "user default on nopass ~* &* +@all\n"
        f"user {REDIS_USER} on #{digest(app_password)} ~* &* +@all\n"
        f"user {REDIS_ADMIN_USER} on #{digest(admin_password)} {REDIS_ADMIN_RULES}\n"
    )


def stop_recorded(info: StackInfo) -> None:
    """Stop every pid in ``info`` (this process's or another's) and remove the data directory."""
    # PostgreSQL before the S3 server: at shutdown its archiver pushes the segments still waiting
    order = ["canary", "grafana", "api", "receiver", "alertmanager", "pushgateway"]
    order += ["redis", "postgres", "seaweedfs"]
    for name in order + [n for n in info.pids if n not in order]:
        pid = info.pids.get(name)
        if pid and pid_alive(pid):
            stop_pid(pid, sig=signal.SIGINT if name == "postgres" else signal.SIGTERM)
    postmaster = read_postmaster_pid(Path(info.data_dir) / "postgres" / "data")
    if postmaster:
        stop_pid(postmaster, sig=signal.SIGINT)
    shutil.rmtree(info.data_dir, ignore_errors=True)
    info.pids.clear()
