"""A real ACME renewal on loopback: Debian's pebble and pebble-challtestsrv, certbot and nginx.

:class:`AcmeLab` starts pebble (the ACME server, resolving every name to 127.0.0.1 through
challtestsrv's DNS, so no query leaves the machine) and nginx (HTTPS on a free loopback port, and
HTTP on pebble's http-01 port for the webroot), then obtains the first certificate for
:attr:`domain` with certbot and serves it. :meth:`tls_config` is the ``tls`` config section
that probes and renews it. Used by ``stellar-dev stack up``, the tests and ``make run``.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stellar_ops.core.errors import StellarOpsError
from stellar_ops.core.processes import ManagedProcess, wait_until
from stellar_ops_dev.certs import LocalCA, self_signed
from stellar_ops_dev.servers import (
    PortPicker,
    dns_answers,
    http_answers,
    start_server,
    tls_context_unverified,
)

DOMAIN = "escrow.test"
CERT_NAME = "escrow"

NGINX_CONF = """\
{user}worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log;
events {{ worker_connections 64; }}
http {{
    access_log {prefix}/logs/access.log;
    client_body_temp_path {prefix}/temp/body;
    proxy_temp_path {prefix}/temp/proxy;
    fastcgi_temp_path {prefix}/temp/fastcgi;
    uwsgi_temp_path {prefix}/temp/uwsgi;
    scgi_temp_path {prefix}/temp/scgi;
    server {{
        listen 127.0.0.1:{http_port};
        server_name {domain};
        location /.well-known/acme-challenge/ {{ root {webroot}; }}
    }}
    server {{
        listen 127.0.0.1:{https_port} ssl;
        server_name {domain};
        ssl_certificate {certificate};
        ssl_certificate_key {key};
        location / {{ return 200 "stellar escrow\\n"; }}
    }}
}}
"""


@dataclass(frozen=True)
class AcmePorts:
    acme: int
    management: int
    http01: int
    tls_alpn: int
    dns: int
    dns_management: int
    https: int


class AcmeLab:
    """See the module docstring. ``validity_seconds`` is every issued certificate's lifetime;
    ``ports`` hands out the lab's ports (the stack's picker, so no two servers share one);
    ``on_start`` sees each server as soon as it has a pid (the stack records it)."""

    def __init__(
        self,
        root: Path,
        *,
        logs: Path | None = None,
        domain: str = DOMAIN,
        cert_name: str = CERT_NAME,
        validity_seconds: int = 20 * 86400,
        ports: Callable[[], int] | None = None,
        on_start: Callable[[str, ManagedProcess], None] | None = None,
    ) -> None:
        self.root = Path(root).resolve()
        self.logs = Path(logs) if logs else self.root / "logs"
        self.domain = domain
        self.cert_name = cert_name
        self.validity_seconds = validity_seconds
        pick = ports or PortPicker().free
        self.ports = AcmePorts(*(pick() for _ in range(7)))
        self.on_start = on_start
        self.processes: dict[str, ManagedProcess] = {}

    # Paths -------------------------------------------------------------------------------
    @property
    def nginx_prefix(self) -> Path:
        return self.root / "nginx"

    @property
    def webroot(self) -> Path:
        return self.root / "webroot"

    @property
    def certbot_dir(self) -> Path:
        return self.root / "certbot"

    @property
    def pebble_ca(self) -> Path:
        """The CA of pebble's own HTTPS (what certbot trusts to talk ACME)."""
        return self.root / "pebble" / "ca.pem"

    @property
    def issuing_root(self) -> Path:
        """pebble's issuing root: the CA bundle that verifies the certificates nginx serves."""
        return self.root / "acme-root.pem"

    @property
    def live(self) -> Path:
        return self.certbot_dir / "config" / "live" / self.cert_name

    @property
    def directory_url(self) -> str:
        return f"https://127.0.0.1:{self.ports.acme}/dir"

    @property
    def https_port(self) -> int:
        return self.ports.https

    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in self.processes.items() if p.pid}

    # Start and stop ----------------------------------------------------------------------
    def up(self) -> AcmeLab:
        for program in ("pebble", "pebble-challtestsrv", "certbot", "nginx"):
            if not _which(program):
                raise StellarOpsError(
                    f"{program} is not installed: apt-get install pebble certbot nginx (packages.txt)"
                )
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)
        try:
            self._start_dns()
            self._start_pebble()
            self._start_nginx()
            self.obtain()
        except BaseException:
            self.down()
            raise
        return self

    def down(self) -> None:
        for name in reversed(list(self.processes)):
            self.processes[name].stop()
        self.processes.clear()

    def __enter__(self) -> AcmeLab:
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.down()

    def _spawn(
        self,
        name: str,
        argv: list[str],
        port: int,
        ready: Callable[[], bool],
        env: dict[str, str] | None = None,
    ) -> None:
        def started(process: ManagedProcess) -> None:
            self.processes[name] = process
            if self.on_start is not None:
                self.on_start(name, process)

        start_server(
            name,
            argv,
            log_path=self.logs / f"{name}.log",
            port=port,
            ready=ready,
            timeout=30,
            env=env,
            on_start=started,
        )

    def _start_dns(self) -> None:
        p = self.ports
        argv = [_which("pebble-challtestsrv"), "-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""]
        argv += ["-dns01", f"127.0.0.1:{p.dns}", "-management", f"127.0.0.1:{p.dns_management}"]
        argv += ["-http01", "", "-https01", "", "-tlsalpn01", ""]
        self._spawn("challtestsrv", argv, p.dns, lambda: dns_answers(p.dns, self.domain))

    def _start_pebble(self) -> None:
        p = self.ports
        directory = self.root / "pebble"
        ca = LocalCA("Stellar Ops pebble HTTPS CA")
        ca.write_bundle(self.pebble_ca)
        cert, key = ca.leaf("localhost", "127.0.0.1", days=365).write(directory, "pebble")
        config = {
            "pebble": {
                "listenAddress": f"127.0.0.1:{p.acme}",
                "managementListenAddress": f"127.0.0.1:{p.management}",
                "certificate": str(cert),
                "privateKey": str(key),
                "httpPort": p.http01,
                "tlsPort": p.tls_alpn,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": False,
                "certificateValidityPeriod": self.validity_seconds,
            }
        }
        (directory / "pebble.json").write_text(json.dumps(config))
        env = dict(os.environ, PEBBLE_VA_NOSLEEP="1", PEBBLE_WFE_NONCEREJECT="0")
        argv = [_which("pebble"), "-config", str(directory / "pebble.json")]
        argv += ["-dnsserver", f"127.0.0.1:{p.dns}", "-strict=false"]
        context = ssl.create_default_context(cafile=str(self.pebble_ca))
        directory_url = self.directory_url
        self._spawn(
            "pebble",
            argv,
            p.acme,
            lambda: http_answers(directory_url, body=b"newAccount", context=context),
            env=env,
        )

        def fetch_root() -> bool:
            try:
                with urllib.request.urlopen(  # noqa: S310 - a loopback https URL built here
                    f"https://127.0.0.1:{p.management}/roots/0", context=context, timeout=5
                ) as response:
                    self.issuing_root.write_bytes(response.read())
                return True
            except OSError:
                return False

        wait_until(fetch_root, timeout=30, what="pebble's issuing root")

    def _nginx_conf(self, certificate: Path, key: Path) -> str:
        prefix = self.nginx_prefix
        return NGINX_CONF.format(
            user="user root;\n" if os.geteuid() == 0 else "",
            prefix=prefix,
            http_port=self.ports.http01,
            https_port=self.ports.https,
            domain=self.domain,
            webroot=self.webroot,
            certificate=certificate,
            key=key,
        )

    def nginx_argv(self, *extra: str) -> list[str]:
        prefix = self.nginx_prefix
        return [_which("nginx"), "-p", str(prefix), "-c", str(prefix / "conf" / "nginx.conf"), *extra]

    def _start_nginx(self) -> None:
        prefix = self.nginx_prefix
        for sub in ("conf", "logs", "temp"):
            (prefix / sub).mkdir(parents=True, exist_ok=True)
        self.webroot.mkdir(parents=True, exist_ok=True)
        # nginx needs a certificate to start, and certbot will not create live/<name> over an
        # existing directory: serve a throwaway self-signed one until the first is obtained.
        cert, key = self_signed(self.domain, days=1).write(prefix / "conf", "placeholder")
        (prefix / "conf" / "nginx.conf").write_text(self._nginx_conf(cert, key))
        argv = self.nginx_argv("-e", str(prefix / "logs" / "error.log"), "-g", "daemon off;")
        url = f"https://127.0.0.1:{self.ports.https}/"
        context = tls_context_unverified()  # the placeholder certificate: the handshake is what counts
        self._spawn(
            "nginx",
            argv,
            self.ports.https,
            lambda: http_answers(url, body=b"stellar escrow", context=context, headers={"Host": self.domain}),
        )

    def certbot_base(self) -> list[str]:
        d = self.certbot_dir
        return [
            "--config-dir",
            str(d / "config"),
            "--work-dir",
            str(d / "work"),
            "--logs-dir",
            str(d / "logs"),
        ]

    def obtain(self) -> None:
        """The first certificate: certbot certonly through pebble, then nginx serves it."""
        argv = [_which("certbot"), "certonly", *self.certbot_base(), "--non-interactive"]
        argv += ["--server", self.directory_url, "--agree-tos", "--register-unsafely-without-email"]
        argv += ["--webroot", "-w", str(self.webroot), "-d", self.domain, "--cert-name", self.cert_name]
        env = dict(os.environ, REQUESTS_CA_BUNDLE=str(self.pebble_ca))
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=180, check=False)
        if done.returncode != 0:
            raise StellarOpsError(
                f"certbot could not obtain the first certificate:\n{done.stdout}{done.stderr}"
            )
        conf = self.nginx_prefix / "conf" / "nginx.conf"
        conf.write_text(self._nginx_conf(self.live / "fullchain.pem", self.live / "privkey.pem"))
        self.reload_nginx()

    def reload_nginx(self) -> None:
        """Reload nginx and wait until it serves the lineage's current certificate: its old workers
        keep answering with the previous one for a moment after a reload."""
        done = subprocess.run(
            self.nginx_argv("-s", "reload"), capture_output=True, text=True, timeout=30, check=False
        )
        if done.returncode != 0:
            raise StellarOpsError(f"nginx reload failed: {done.stderr}")
        expected = self.live_serial()
        in_a_row = {"count": 0}

        def serving() -> bool:
            in_a_row["count"] = in_a_row["count"] + 1 if self.served_serial() == expected else 0
            return in_a_row["count"] >= 3

        wait_until(serving, timeout=30, interval=0.2, what=f"nginx to serve certificate {expected}")

    def live_serial(self) -> str:
        """The serial of the certificate certbot's ``live/`` link points to now."""
        from cryptography import x509

        cert = x509.load_pem_x509_certificate((self.live / "cert.pem").read_bytes())
        return f"{cert.serial_number:x}"

    def served_serial(self) -> str | None:
        from stellar_ops.probes.tls import probe

        return probe(
            "127.0.0.1", self.https_port, server_name=self.domain, ca_bundle=str(self.issuing_root)
        ).serial

    def tls_config(self, **overrides: Any) -> dict[str, Any]:
        """The ``tls`` config section naming this lab's domain, renewing through its certbot."""
        section: dict[str, Any] = {
            "domains": [
                {
                    "host": "127.0.0.1",
                    "port": self.https_port,
                    "server_name": self.domain,
                    "ca_bundle": str(self.issuing_root),
                    "cert_name": self.cert_name,
                }
            ],
            "certbot_command": [_which("certbot")],
            "certbot_config_dir": str(self.certbot_dir / "config"),
            "certbot_work_dir": str(self.certbot_dir / "work"),
            "certbot_logs_dir": str(self.certbot_dir / "logs"),
            "certbot_ca_bundle": str(self.pebble_ca),
            "nginx_reload_command": self.nginx_argv("-s", "reload"),
            "reload_settle_seconds": 0.5,
        }
        section.update(overrides)
        return section


def _which(program: str) -> str:
    found = shutil.which(program) or next(
        (str(Path(d) / program) for d in ("/usr/sbin", "/usr/bin") if (Path(d) / program).exists()), None
    )
    return found or ""
