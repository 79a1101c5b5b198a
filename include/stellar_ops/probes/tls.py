"""One TLS endpoint, probed for real: a handshake verified against the system CAs or a bundle.

:func:`probe` connects (its own timeout), completes a TLS handshake (its own timeout) with chain
and hostname verification, and reads the verified chain: the leaf's notAfter, the earliest
notAfter over the whole chain (an intermediate that expires first counts), issuer, SANs and the
negotiated TLS version. It never raises for what it finds: the answer is a :class:`TlsProbe`
whose ``state`` is one of :data:`STATES`.

- ``unreachable``: no TLS answer at all (DNS, refused, connect or handshake timeout, reset);
- ``expired``: the chain verified except that a certificate in it is past its notAfter;
- ``invalid``: a certificate was served but cannot be trusted (unknown CA, self-signed, wrong
  hostname, not yet valid, not TLS);
- ``critical`` / ``warning`` / ``ok``: verified, by days left against the thresholds.

An expired certificate never reads as a host that is down, nor the reverse: reaching the host
and judging its certificate are separate stages. When verification fails, a second handshake
without verification reads the served certificate so the result still names its dates.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

State = Literal["ok", "warning", "critical", "expired", "invalid", "unreachable"]
STATES: tuple[State, ...] = ("ok", "warning", "critical", "expired", "invalid", "unreachable")
# How bad each state is, for sorting and for a run's overall verdict.
SEVERITY_ORDER: dict[State, int] = {
    "ok": 0,
    "warning": 1,
    "critical": 2,
    "expired": 3,
    "invalid": 3,
    "unreachable": 3,
}
DEFAULT_WARNING_DAYS = 30.0
DEFAULT_CRITICAL_DAYS = 14.0

# OpenSSL's X509_V_ERR_* codes that say what was wrong with a verified chain.
_EXPIRED_CODES = {10}  # certificate has expired (leaf or any certificate of the chain)
_HOSTNAME_CODES = {62}  # hostname mismatch


@dataclass(frozen=True)
class Target:
    """Where to probe: ``server_name`` is the SNI name and the name verified (default: host)."""

    host: str
    port: int = 443
    server_name: str | None = None
    ca_bundle: str | None = None

    @property
    def sni(self) -> str:
        return self.server_name or self.host

    @property
    def label(self) -> str:
        """``name`` for port 443 on its own host, else ``name@host:port``: the metrics' domain label."""
        if self.port == 443 and self.sni == self.host:
            return self.sni
        return f"{self.sni}@{self.host}:{self.port}"


@dataclass(frozen=True)
class CertInfo:
    subject: str
    issuer: str
    serial: str  # hex
    not_before: datetime
    not_after: datetime
    sans: tuple[str, ...]


