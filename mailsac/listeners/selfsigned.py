"""The self-signed certificate every listener uses when no certificate is configured.

Generated with :mod:`cryptography` on first start and kept under ``DATA_DIR/tls``
(``cert.pem``, ``key.pem`` with mode 0600), so clients can be told to trust one file that
survives restarts. An ECDSA P-256 key (cheap handshakes, supported by every TLS 1.2
client), valid for :data:`VALID_DAYS`, for the configured hostname plus ``localhost``,
``127.0.0.1`` and ``::1``. The subject carries :data:`MARKER` as its organization: only a
certificate with that marker is ever replaced (when it expires soon or no longer names the
hostname), never one an operator put in its place.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import secrets
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

log = logging.getLogger(__name__)

MARKER = "mailsac self-signed"
VALID_DAYS = 825
RENEW_BEFORE = datetime.timedelta(days=30)
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def _names(hostname: str) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for name in dict.fromkeys([hostname.lower(), *LOOPBACK_NAMES]):
        if not name:
            continue
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            try:
                names.append(x509.DNSName(name.encode("idna").decode("ascii")))
            except (UnicodeError, ValueError):
                log.warning("%r cannot be a certificate name; left out", name)
    return names


def generate(hostname: str) -> tuple[bytes, bytes]:
    """A new self-signed certificate and its private key, both PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    common_name = (hostname or "localhost")[:64]
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, MARKER)])
    now = datetime.datetime.now(datetime.UTC)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(public)
        .serial_number(int.from_bytes(secrets.token_bytes(16)) >> 1)
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(_names(hostname)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to a temp file created with ``mode``, then rename it into place."""
    partial = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def _replace_reason(cert_path: Path, hostname: str) -> str | None:
    """Why a certificate we generated must be replaced (None: keep it, or not ours)."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (OSError, ValueError):
        return None  # unreadable: the loader reports it; never overwrite what we don't know
    orgs = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    if not any(attr.value == MARKER for attr in orgs):
        return None  # an operator's certificate
    if cert.not_valid_after_utc - RENEW_BEFORE < datetime.datetime.now(datetime.UTC):
        return "it expires soon"
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return "it names no host"
    named = {str(v).lower() for v in san.get_values_for_type(x509.IPAddress)}
    named.update(v.lower() for v in san.get_values_for_type(x509.DNSName))
    wanted = {str(n.value).lower() for n in _names(hostname)}
    if not wanted <= named:
        return f"it does not name {hostname}"
    return None


def ensure(directory: Path, hostname: str) -> tuple[Path, Path]:
    """The generated certificate and key in ``directory``; created or renewed as needed.

    Blocking (file I/O and key generation): call it at start-up or in a thread.
    """
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    reason: str | None
    if not (cert_path.exists() and key_path.exists()):
        reason = "none exists yet"
    else:
        reason = _replace_reason(cert_path, hostname)
    if reason is not None:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        cert_pem, key_pem = generate(hostname)
        _write(key_path, key_pem, 0o600)  # the key first: a cert never pairs a stale key
        _write(cert_path, cert_pem, 0o644)
        log.warning("generated a self-signed TLS certificate for %s in %s (%s); clients "
                    "must trust %s, or set MAILSAC_TLS_CERT/MAILSAC_TLS_KEY",
                    hostname or "localhost", directory, reason, cert_path)
    return cert_path, key_path
