"""Certificates made on the spot for the local stack, the tests and the benchmark (``cryptography``).

:class:`LocalCA` is a root that signs intermediates and leaves with any validity window, including
ones already expired, so every state of :mod:`stellar_ops.probes.tls` can be served for real.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Issued:
    cert: x509.Certificate
    key: Any
    chain: tuple[x509.Certificate, ...] = ()  # intermediates, leaf-side first

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def fullchain_pem(self) -> bytes:
        return self.cert_pem() + b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self.chain)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(  # type: ignore[no-any-return]
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def write(self, directory: Path, name: str) -> tuple[Path, Path]:
        """``<name>.fullchain.pem`` and ``<name>.key.pem`` in ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        cert_path, key_path = directory / f"{name}.fullchain.pem", directory / f"{name}.key.pem"
        cert_path.write_bytes(self.fullchain_pem())
        key_path.write_bytes(self.key_pem())
        key_path.chmod(0o600)
        return cert_path, key_path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key() -> Any:
    return ec.generate_private_key(ec.SECP256R1())


class LocalCA:
    """A root CA; :meth:`intermediate` and :meth:`leaf` issue below it."""

    def __init__(self, name: str = "Stellar Ops Test Root", *, days: float = 3650) -> None:
        self.key = _key()
        now = datetime.now(UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(_name(name))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        self.issued = Issued(self.cert, self.key)

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def write_bundle(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.cert_pem())
        return path

    def intermediate(self, name: str = "Stellar Ops Test Intermediate", *, days: float = 1825) -> Issued:
        key = _key()
        now = datetime.now(UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )
        return Issued(cert, key)

    def leaf(
        self,
        *names: str,
        days: float = 90,
        not_before_days: float = -1,
        issuer: Issued | None = None,
    ) -> Issued:
        """A server certificate for ``names`` (DNS names or IPs), valid from now + ``not_before_days``
        for ``days`` (a negative end makes it already expired)."""
        signer = issuer or self.issued
        key = _key()
        now = datetime.now(UTC)
        alt: list[x509.GeneralName] = []
        for name in names or ("localhost",):
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                alt.append(x509.DNSName(name))
        start = now + timedelta(days=not_before_days)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name((names or ("localhost",))[0]))
            .issuer_name(signer.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(min(start, now + timedelta(days=days) - timedelta(minutes=1)))
            .not_valid_after(now + timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.key.public_key()), critical=False
            )
            .sign(signer.key, hashes.SHA256())
        )
        chain = () if issuer is None else (issuer.cert, *issuer.chain)
        return Issued(cert, key, chain)


def self_signed(*names: str, days: float = 90) -> Issued:
    """A certificate that is its own issuer (what nginx serves before its first real one)."""
    return _self_signed_leaf(names, days)


def _self_signed_leaf(names: tuple[str, ...], days: float) -> Issued:
    key = _key()
    now = datetime.now(UTC)
    chosen = names or ("localhost",)
    alt: list[x509.GeneralName] = []
    for name in chosen:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(chosen[0]))
        .issuer_name(_name(chosen[0]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert, key)
