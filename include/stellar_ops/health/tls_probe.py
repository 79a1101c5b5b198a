"""A TLS handshake that reports the leaf certificate's days left, for domains without recent results.

Its result has the fields of the TLS procedure's records (``host``, ``port``, ``server_name``,
``state``, ``days_left``, ``not_after``, ``error``), so the shared probe can take its place
without changing the certificates check: :func:`probe` is the only entry point the check uses.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal

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


def _leaf_not_after(der: bytes) -> datetime:
    from cryptography import x509

    return x509.load_der_x509_certificate(der).not_valid_after_utc


def _handshake(host: str, port: int, server_name: str, context: ssl.SSLContext, timeout: float) -> bytes:
    with (
        socket.create_connection((host, port), timeout=timeout) as raw,
        context.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    if not der:
        raise ssl.SSLError(f"{server_name} presented no certificate")
    return der


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
    """Handshake with ``host:port`` verifying against ``ca_file`` (or the system's CAs) and the name."""
    name = server_name or host
    now = now or datetime.now(UTC)
    verified = ssl.create_default_context(cafile=ca_file)
    try:
        der = _handshake(host, port, name, verified, timeout)
    except ssl.SSLCertVerificationError as exc:
        # Read the certificate anyway, so an invalid one still shows when it ends.
        reason = exc.verify_message or str(exc)
        not_after = _unverified_not_after(host, port, name, timeout)
        expired = "expired" in reason or (not_after is not None and not_after <= now)
        return CertProbe(
            host,
            port,
            name,
            "expired" if expired else "invalid",
            _days(not_after, now),
            not_after.isoformat() if not_after else None,
            f"certificate not accepted: {reason}",
        )
    except (OSError, ssl.SSLError) as exc:
        return CertProbe(host, port, name, "unreachable", error=f"{type(exc).__name__}: {exc}"[:300])
    not_after = _leaf_not_after(der)
    days = _days(not_after, now)
    assert days is not None
    if days <= 0:
        state: TlsState = "expired"
    elif days < critical_days:
        state = "critical"
    elif days < warning_days:
        state = "warning"
    else:
        state = "ok"
    return CertProbe(host, port, name, state, days, not_after.isoformat())


def _unverified_not_after(host: str, port: int, name: str, timeout: float) -> datetime | None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        return _leaf_not_after(_handshake(host, port, name, context, timeout))
    except (OSError, ssl.SSLError, ValueError):
        return None


def _days(not_after: datetime | None, now: datetime) -> float | None:
    if not_after is None:
        return None
    return round((not_after - now).total_seconds() / 86400, 2)
