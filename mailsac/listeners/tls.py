"""One certificate store and TLS context builder for every listener (SMTP, SMTPS, POP3).

:class:`CertificateStore` holds the server's current :class:`ssl.SSLContext` (TLS 1.2+).
Its certificate is ``MAILSAC_TLS_CERT``/``MAILSAC_TLS_KEY`` when set, else a self-signed
one generated under ``DATA_DIR/tls`` (:mod:`mailsac.listeners.selfsigned`), so TLS works
out of the box. Listeners read :attr:`CertificateStore.context` for each new connection;
a reload (SIGHUP, or the files changed: :meth:`CertificateStore.watch` polls their
mtimes) builds a new context in a thread and swaps it in one assignment, so new
connections get the new certificate while established ones keep theirs. A reload that
fails (unreadable file, bad PEM, key not matching) is logged and the previous certificate
stays in use.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import ssl
from pathlib import Path
from typing import TYPE_CHECKING

from mailsac.config import SettingsError
from mailsac.listeners import selfsigned

if TYPE_CHECKING:
    from mailsac.config import Settings

log = logging.getLogger(__name__)

_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)
_Signature = tuple[tuple[int, int, int] | None, ...]


def server_context(cert: str | Path, key: str | Path) -> ssl.SSLContext:
    """A server context (TLS 1.2+, no renegotiation) from a PEM chain and key.

    Raises :class:`OSError` or :class:`ssl.SSLError` when the files cannot be loaded.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_RENEGOTIATION  # client-initiated renegotiation costs CPU
    context.load_cert_chain(cert, key)
    return context


def fingerprint(pem: bytes) -> str:
    """SHA-256 of the first certificate in ``pem``, as ``AB:CD:…`` (like ``openssl x509
    -fingerprint -sha256``)."""
    match = _PEM_CERT.search(pem)
    if match is None:
        raise ValueError("no PEM certificate found")
    der = ssl.PEM_cert_to_DER_cert(match.group(0).decode("ascii"))
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


class CertificateStore:
    """The current server certificate of all listeners, reloadable while running.

    ``generate_for`` (a hostname) makes it the self-signed store: the files are created
    (or renewed, see :func:`mailsac.listeners.selfsigned.ensure`) before each load.
    """

    def __init__(self, cert_path: Path, key_path: Path, *,
                 generate_for: str | None = None) -> None:
        self.cert_path = cert_path
        self.key_path = key_path
        self.generate_for = generate_for
        self.fingerprint = ""
        self.reloads = 0
        self._context: ssl.SSLContext | None = None
        self._loaded: _Signature = ()
        self._lock = asyncio.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> CertificateStore:
        if settings.tls_cert:
            return cls(Path(settings.tls_cert), Path(settings.tls_key))
        directory = settings.data_dir / "tls"
        return cls(directory / "cert.pem", directory / "key.pem",
                   generate_for=settings.effective_hostname())

    @property
    def generated(self) -> bool:
        return self.generate_for is not None

    @property
    def context(self) -> ssl.SSLContext:
        """The context new connections use (loaded by :meth:`load` at start-up)."""
        if self._context is None:
            raise RuntimeError("CertificateStore.load() was not called")
        return self._context

    def _signature(self) -> _Signature:
        out: list[tuple[int, int, int] | None] = []
        for path in (self.cert_path, self.key_path):
            try:
                st = os.stat(path)
            except OSError:
                out.append(None)
            else:
                out.append((st.st_mtime_ns, st.st_size, st.st_ino))
        return tuple(out)

    def _build(self) -> tuple[ssl.SSLContext, str, _Signature]:
        """Blocking: (re)generate if ours, read and check the files, build a context."""
        if self.generate_for is not None:
            selfsigned.ensure(self.cert_path.parent, self.generate_for)
        signature = self._signature()
        context = server_context(self.cert_path, self.key_path)
        return context, fingerprint(self.cert_path.read_bytes()), signature

    def _install(self, built: tuple[ssl.SSLContext, str, _Signature], why: str) -> None:
        self._context, self.fingerprint, self._loaded = built
        source = "DATA_DIR/tls" if self.generated else "MAILSAC_TLS_CERT"
        log.info("TLS certificate %s from %s (%s): SHA-256 fingerprint %s", why,
                 self.cert_path, source, self.fingerprint)

    def load(self) -> None:
        """Load at start-up (blocking). Raises :class:`SettingsError` when it cannot."""
        try:
            self._install(self._build(), "loaded")
        except (OSError, ValueError, ssl.SSLError) as exc:
            raise SettingsError(f"TLS certificate {self.cert_path} / key {self.key_path}: "
                                f"cannot load: {exc}") from exc

    async def reload(self, reason: str) -> bool:
        """Load the files again (in a thread) and swap the context; on failure log an
        error and keep the previous certificate. Returns whether it was swapped."""
        async with self._lock:
            try:
                built = await asyncio.to_thread(self._build)
            except (OSError, ValueError, ssl.SSLError) as exc:
                log.error("TLS certificate reload (%s) failed, keeping the previous "
                          "certificate %s: %s", reason, self.fingerprint, exc)
                return False
            self.reloads += 1
            self._install(built, f"reloaded ({reason})")
            return True

    async def watch(self, interval: float) -> None:
        """Reload when the files change (polled every ``interval`` s). A change is acted
        on once the files stayed the same for one interval, so a certificate and key that
        are replaced one after the other are loaded together; a failed reload is not
        retried until the files change again."""
        pending: _Signature | None = None
        failed: _Signature | None = None
        while True:
            await asyncio.sleep(interval)
            signature = await asyncio.to_thread(self._signature)
            if signature in (self._loaded, failed):
                pending = None
                continue
            if signature != pending:
                pending = signature  # changed: wait until it settles
                continue
            pending = None
            if not await self.reload("the files changed"):
                failed = signature

