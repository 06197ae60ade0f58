"""``web_routes()``: the viewer's routes, appended to the application's route list.

=================================================  =========================================
``GET /``                                          address form (domain pre-filled from
                                                   ``MAILSAC_UI_DOMAIN``) and key form
``GET /inbox?local=&domain=`` / ``?email=``        303 to ``/inbox/{email}``
``GET /inbox/{email}``                             message list, newest first (``?until=``)
``GET /inbox/{email}/list``                        the list alone (live refresh)
``GET /inbox/{email}/events``                      Server-Sent Events for live updates
``POST /inbox/{email}/purge``                      purge (key + CSRF token)
``GET /inbox/{email}/{id}``                        message page (``?view=html|text|headers|
                                                   raw|links|attachments``, ``&images=1``)
``GET /inbox/{email}/{id}/body``                   sanitized HTML for the sandboxed iframe
``GET /inbox/{email}/{id}/raw``                    raw source (``?download=1``)
``GET /inbox/{email}/{id}/attachments/{checksum}`` an attachment, always as a download
``POST /inbox/{email}/{id}/delete``                delete (key + CSRF token)
``POST /session`` / ``POST /session/end``          enter / forget a key
``GET /static/...``                                the stylesheet, script and icon
=================================================  =========================================
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from mailsac.web.actions import Actions
from mailsac.web.events import Events
from mailsac.web.pages import Pages
from mailsac.web.render import STATIC
from mailsac.web.state import WebUI

INBOX = "/inbox/{email}"
MESSAGE = INBOX + "/{id}"


def web_routes() -> list[BaseRoute]:
    """The web viewer's routes, sharing one :class:`WebUI` (templates, key sessions)."""
    ui = WebUI()
    pages, actions, events = Pages(ui), Actions(ui), Events(ui)
    return [
        Route("/", pages.index, methods=["GET"]),
        Route("/inbox", pages.open_inbox, methods=["GET"]),
        Route("/session", actions.start_session, methods=["POST"]),
        Route("/session/end", actions.end_session, methods=["POST"]),
        Route(INBOX, pages.inbox, methods=["GET"]),
        # Before the {id} routes (message ids always contain "-": these never clash).
        Route(INBOX + "/list", pages.inbox_list, methods=["GET"]),
        Route(INBOX + "/events", events.stream, methods=["GET"]),
        Route(INBOX + "/purge", actions.purge_inbox, methods=["POST"]),
        Route(MESSAGE, pages.message, methods=["GET"]),
        Route(MESSAGE + "/body", pages.body, methods=["GET"]),
        Route(MESSAGE + "/raw", pages.raw, methods=["GET"]),
        Route(MESSAGE + "/attachments/{checksum}", pages.attachment, methods=["GET"]),
        Route(MESSAGE + "/delete", actions.delete_message, methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]
