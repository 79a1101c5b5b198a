"""certbot and nginx, run locally as commands or inside their containers through the Docker API.

A renewal only asks certbot to renew; certbot itself replaces a lineage's ``live/`` links only
once a new certificate is issued, so a failed renewal leaves the served certificate in place.
nginx is reloaded only after certbot succeeded.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from typing import Any, Protocol

from stellar_ops.core.errors import StellarOpsError
from stellar_ops.tls.config import TlsConfig, TlsDomain

OUTPUT_TAIL_CHARS = 1500


class RenewalError(StellarOpsError):
    """certbot or the nginx reload failed, or the renewed certificate is not served."""


@dataclass(frozen=True)
class CommandResult:
    argv: list[str]
    exit_code: int
    output: str

    def tail(self) -> str:
        text = self.output.strip()
        return text if len(text) <= OUTPUT_TAIL_CHARS else "…" + text[-OUTPUT_TAIL_CHARS:]


class Runner(Protocol):
    def run(self, argv: list[str], *, env: dict[str, str], timeout: float, where: str) -> CommandResult:
        """Run ``argv`` (``where`` names the container in docker mode) and return its outcome."""
        ...


class LocalRunner:
    """Commands on this machine."""

    def run(self, argv: list[str], *, env: dict[str, str], timeout: float, where: str) -> CommandResult:
        try:
            done = subprocess.run(
                argv,
                env={**os.environ, **env},
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except FileNotFoundError:
            raise RenewalError(f"{argv[0]} is not installed here (tls.executor is local)") from None
        except subprocess.TimeoutExpired:
            raise RenewalError(f"{' '.join(argv[:2])} did not finish within {timeout:g}s") from None
        return CommandResult(argv, done.returncode, (done.stdout or "") + (done.stderr or ""))


class DockerRunner:
    """Commands inside running containers (``docker exec``) through a ``docker.APIClient``."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def run(self, argv: list[str], *, env: dict[str, str], timeout: float, where: str) -> CommandResult:
        try:
            created = self.client.exec_create(where, argv, environment=env or None)
            output = self.client.exec_start(created["Id"])
            inspected = self.client.exec_inspect(created["Id"])
        except Exception as exc:  # docker raises APIError, NotFound, ConnectionError...
            raise RenewalError(
                f"cannot run {argv[0]} in container {where}: {type(exc).__name__}: {exc}"
            ) from None
        text = output.decode(errors="replace") if isinstance(output, bytes) else str(output or "")
        return CommandResult(argv, int(inspected.get("ExitCode") or 0), text)


def certbot_argv(settings: TlsConfig, domain: TlsDomain) -> list[str]:
    """certbot's arguments for ``domain``: always forced, since the threshold here decided."""
    argv = list(settings.certbot_command)
    if settings.certbot_action == "renew":
        argv += ["renew", "--cert-name", domain.lineage, "--force-renewal", "--no-random-sleep-on-renew"]
    else:
        argv += ["certonly", "--cert-name", domain.lineage, "-d", domain.sni, "--force-renewal"]
        argv += list(settings.certbot_certonly_args)
    argv += ["--non-interactive"]
    for flag, value in (
        ("--config-dir", settings.certbot_config_dir),
        ("--work-dir", settings.certbot_work_dir),
        ("--logs-dir", settings.certbot_logs_dir),
        ("--server", settings.certbot_server),
    ):
        if value:
            argv += [flag, value]
    return argv + list(settings.certbot_extra_args)


def certbot_env(settings: TlsConfig) -> dict[str, str]:
    return {"REQUESTS_CA_BUNDLE": settings.certbot_ca_bundle} if settings.certbot_ca_bundle else {}


def run_certbot(runner: Runner, settings: TlsConfig, domain: TlsDomain) -> CommandResult:
    argv = certbot_argv(settings, domain)
    result = runner.run(
        argv,
        env=certbot_env(settings),
        timeout=settings.certbot_timeout_seconds,
        where=settings.certbot_container,
    )
    if result.exit_code != 0:
        raise RenewalError(
            f"certbot {settings.certbot_action} of {domain.lineage} failed (exit {result.exit_code}); the served "
            f"certificate is unchanged and nginx was not reloaded. certbot said: {result.tail()}"
        )
    return result


def reload_nginx(runner: Runner, settings: TlsConfig) -> CommandResult:
    result = runner.run(
        list(settings.nginx_reload_command), env={}, timeout=60, where=settings.nginx_container
    )
    if result.exit_code != 0:
        raise RenewalError(
            f"nginx reload ({' '.join(settings.nginx_reload_command)}) failed (exit {result.exit_code}): {result.tail()}"
        )
    return result
