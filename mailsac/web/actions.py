"""POST handlers: enter or forget a key, delete a message, purge an inbox.

Delete, purge and "forget key" need the session's CSRF token in the form (403 without
it). Entering a key creates a new session (a fresh id and token: nothing set before the
key was entered survives) and is refused when a browser says the form came from another
site.
"""

from __future__ import annotations

import urllib.parse

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from mailsac.api.context import read_body
from mailsac.api.limits import client_ip
from mailsac.errors import Unauthorized
from mailsac.policy import normalize_inbox
from mailsac.web.render import path_part
from mailsac.web.security import (
    SessionRefused,
    clear_session_cookie,
    csrf_ok,
    local_path,
    same_origin,
    session_id,
    set_session_cookie,
)
from mailsac.web.state import Handlers, html_errors
from mailsac.web.viewer import ANONYMOUS, Viewer

MAX_FORM = 16 * 1024


async def _form(request: Request) -> dict[str, str]:
    """A small ``application/x-www-form-urlencoded`` body as a dict (first value wins);
    a body over :data:`MAX_FORM` bytes is refused (413) without being read further."""
    body = await read_body(request, MAX_FORM)
    fields: dict[str, str] = {}
    for name, value in urllib.parse.parse_qsl(body.decode("utf-8", errors="replace"),
                                              keep_blank_values=True):
        fields.setdefault(name, value)
    return fields


class Actions(Handlers):
    """State-changing form targets (every one answers 303 See Other on success)."""

    def _refuse(self, request: Request, viewer: Viewer, detail: str) -> Response:
        return self.ui.page(request, "error.html", {
            "viewer": viewer, "status": 403, "title": "Request refused", "detail": detail,
            "private": False, "latest_only": False}, status_code=403)

    async def _checked(self, request: Request) -> tuple[Viewer, dict[str, str]] | Response:
        """The signed-in viewer and the form, or the 403 page (no key or bad CSRF token)."""
        form = await _form(request)
        viewer = await self.ui.viewer(request)
        session = self.ui.sessions.get(viewer.session_id)
        if not viewer.signed_in or not csrf_ok(session, form.get("csrf")):
            return self._refuse(request, viewer, "This form expired or did not come from this "
                                "page (missing or wrong CSRF token). Reload and try again.")
        return viewer, form

    @html_errors
    async def start_session(self, request: Request) -> Response:
        form = await _form(request)
        next_url = local_path(form.get("next"))
        if not same_origin(request):
            return self._refuse(request, Viewer(ANONYMOUS), "The key form must be sent from "
                                "this site.")
        key_text = form.get("key", "").strip()
        try:
            await self.ui.ctx(request).auth.authenticate(key_text)
        except Unauthorized:
            return self.ui.page(request, "index.html", {
                "viewer": Viewer(ANONYMOUS), "error": None,
                "key_error": "That key is not valid (unknown or revoked).",
                "next_url": next_url}, status_code=401)
        self.ui.sessions.drop(session_id(request))
        limits = self.ui.ctx(request).limits
        try:
            created = self.ui.sessions.create(key_text, client_ip(request.scope), limits)
        except SessionRefused as exc:
            return self.ui.page(request, "error.html", {
                "viewer": Viewer(ANONYMOUS), "status": 429, "title": "Too many sessions",
                "detail": str(exc), "private": False, "latest_only": False},
                status_code=429)
        response = RedirectResponse(next_url, status_code=303)
        set_session_cookie(response, request, created)
        return response

    @html_errors
    async def end_session(self, request: Request) -> Response:
        checked = await self._checked(request)
        if isinstance(checked, Response):
            return checked
        viewer, form = checked
        self.ui.sessions.drop(viewer.session_id)
        response = RedirectResponse(local_path(form.get("next")), status_code=303)
        clear_session_cookie(response, request)
        return response

    @html_errors
    async def delete_message(self, request: Request) -> Response:
        checked = await self._checked(request)
        if isinstance(checked, Response):
            return checked
        viewer, _ = checked
        inbox = normalize_inbox(request.path_params["email"])
        await self.ui.ctx(request).mailboxes.delete(viewer.key, inbox, request.path_params["id"])
        return RedirectResponse(f"/inbox/{path_part(inbox)}", status_code=303)

    @html_errors
    async def purge_inbox(self, request: Request) -> Response:
        checked = await self._checked(request)
        if isinstance(checked, Response):
            return checked
        viewer, _ = checked
        inbox = normalize_inbox(request.path_params["email"])
        await self.ui.ctx(request).mailboxes.purge(viewer.key, inbox)
        return RedirectResponse(f"/inbox/{path_part(inbox)}", status_code=303)
