"""The certificate store and the generated certificate, on real files (no server)."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest
from cryptography import x509

from mailsac.config import SettingsError
from mailsac.listeners import selfsigned
from mailsac.listeners.tls import CertificateStore, fingerprint
from tests.tlsutil import make_certificate, pem_fingerprint


def _names(cert: Path) -> set[str]:
    loaded = x509.load_pem_x509_certificate(cert.read_bytes())
    san = loaded.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return ({str(v) for v in san.get_values_for_type(x509.IPAddress)}
            | set(san.get_values_for_type(x509.DNSName)))


def test_generated_once_then_reused(tmp_path: Path) -> None:
    cert, key = selfsigned.ensure(tmp_path / "tls", "mx.example.test")
    assert key.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "tls").stat().st_mode & 0o777 == 0o700
    assert _names(cert) == {"mx.example.test", "localhost", "127.0.0.1", "::1"}
    first = pem_fingerprint(cert)
    selfsigned.ensure(tmp_path / "tls", "mx.example.test")
    assert pem_fingerprint(cert) == first
    assert fingerprint(cert.read_bytes()) == first  # the store's format: AB:CD:…


def test_a_new_hostname_renews_only_our_own_certificate(tmp_path: Path) -> None:
    directory = tmp_path / "tls"
    cert, _ = selfsigned.ensure(directory, "old.example.test")
    first = pem_fingerprint(cert)
    selfsigned.ensure(directory, "new.example.test")
    assert pem_fingerprint(cert) != first and "new.example.test" in _names(cert)
    # an operator's certificate in the same place is never replaced
    make_certificate(directory)
    operators = pem_fingerprint(cert)
    selfsigned.ensure(directory, "other.example.test")
    assert pem_fingerprint(cert) == operators


def test_the_generated_certificate_verifies_for_its_names(tmp_path: Path) -> None:
    cert, key = selfsigned.ensure(tmp_path, "mx.example.test")
    client = ssl.create_default_context(cafile=str(cert))
    client.verify_flags |= ssl.VERIFY_X509_STRICT  # what newer Pythons check by default
    for name in ("mx.example.test", "localhost", "127.0.0.1"):
        server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server.load_cert_chain(cert, key)
        c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
        c = client.wrap_bio(c_in, c_out, server_hostname=name)
        s = server.wrap_bio(s_in, s_out, server_side=True)
        for _ in range(10):  # drive the handshake in memory
            for side, out, peer_in in ((c, c_out, s_in), (s, s_out, c_in)):
                try:
                    side.do_handshake()
                except ssl.SSLWantReadError:
                    pass
                peer_in.write(out.read())
        assert c.version() in ("TLSv1.2", "TLSv1.3"), name
        assert c.getpeercert()["subjectAltName"]


def test_a_bad_certificate_is_a_settings_error(tmp_path: Path) -> None:
    cert, _ = make_certificate(tmp_path, prefix="a-")
    _, other_key = make_certificate(tmp_path, prefix="b-")
    with pytest.raises(SettingsError, match="cannot load"):
        CertificateStore(cert, other_key).load()  # the key does not match


async def test_reload_swaps_or_keeps_the_previous_certificate(tmp_path: Path) -> None:
    cert, key = make_certificate(tmp_path)
    store = CertificateStore(cert, key)
    store.load()
    old_context, old = store.context, store.fingerprint
    assert old == pem_fingerprint(cert)
    good = cert.read_bytes()
    cert.write_bytes(b"-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n")
    assert await store.reload("test") is False
    assert store.context is old_context and store.fingerprint == old
    cert.write_bytes(good)
    make_certificate(tmp_path)  # a new pair in the same files
    assert await store.reload("test") is True
    assert store.context is not old_context and store.fingerprint == pem_fingerprint(cert)
    assert store.fingerprint != old


async def test_watch_reloads_changed_files(tmp_path: Path) -> None:
    cert, key = make_certificate(tmp_path)
    store = CertificateStore(cert, key)
    store.load()
    old = store.fingerprint
    watcher = asyncio.create_task(store.watch(0.02))
    try:
        make_certificate(tmp_path)
        async with asyncio.timeout(30):
            while store.fingerprint == old:
                await asyncio.sleep(0.02)
        assert store.fingerprint == pem_fingerprint(cert) and store.reloads == 1
    finally:
        watcher.cancel()
