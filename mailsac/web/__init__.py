"""The web inbox viewer: server-rendered, tracker-free pages to read any inbox.

Everything is served from the service's own origin (templates, one stylesheet, one small
script). Reading works without JavaScript; the script only adds live updates and tabs.
Who may see what is decided by :mod:`mailsac.visibility` through
:class:`mailsac.mailbox.Mailboxes`; this package never re-implements those rules.
"""

from __future__ import annotations

from mailsac.web.routes import web_routes

__all__ = ["web_routes"]