@dataclass(frozen=True)
class TlsProbe:
    """What one probe found. Dates are UTC; ``days_left`` counts to the earliest notAfter."""

    host: str
    port: int
    server_name: str
    state: State
    checked_at: datetime
    days_left: float | None = None
    not_after: datetime | None = None  # the leaf's
    chain_not_after: datetime | None = None  # the earliest over the verified chain
    expiring_subject: str | None = None  # the certificate with that earliest notAfter
    issuer: str | None = None
    subject: str | None = None
    serial: str | None = None
    sans: tuple[str, ...] = ()
    tls_version: str | None = None
    verified: bool = False
    error: str | None = None
    handshake_seconds: float | None = None
    chain: tuple[CertInfo, ...] = field(default=(), repr=False)

    @property
    def label(self) -> str:
        return Target(self.host, self.port, self.server_name).label

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: dates as ISO 8601 strings, the chain as a list of objects."""
        out = asdict(self)
        out["domain"] = self.label
        for key in ("checked_at", "not_after", "chain_not_after"):
            value = getattr(self, key)
            out[key] = value.isoformat() if value is not None else None
        out["sans"] = list(self.sans)
        out["chain"] = [
            {
                **asdict(cert),
                "not_before": cert.not_before.isoformat(),
                "not_after": cert.not_after.isoformat(),
                "sans": list(cert.sans),
            }
            for cert in self.chain
        ]
        return out


def classify(days_left: float, *, warning_days: float, critical_days: float) -> State:
    """The state of a verified chain with ``days_left`` until its earliest notAfter."""
    if days_left <= 0:
        return "expired"
    if days_left < critical_days:
        return "critical"
    if days_left < warning_days:
        return "warning"
    return "ok"


def parse_der(der: bytes) -> CertInfo:
    from cryptography import x509

    cert = x509.load_der_x509_certificate(der)
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        sans = tuple(
            [str(name) for name in ext.value.get_values_for_type(x509.DNSName)]
            + [str(ip) for ip in ext.value.get_values_for_type(x509.IPAddress)]
        )
    except x509.ExtensionNotFound:
        sans = ()
    return CertInfo(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        serial=f"{cert.serial_number:x}",
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        sans=sans,
    )


def _context(ca_bundle: str | None, *, verify: bool) -> ssl.SSLContext:
    if not verify:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    try:
        return ssl.create_default_context(cafile=ca_bundle) if ca_bundle else ssl.create_default_context()
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"CA bundle {ca_bundle} cannot be loaded: {exc}") from None


class _Unreachable(Exception):
    pass


def _handshake(
    target: Target, context: ssl.SSLContext, connect_timeout: float, handshake_timeout: float
) -> tuple[list[bytes], str | None, float]:
    """DER chain (verified one when verifying, else as served), TLS version, handshake seconds."""
    try:
        raw = socket.create_connection((target.host, target.port), timeout=connect_timeout)
    except socket.gaierror as exc:
        raise _Unreachable(f"cannot resolve {target.host}: {exc.strerror or exc}") from None
    except TimeoutError:
        raise _Unreachable(
            f"connect to {target.host}:{target.port} timed out after {connect_timeout:g}s"
        ) from None
    except OSError as exc:
        raise _Unreachable(f"cannot connect to {target.host}:{target.port}: {exc.strerror or exc}") from None
    started = time.monotonic()
    try:
        raw.settimeout(handshake_timeout)
        with context.wrap_socket(raw, server_hostname=target.sni) as tls:
            seconds = time.monotonic() - started
            sslobj = tls._sslobj  # type: ignore[attr-defined]
            getter = (
                sslobj.get_verified_chain
                if context.verify_mode != ssl.CERT_NONE
                else sslobj.get_unverified_chain
            )
            chain = [cert.public_bytes(ssl._ssl.ENCODING_DER) for cert in (getter() or [])]  # type: ignore[attr-defined]
            if not chain:
                leaf = tls.getpeercert(binary_form=True)
                chain = [leaf] if leaf else []
            return chain, tls.version(), seconds
    except TimeoutError:
        raise _Unreachable(
            f"TLS handshake with {target.host}:{target.port} timed out after {handshake_timeout:g}s"
        ) from None
    except ssl.SSLCertVerificationError:
        raise
    except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
        raise _Unreachable(
            f"{target.host}:{target.port} closed the connection during the TLS handshake"
        ) from None
    except ssl.SSLError:
        raise
    except (ConnectionError, OSError) as exc:
        raise _Unreachable(
            f"connection to {target.host}:{target.port} closed during the TLS handshake: {exc.strerror or exc}"
        ) from None
    finally:
        raw.close()


def probe(
    host: str,
    port: int = 443,
    *,
    server_name: str | None = None,
    ca_bundle: str | None = None,
    connect_timeout: float = 5.0,
    handshake_timeout: float = 10.0,
    warning_days: float = DEFAULT_WARNING_DAYS,
    critical_days: float = DEFAULT_CRITICAL_DAYS,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> TlsProbe:
    """Probe ``host:port`` with SNI ``server_name`` (default: host); see the module docstring."""
    return probe_target(
        Target(host, port, server_name, ca_bundle),
        connect_timeout=connect_timeout,
        handshake_timeout=handshake_timeout,
        warning_days=warning_days,
        critical_days=critical_days,
        now=now,
    )


def probe_target(
    target: Target,
    *,
    connect_timeout: float = 5.0,
    handshake_timeout: float = 10.0,
    warning_days: float = DEFAULT_WARNING_DAYS,
    critical_days: float = DEFAULT_CRITICAL_DAYS,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> TlsProbe:
    """Probe ``target``; see the module docstring for the states."""
    if not 0 < target.port < 65536:
        raise ValueError(f"port {target.port} of {target.host} is not a TCP port")
    checked_at = now()
    base: dict[str, Any] = {
        "host": target.host,
        "port": target.port,
        "server_name": target.sni,
        "checked_at": checked_at,
    }
    try:
        verifying = _context(target.ca_bundle, verify=True)
    except ValueError as exc:
        return TlsProbe(**base, state="invalid", error=str(exc))
    try:
        ders, version, seconds = _handshake(target, verifying, connect_timeout, handshake_timeout)
    except _Unreachable as exc:
        return TlsProbe(**base, state="unreachable", error=str(exc))
    except ssl.SSLCertVerificationError as exc:
        code = exc.verify_code
        state: State = "expired" if code in _EXPIRED_CODES else "invalid"
        reason = exc.verify_message or exc.reason or str(exc)
        if code in _HOSTNAME_CODES:
            reason = f"certificate does not name {target.sni}: {reason}"
        return _unverified(
            target,
            base,
            state,
            f"certificate verification failed: {reason}",
            connect_timeout,
            handshake_timeout,
            checked_at,
        )
    except ssl.SSLError as exc:
        return _unverified(
            target,
            base,
            "invalid",
            f"TLS handshake failed: {exc.reason or exc}",
            connect_timeout,
            handshake_timeout,
            checked_at,
        )
    chain = tuple(parse_der(der) for der in ders)
    if not chain:
        return TlsProbe(**base, state="invalid", error="the server sent no certificate")
    return _judged(base, chain, version, seconds, checked_at, warning_days, critical_days)


def _judged(
    base: dict[str, Any],
    chain: tuple[CertInfo, ...],
    version: str | None,
    seconds: float,
    checked_at: datetime,
    warning_days: float,
    critical_days: float,
) -> TlsProbe:
    leaf = chain[0]
    earliest = min(chain, key=lambda cert: cert.not_after)
    days_left = (earliest.not_after - checked_at).total_seconds() / 86400
    return TlsProbe(
        **base,
        state=classify(days_left, warning_days=warning_days, critical_days=critical_days),
        days_left=round(days_left, 3),
        not_after=leaf.not_after,
        chain_not_after=earliest.not_after,
        expiring_subject=earliest.subject,
        issuer=leaf.issuer,
        subject=leaf.subject,
        serial=leaf.serial,
        sans=leaf.sans,
        tls_version=version,
        verified=True,
        handshake_seconds=round(seconds, 4),
        chain=chain,
    )


def _unverified(
    target: Target,
    base: dict[str, Any],
    state: State,
    error: str,
    connect_timeout: float,
    handshake_timeout: float,
    checked_at: datetime,
) -> TlsProbe:
    """The failed verification's state, with what the served chain says when it can be read."""
    try:
        ders, version, seconds = _handshake(
            target, _context(None, verify=False), connect_timeout, handshake_timeout
        )
        chain = tuple(parse_der(der) for der in ders)
    except (_Unreachable, ssl.SSLError, ValueError):
        return TlsProbe(**base, state=state, error=error)
    if not chain:
        return TlsProbe(**base, state=state, error=error)
    leaf = chain[0]
    earliest = min(chain, key=lambda cert: cert.not_after)
    return TlsProbe(
        **base,
        state=state,
        days_left=round((earliest.not_after - checked_at).total_seconds() / 86400, 3),
        not_after=leaf.not_after,
        chain_not_after=earliest.not_after,
        expiring_subject=earliest.subject,
        issuer=leaf.issuer,
        subject=leaf.subject,
        serial=leaf.serial,
        sans=leaf.sans,
        tls_version=version,
        verified=False,
        error=error,
        handshake_seconds=round(seconds, 4),
        chain=chain,
    )


def probe_many(
    targets: Sequence[Target] | Iterable[Target],
    *,
    max_workers: int = 16,
    **options: Any,
) -> list[TlsProbe]:
    """:func:`probe_target` each target concurrently (at most ``max_workers`` at once), in input order."""
    chosen = list(targets)
    if not chosen:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(chosen)))) as pool:
        return list(pool.map(lambda t: probe_target(t, **options), chosen))
