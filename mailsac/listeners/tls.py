"""Server TLS contexts for the listeners (POP3 ``STLS`` today), from PEM files."""

from __future__ import annotations

import ssl

from mailsac.config import SettingsError


def tls_context(cert: str, key: str) -> ssl.SSLContext | None:
    """A server context (TLS 1.2+) from a PEM chain and key; None when either is empty.

    Raises :class:`~mailsac.config.SettingsError` when the files cannot be loaded.
    """
    if not (cert and key):
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise SettingsError(f"MAILSAC_TLS_CERT/MAILSAC_TLS_KEY: cannot load: {exc}") from exc
    return context
