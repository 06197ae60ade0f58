"""Wiring of the POP3 listener into the service (called from :mod:`mailsac.app`).

Admission: the POP3 listener has an :class:`Admission` of its own, with the same caps as
SMTP (``MAILSAC_MAX_CONNECTIONS*``, ``MAILSAC_ADMISSION_TIMEOUT``) and the same
event-loop-lag overload signal. Its own, because POP3 sessions are long-lived (clients
keep them open while they poll, up to the 10-minute autologout of RFC 1939 §3): sharing
SMTP's slots would let a CI runner's readers starve its own mail intake, and SMTP's
``sessions_*`` metrics stay SMTP-only. Sessions that have not logged in yet also hold a
slot of a second, smaller admission (``MAILSAC_POP3_PRELOGIN_*``, no waiting).

The composition root passes in only the collaborators the listener needs; this module
never imports :mod:`mailsac.app`. The certificate store (:mod:`mailsac.listeners.tls`) is
the one SMTP uses, passed in by the composition root.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mailsac.listeners.admission import Admission
from mailsac.listeners.proxy import TrustedProxies
from mailsac.listeners.tls import CertificateStore
from mailsac.pop3.login import LoginChecker
from mailsac.pop3.server import DenyCheck, Pop3Listener

if TYPE_CHECKING:
    from mailsac.access import KeyAuthenticator
    from mailsac.config import Settings
    from mailsac.loopmon import LoopMonitor
    from mailsac.mailbox import Mailboxes


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
    if settings.pop3_login_timeout <= 0 or settings.pop3_max_session_seconds <= 0:
        raise SettingsError("MAILSAC_POP3_LOGIN_TIMEOUT and MAILSAC_POP3_MAX_SESSION_SECONDS "
                            "must be positive")
    if min(settings.pop3_prelogin_per_ip, settings.pop3_prelogin_per_network,
           settings.pop3_prelogin_total) < 1:
        raise SettingsError("MAILSAC_POP3_PRELOGIN_* must be at least 1")


def build_pop3(
    settings: Settings, *, auth: KeyAuthenticator, mailboxes: Mailboxes,
    loop_monitor: LoopMonitor, denied: DenyCheck | None = None,
    tls: CertificateStore | None = None,
) -> Pop3Listener:
    """The POP3 listener over the key authenticator and mailboxes.

    ``denied`` is the deny-list check (client IP -> reason, or None), e.g. the SMTP
    gate's ``deny.match_ip`` wrapped by the composition root.
    """
    check_settings(settings)
    admission = Admission(
        max_total=settings.max_connections, max_per_ip=settings.max_connections_per_ip,
        max_per_network=settings.max_connections_per_network,
        wait_timeout=settings.admission_timeout, overloaded=lambda: loop_monitor.lag > 1.0)
    loop_monitor.on_tick.append(admission.poke)
    prelogin = Admission(
        max_total=settings.pop3_prelogin_total, max_per_ip=settings.pop3_prelogin_per_ip,
        max_per_network=settings.pop3_prelogin_per_network, wait_timeout=0.0)
    checker = LoginChecker(
        auth, mailboxes, delay=settings.pop3_auth_delay,
        max_failures=settings.pop3_auth_failures, window=settings.pop3_auth_window)
    return Pop3Listener(
        checker, mailboxes, hostname=settings.effective_hostname(),
        timeout=settings.pop3_timeout, admission=admission,
        tls=tls, prelogin=prelogin,
        denied=denied, plaintext_loopback=settings.pop3_plaintext_loopback,
        login_timeout=settings.pop3_login_timeout,
        max_session_seconds=settings.pop3_max_session_seconds,
        proxies=TrustedProxies(settings.trusted_proxies), proxy_timeout=settings.proxy_timeout)
