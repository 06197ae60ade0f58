"""POP3 access to inboxes (RFC 1939 with CAPA, UIDL, TOP, SASL PLAIN and STLS).

The user name is the inbox address and the password an API key that may read it under
the HTTP API's visibility rules. Modules: :mod:`~mailsac.pop3.wire` (framing),
:mod:`~mailsac.pop3.maildrop` (the per-session snapshot), :mod:`~mailsac.pop3.login`
(credentials, failure limit), :mod:`~mailsac.pop3.session` (the state machine),
:mod:`~mailsac.pop3.server` (listener, shutdown) and :mod:`~mailsac.pop3.service`
(wiring from settings).
"""

from __future__ import annotations

from mailsac.pop3.server import Pop3Listener
from mailsac.pop3.service import build_pop3, check_settings

__all__ = ["Pop3Listener", "build_pop3", "check_settings"]
