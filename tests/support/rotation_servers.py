"""Servers the secret rotation tests start: Redis with ACL users, and moto (Secrets Manager, and IAM with authentication)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from stellar_ops.core.http import RedisTarget
from stellar_ops.core.processes import free_port
from stellar_ops.rotation.credentials import Credential, generate_secret


def sha(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


APP_RULES = "~* &* +@all -@dangerous"


class RedisServer:
    """redis-server on a free loopback port with a config file: an admin user ``ops``, the app's
    user ``stellar``, the ``default`` user off. Passwords are written as hashes, as in production."""

    def __init__(self, directory: Path, *, config_file: bool = True, requirepass: bool = False) -> None:
        self.dir = directory
        self.port = free_port()
        self.requirepass = requirepass
        if requirepass:  # REDIS_PASSWORD as deployed: the default user's one password, everyone's
            self.app = self.admin = Credential("default", generate_secret())
        else:
            self.admin = Credential("ops", generate_secret())
            self.app = Credential("stellar", generate_secret())
        self.config_file = config_file
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        program = shutil.which("redis-server")
        if program is None:
            pytest.skip("redis-server is not installed (packages.txt)")
        self.dir.mkdir(exist_ok=True)
        lines = [
            f"port {self.port}",
            "bind 127.0.0.1",
            'save ""',
            "appendonly no",
            f"dir {self.dir}",
        ]
        if self.requirepass:
            lines.append(f"requirepass {self.app.secret}")
        else:
            lines += [
                "user default off",
                f"user ops on #{sha(self.admin.secret)} ~* &* +@all",
                f"user stellar on #{sha(self.app.secret)} {APP_RULES}",
            ]
        if self.config_file:
            conf = self.dir / "redis.conf"
            if not conf.exists():  # a restart reads what CONFIG REWRITE left there
                conf.write_text("\n".join(lines) + "\n")
            argv = [program, str(conf)]
        else:
            # every setting on the command line (as `--user` directives): nothing to rewrite
            argv = [program]
            for line in lines:
                name, _, value = line.partition(" ")
                argv += [f"--{name}", *(value.split() if name != "save" else [""])]
        log = open(self.dir / "redis.log", "ab")  # noqa: SIM115 - handed to the child
        self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 20
        while not self.answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start: {(self.dir / 'redis.log').read_text()}")
            time.sleep(0.05)

    def answers(self) -> bool:
        """The server answers a login (the default user may be off: a bare PING gets NOAUTH)."""
        import redis

        try:
            with self.target().client(timeout=1) as client:
                return bool(client.ping())
        except redis.AuthenticationError:
            return True  # up, and refusing a password a rotation retired
        except redis.ConnectionError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def target(self, credential: Credential | None = None) -> RedisTarget:
        who = credential or self.admin
        return RedisTarget("127.0.0.1", self.port, username=who.identity, password=who.secret)


REGION = "us-east-1"
ALLOW_ALL = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
)


def client(service: str, url: str, credential: Credential):
    import boto3

    return boto3.client(
        service,
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id=credential.identity,
        aws_secret_access_key=credential.secret,
    )


@contextlib.contextmanager
def running_moto(log_dir: Path) -> Iterator[str]:
    """moto's server, its URL while the block runs; stopped (the one process it started) after."""
    import moto.server  # noqa: F401 - pinned in requirements.txt: the local Secrets Manager

    port = free_port()
    log = open(log_dir / "moto.log", "wb")  # noqa: SIM115 - handed to the child
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(url + "/moto-api/", timeout=1)
                break
            except requests.RequestException:
                assert time.monotonic() < deadline and process.poll() is None, "moto did not start"
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def secrets_client(url: str, region: str = "us-east-1") -> Any:
    """A Secrets Manager client of moto at ``url`` (moto keeps each region's secrets apart)."""
    import boto3

    return boto3.client(
        "secretsmanager",
        endpoint_url=url,
        region_name=region,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


@contextlib.contextmanager
def moto_iam(directory: Path) -> Iterator[tuple[str, Credential]]:
    """moto in server mode, then IAM authentication turned on: an admin user made first signs
    every later call. Yields (url, the admin's credential)."""
    with running_moto(directory) as url:
        bootstrap = client("iam", url, Credential("bootstrap", "bootstrap"))
        bootstrap.create_user(UserName="ops-admin")
        bootstrap.put_user_policy(UserName="ops-admin", PolicyName="all", PolicyDocument=ALLOW_ALL)
        made = bootstrap.create_access_key(UserName="ops-admin")["AccessKey"]
        requests.post(url + "/moto-api/reset-auth", data=b"0", timeout=5).raise_for_status()
        yield url, Credential(made["AccessKeyId"], made["SecretAccessKey"])
