"""What every web handler shares: templates, key sessions, the viewer of a request, and
the mapping of domain errors to HTML pages."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from mailsac.api.context import ApiContext
from mailsac.errors import (
    Forbidden,
    InvalidAddress,
    InvalidRequest,
    MailsacError,
    NotFound,
    StorageUnavailable,
    Unauthorized,
)
from mailsac.web.render import make_templates
from mailsac.web.security import SessionTable, page_headers, session_id
from mailsac.web.viewer import ANONYMOUS, PUBLIC_MODES, LatestOnly, Viewer

log = logging.getLogger(__name__)


class WebUI:
    """State of the web viewer for one application (built by ``web_routes()``)."""

    def __init__(self) -> None:
        self.templates = make_templates()
        self.sessions = SessionTable()

    @staticmethod
    def ctx(request: Request) -> ApiContext:
        context: ApiContext = request.app.state.ctx
        return context

    @staticmethod
    def ui_domain(request: Request) -> str:
        return str(getattr(request.app.state, "ui_domain", "") or "").strip().lower()

    @staticmethod
    def public_mode(request: Request) -> str:
        mode = str(getattr(request.app.state, "ui_public", "latest") or "latest")
        return mode if mode in PUBLIC_MODES else "latest"

    async def viewer(self, request: Request) -> Viewer:
        """The request's viewer: its session's key if it still authenticates, else anonymous.

        A key that was revoked (or a session that expired) silently ends the session."""
        sid = session_id(request)
        session = self.sessions.get(sid)
        if session is None or sid is None:
            return Viewer(ANONYMOUS)
        try:
            key = await self.ctx(request).auth.authenticate(session.key)
        except Unauthorized:
            self.sessions.drop(sid)
            return Viewer(ANONYMOUS)
        return Viewer(key, sid, session.csrf)

    def page(self, request: Request, name: str, context: dict[str, Any],
             status_code: int = 200) -> Response:
        """Render ``name`` with the viewer pages' security headers."""
        context.setdefault("ui_domain", self.ui_domain(request))
        context.setdefault("next_url", request.url.path)
        return self.templates.TemplateResponse(request, name, context, status_code=status_code,
                                               headers=page_headers())

    async def page_off_loop(self, request: Request, name: str,
                            context: dict[str, Any]) -> Response:
        """:meth:`page` rendered in a worker thread: for pages whose size grows with a
        message (its text, headers and links), so a big mail cannot stall the loop."""
        context.setdefault("ui_domain", self.ui_domain(request))
        context.setdefault("next_url", request.url.path)
        context["request"] = request
        template = self.templates.get_template(name)
        html = await asyncio.to_thread(template.render, context)
        return HTMLResponse(html, headers=page_headers())

    def error_page(self, request: Request, viewer: Viewer, exc: Exception) -> Response:
        status, title = _error_status(exc)
        return self.page(request, "error.html", {
            "viewer": viewer, "status": status, "title": title, "detail": str(exc),
            "private": status == 403 and not isinstance(exc, LatestOnly),
            "latest_only": isinstance(exc, LatestOnly),
        }, status_code=status)


def _error_status(exc: Exception) -> tuple[int, str]:
    # Another account's inbox or message: one neutral 403 page, whether or not it exists.
    if isinstance(exc, LatestOnly):
        return 403, "A key is needed to open this message"
    if isinstance(exc, Forbidden | Unauthorized):
        return 403, "This inbox is private"
    if isinstance(exc, NotFound):
        return 404, "Not found"
    if isinstance(exc, InvalidAddress):
        return 400, "That is not a valid address"
    if isinstance(exc, InvalidRequest):
        return 400, "Bad request"
    if isinstance(exc, StorageUnavailable):
        return 503, "The service is temporarily unavailable"
    return 500, "Something went wrong"


class Handlers:
    """Base of the handler groups: holds the shared :class:`WebUI`."""

    def __init__(self, ui: WebUI) -> None:
        self.ui = ui


H = TypeVar("H", bound=Handlers)
Endpoint = Callable[[H, Request], Awaitable[Response]]


def html_errors(fn: Endpoint[H]) -> Endpoint[H]:
    """Turn the domain's errors into HTML error pages (instead of the API's JSON)."""

    @functools.wraps(fn)
    async def wrapper(self: H, request: Request) -> Response:
        try:
            return await fn(self, request)
        except MailsacError as exc:
            viewer = await _viewer_or_anonymous(self.ui, request)
            if isinstance(exc, StorageUnavailable):
                log.warning("web viewer: %s", exc)
            return self.ui.error_page(request, viewer, exc)

    return wrapper


async def _viewer_or_anonymous(ui: WebUI, request: Request) -> Viewer:
    try:
        return await ui.viewer(request)
    except MailsacError:
        return Viewer(ANONYMOUS)
