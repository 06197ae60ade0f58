"""TLS helpers for tests: certificates made with ``cryptography`` and client contexts."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import socket
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def make_certificate(directory: Path, names: tuple[str, ...] = ("localhost", "127.0.0.1"),
                     prefix: str = "") -> tuple[Path, Path]:
    """A self-signed certificate and key (PEM files in ``directory``) for ``names``."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    alt: list[x509.GeneralName] = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / f"{prefix}cert.pem", directory / f"{prefix}key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def trusting(cert: Path) -> ssl.SSLContext:
    """A client context that trusts only ``cert`` and checks host names."""
    context = ssl.create_default_context(cafile=str(cert))
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
    return context


def der_fingerprint(der: bytes) -> str:
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


def pem_fingerprint(cert: Path) -> str:
    return der_fingerprint(ssl.PEM_cert_to_DER_cert(cert.read_text()))


def smtp_fingerprint(port: int, *, implicit: bool = False) -> str:
    """The SHA-256 fingerprint of the certificate a new SMTP (STARTTLS) or SMTPS
    connection to 127.0.0.1:``port`` is shown (no verification: any certificate)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        if not implicit:
            f = sock.makefile("rb")
            assert f.readline().startswith(b"220")
            sock.sendall(b"EHLO fingerprint.test\r\n")
            while f.readline()[3:4] == b"-":
                pass
            sock.sendall(b"STARTTLS\r\n")
            assert f.readline().startswith(b"220"), "STARTTLS refused"
        with context.wrap_socket(sock, server_hostname="localhost") as tls:
            der = tls.getpeercert(binary_form=True)
            assert der is not None
            return der_fingerprint(der)
