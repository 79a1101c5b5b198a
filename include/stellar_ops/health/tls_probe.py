"""The certificates check's fresh probe, for domains without recent ``tls_cert_check`` results:
the shared probe (:mod:`stellar_ops.probes.tls`) reduced to the fields of the TLS procedure's
records (``host``, ``port``, ``server_name``, ``state``, ``days_left``, ``not_after``, ``error``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from stellar_ops.probes import tls

TlsState = Literal["ok", "warning", "critical", "expired", "invalid", "unreachable"]


@dataclass(frozen=True)
class CertProbe:
    host: str
    port: int
    server_name: str
    state: TlsState
    days_left: float | None = None
    not_after: str | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def probe(
    host: str,
    port: int = 443,
    server_name: str | None = None,
    *,
    ca_file: str | None = None,
    timeout: float = 5.0,
    warning_days: int = 30,
    critical_days: int = 7,
    now: datetime | None = None,
) -> CertProbe:
    """One handshake verified against ``ca_file`` (or the system's CAs), within ``timeout``."""
    found = tls.probe(
        host,
        port,
        server_name=server_name,
        ca_bundle=ca_file,
        connect_timeout=timeout,
        handshake_timeout=timeout,
        warning_days=warning_days,
        critical_days=critical_days,
        now=(lambda: now) if now is not None else (lambda: datetime.now(UTC)),
    )
    return CertProbe(
        host=host,
        port=port,
        server_name=found.server_name,
        state=found.state,
        days_left=round(found.days_left, 2) if found.days_left is not None else None,
        not_after=found.not_after.isoformat() if found.not_after is not None else None,
        error=found.error,
    )
