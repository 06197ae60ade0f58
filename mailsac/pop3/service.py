"""Wiring of the POP3 listener into the service (called from :mod:`mailsac.app`).

Admission: the POP3 listener has an :class:`Admission` of its own, with the same caps as
SMTP (``MAILSAC_MAX_CONNECTIONS*``, ``MAILSAC_ADMISSION_TIMEOUT``) and the same
event-loop-lag overload signal. Its own, because POP3 sessions are long-lived (clients
keep them open while they poll, up to the 10-minute autologout of RFC 1939 §3): sharing
SMTP's slots would let a CI runner's readers starve its own mail intake, and SMTP's
``sessions_*`` metrics stay SMTP-only.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

from mailsac.pop3.login import LoginChecker
from mailsac.pop3.server import Pop3Listener
from mailsac.smtp.admission import Admission

if TYPE_CHECKING:
    from mailsac.app import Services
    from mailsac.config import Settings


def check_settings(settings: Settings) -> None:
    """Validate the POP3 and TLS settings (raises ``SettingsError``)."""
    from mailsac.config import SettingsError

    if not 0 <= settings.pop3_port <= 65535:
        raise SettingsError(f"pop3_port must be between 0 and 65535, not {settings.pop3_port}")
    if settings.pop3_timeout <= 0 or settings.pop3_auth_delay < 0:
        raise SettingsError("MAILSAC_POP3_TIMEOUT must be positive and "
                            "MAILSAC_POP3_AUTH_DELAY not negative")
    if settings.pop3_auth_failures < 1 or settings.pop3_auth_window <= 0:
        raise SettingsError("MAILSAC_POP3_AUTH_FAILURES and MAILSAC_POP3_AUTH_WINDOW "
                            "must be positive")
    if bool(settings.tls_cert) != bool(settings.tls_key):
        raise SettingsError("set both MAILSAC_TLS_CERT and MAILSAC_TLS_KEY, or neither")


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """A server TLS context from the PEM files, or None when TLS is not configured."""
    if not (settings.tls_cert and settings.tls_key):
        return None
    from mailsac.config import SettingsError

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(settings.tls_cert, settings.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise SettingsError(f"MAILSAC_TLS_CERT/MAILSAC_TLS_KEY: cannot load: {exc}") from exc
    return context


def build_pop3(services: Services, settings: Settings) -> Pop3Listener:
    """The POP3 listener over the service's key authenticator and mailboxes."""
    check_settings(settings)
    monitor = services.loop_monitor
    admission = Admission(
        max_total=settings.max_connections, max_per_ip=settings.max_connections_per_ip,
        max_per_network=settings.max_connections_per_network,
        wait_timeout=settings.admission_timeout, overloaded=lambda: monitor.lag > 1.0)
    monitor.on_tick.append(admission.poke)
    checker = LoginChecker(
        services.auth, services.mailboxes, delay=settings.pop3_auth_delay,
        max_failures=settings.pop3_auth_failures, window=settings.pop3_auth_window)
    return Pop3Listener(
        checker, services.mailboxes, hostname=settings.effective_hostname(),
        timeout=settings.pop3_timeout, admission=admission, tls=tls_context(settings))
