"""The TLS procedure's pure parts: config, certbot's arguments, alerts, metrics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from stellar_ops.core.errors import ConfigError
from stellar_ops.probes.tls import STATES, TlsProbe
from stellar_ops.registry import parse_config
from stellar_ops.runtime import Runtime
from stellar_ops.tls import flow, renewal
from stellar_ops.tls.config import TlsConfig, TlsDomain

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)


def _probe(state: str, days: float | None = 20.0, **extra: Any) -> TlsProbe:
    return TlsProbe(
        host="127.0.0.1",
        port=8443,
        server_name="escrow.test",
        state=state,  # type: ignore[arg-type]
        checked_at=NOW,
        days_left=days,
        not_after=NOW + timedelta(days=days) if days is not None else None,
        **extra,
    )


class _Nothing:
    def docker(self) -> None:
        return None


def _rt(**tls: Any) -> Runtime:
    config = parse_config(
        {"tls": {"domains": [{"host": "127.0.0.1", "port": 8443, "server_name": "escrow.test"}], **tls}}
    )
    return Runtime(config, _Nothing(), say=lambda m: None, warn=lambda m: None)  # type: ignore[arg-type]


def test_config_rejects_a_critical_threshold_above_the_warning_one():
    with pytest.raises(ConfigError, match="tls.critical_days: 40 must not exceed warning_days"):
        parse_config({"tls": {"critical_days": 40}})


def test_config_names_a_bad_domain_field():
    with pytest.raises(ConfigError, match=r"tls.domains.0.port"):
        parse_config({"tls": {"domains": [{"host": "a.example", "port": 0}]}})
    with pytest.raises(ConfigError, match=r"tls.domains.0.host"):
        parse_config({"tls": {"domains": [{"host": "bad host"}]}})
    with pytest.raises(ConfigError, match=r"tls.domains.0.colour: unknown field"):
        parse_config({"tls": {"domains": [{"host": "a.example", "colour": "red"}]}})


def test_config_refuses_a_domain_listed_twice():
    with pytest.raises(ConfigError, match="listed more than once: a.example"):
        parse_config({"tls": {"domains": [{"host": "a.example"}, {"host": "a.example", "port": 443}]}})


def test_domains_are_found_by_label_sni_or_host():
    settings = TlsConfig(domains=[TlsDomain(host="127.0.0.1", port=8443, server_name="escrow.test")])
    assert settings.domain("escrow.test").port == 8443
    assert settings.domain("escrow.test@127.0.0.1:8443").port == 8443
    assert settings.domain("127.0.0.1").port == 8443
    with pytest.raises(KeyError, match="'other.test' is not one of tls.domains"):
        settings.domain("other.test")


def test_list_domains_needs_domains_and_names_an_unknown_one():
    with pytest.raises(ConfigError, match="tls.domains is empty"):
        flow.list_domains(Runtime(parse_config({}), _Nothing()))  # type: ignore[arg-type]
    rt = _rt()
    assert [d.sni for d in flow.list_domains(rt, [])] == ["escrow.test"]
    with pytest.raises(ConfigError, match="'nope.test' is not one of tls.domains"):
        flow.list_domains(rt, ["nope.test"])


def test_certbot_arguments_renew_the_named_lineage_with_the_configured_directories():
    settings = TlsConfig(
        certbot_config_dir="/etc/le",
        certbot_server="https://acme.example/dir",
        certbot_extra_args=["--quiet"],
    )
    domain = TlsDomain(host="127.0.0.1", server_name="escrow.test", cert_name="escrow")

    argv = renewal.certbot_argv(settings, domain)

    assert argv[:3] == ["certbot", "renew", "--cert-name"] and argv[3] == "escrow"
    assert "--force-renewal" in argv and "--no-random-sleep-on-renew" in argv and "--non-interactive" in argv
    assert argv[argv.index("--config-dir") + 1] == "/etc/le"
    assert argv[argv.index("--server") + 1] == "https://acme.example/dir"
    assert "--work-dir" not in argv
    assert argv[-1] == "--quiet"


def test_certbot_certonly_names_the_domain_and_its_arguments():
    settings = TlsConfig(certbot_action="certonly", certbot_certonly_args=["--webroot", "-w", "/srv/acme"])
    argv = renewal.certbot_argv(settings, TlsDomain(host="escrow.example"))
    assert argv[:6] == ["certbot", "certonly", "--cert-name", "escrow.example", "-d", "escrow.example"]
    assert argv[argv.index("-w") + 1] == "/srv/acme"


class FakeDockerClient:
    """The three calls of ``docker.APIClient`` a docker-mode renewal makes."""

    def __init__(self, exit_codes: dict[str, int]) -> None:
        self.exit_codes = exit_codes
        self.execs: list[tuple[str, list[str], dict[str, str] | None]] = []

    def exec_create(self, container: str, cmd: list[str], environment: dict[str, str] | None = None) -> dict:
        self.execs.append((container, cmd, environment))
        return {"Id": f"exec-{len(self.execs)}"}

    def exec_start(self, exec_id: str) -> bytes:
        return f"output of {exec_id}".encode()

    def exec_inspect(self, exec_id: str) -> dict:
        container = self.execs[int(exec_id.split("-")[1]) - 1][0]
        return {"ExitCode": self.exit_codes.get(container, 0)}


def test_docker_mode_runs_certbot_and_the_reload_in_their_containers():
    settings = TlsConfig(certbot_ca_bundle="/etc/acme-ca.pem")
    client = FakeDockerClient({})
    runner = renewal.DockerRunner(client)
    domain = TlsDomain(host="escrow.example")

    renewal.run_certbot(runner, settings, domain)
    renewal.reload_nginx(runner, settings)

    (certbot_container, certbot_cmd, certbot_env), (nginx_container, nginx_cmd, _) = client.execs
    assert certbot_container == "certbot" and certbot_cmd[:2] == ["certbot", "renew"]
    assert certbot_env == {"REQUESTS_CA_BUNDLE": "/etc/acme-ca.pem"}
    assert nginx_container == "nginx" and nginx_cmd == ["nginx", "-s", "reload"]


def test_a_failing_certbot_in_docker_stops_before_the_reload():
    client = FakeDockerClient({"certbot": 1})
    runner = renewal.DockerRunner(client)
    with pytest.raises(
        renewal.RenewalError, match=r"certbot renew of escrow.example failed \(exit 1\).*output of exec-1"
    ):
        renewal.run_certbot(runner, TlsConfig(), TlsDomain(host="escrow.example"))


class _NoRenewalYet:
    """A bucket holding no renewal record (all a forced renewal reads before certbot)."""

    def exists(self, key: str) -> bool:
        return False


class _NoDocker(_Nothing):
    def store(self) -> _NoRenewalYet:
        return _NoRenewalYet()


def test_docker_mode_without_a_docker_connection_is_a_config_error():
    config = parse_config({"tls": {"executor": "docker", "domains": [{"host": "127.0.0.1", "port": 8443}]}})
    rt = Runtime(config, _NoDocker(), say=lambda m: None, warn=lambda m: None)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="tls.executor is docker but no Docker connection"):
        flow.renew_domain(rt, rt.config.tls.domains[0], _probe("ok", 60).as_dict(), force=True)


def test_a_local_program_that_is_missing_is_named():
    with pytest.raises(renewal.RenewalError, match="no-such-certbot is not installed"):
        renewal.LocalRunner().run(["no-such-certbot"], env={}, timeout=5, where="")


@pytest.mark.parametrize(
    ("state", "alert"),
    [
        ("ok", None),
        ("warning", None),
        ("critical", "TLSCertExpiringSoon"),
        ("expired", "TLSCertExpiringSoon"),
        ("invalid", "TLSCertExpiringSoon"),
        ("unreachable", "TLSEndpointUnreachable"),
    ],
)
def test_each_state_has_its_alert(state, alert):
    finding = flow.finding_for(
        _probe(
            state,
            None if state == "unreachable" else 5,
            error="boom" if state in ("invalid", "unreachable") else None,
        )
    )
    if alert is None:
        assert finding is None
    else:
        assert finding is not None and finding.alert_name == alert
        assert finding.severity == "P2" and finding.runbook == "RB-004"
        assert finding.labels == {"domain": "escrow.test@127.0.0.1:8443", "state": state}


def test_metrics_mark_exactly_one_state_and_the_days_left():
    points = flow.metrics_for(_probe("critical", 7.5))
    states = {p.labels["state"]: p.value for p in points if p.name == "stellar_tls_cert_state"}
    assert set(states) == set(STATES)
    assert [s for s, v in states.items() if v == 1.0] == ["critical"]
    (expiry,) = [p for p in points if p.name == "stellar_tls_cert_expiry_days"]
    assert expiry.value == 7.5 and expiry.labels == {"domain": "escrow.test@127.0.0.1:8443"}
    assert not [
        p for p in flow.metrics_for(_probe("unreachable", None)) if p.name == "stellar_tls_cert_expiry_days"
    ]


def test_latest_entry_has_exactly_the_shape_the_health_check_reads():
    entry = flow.latest_entry(_probe("warning", 20.0, error=None).as_dict())
    assert list(entry) == ["host", "port", "server_name", "state", "days_left", "not_after", "error"]
    assert entry["not_after"] == (NOW + timedelta(days=20)).isoformat()
