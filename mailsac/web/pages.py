"""Reading pages: the address form, an inbox, a message with its views and downloads."""

from __future__ import annotations

import urllib.parse
from datetime import datetime

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from mailsac.api.context import date_param
from mailsac.errors import AttachmentNotFound, InvalidAddress
from mailsac.mime import find_attachment, headers_ordered
from mailsac.policy import normalize_inbox
from mailsac.storage.messages import MessageRecord
from mailsac.web.render import path_part
from mailsac.web.security import DOWNLOAD_CSP, MAIL_SANDBOX, body_headers
from mailsac.web.state import Handlers, html_errors
from mailsac.web.viewer import Viewer, list_inbox, open_message

VIEWS = (("html", "HTML"), ("text", "Text"), ("headers", "Headers"), ("raw", "Raw source"),
         ("links", "Links"), ("attachments", "Attachments"))
_VIEW_NAMES = {name for name, _ in VIEWS}


def _inbox(request: Request) -> str:
    return normalize_inbox(request.path_params["email"])


def _download_headers(filename: str) -> dict[str, str]:
    fallback = "".join(c if c.isascii() and c.isalnum() or c in "._-" else "_" for c in filename)
    quoted = urllib.parse.quote(filename, safe="")
    return {
        "Content-Disposition": f"attachment; filename=\"{fallback or 'download'}\"; "
                               f"filename*=UTF-8''{quoted}",
        "Content-Security-Policy": DOWNLOAD_CSP,
        "Cache-Control": "no-store",
    }


class Pages(Handlers):
    """GET handlers; each one asks :mod:`mailsac.web.viewer` what the viewer may see."""

    @html_errors
    async def index(self, request: Request) -> Response:
        viewer = await self.ui.viewer(request)
        return self.ui.page(request, "index.html", {"viewer": viewer, "error": None})

    @html_errors
    async def open_inbox(self, request: Request) -> Response:
        """The address form's target: ``?local=name&domain=d`` or ``?email=full@address``."""
        params = request.query_params
        local = (params.get("email") or params.get("local") or "").strip()
        domain = (params.get("domain") or "").strip().lstrip("@")
        address = local if "@" in local or not domain else f"{local}@{domain}"
        try:
            inbox = normalize_inbox(address)
        except InvalidAddress as exc:
            viewer = await self.ui.viewer(request)
            return self.ui.page(request, "index.html", {
                "viewer": viewer, "error": f"{address or 'An empty address'}: {exc.reason}",
                "local": local, "domain": domain}, status_code=400)
        return RedirectResponse(f"/inbox/{path_part(inbox)}", status_code=303)

    async def _listing_context(self, request: Request, viewer: Viewer) -> dict[str, object]:
        inbox = _inbox(request)
        until: datetime | None = date_param(request, "until")
        listing = await list_inbox(self.ui.ctx(request).mailboxes, viewer, inbox,
                                   public_mode=self.ui.public_mode(request), until=until)
        return {"viewer": viewer, "inbox": inbox, "listing": listing, "paged": until is not None}

    @html_errors
    async def inbox(self, request: Request) -> Response:
        viewer = await self.ui.viewer(request)
        context = await self._listing_context(request, viewer)
        return self.ui.page(request, "inbox.html", context)

    @html_errors
    async def inbox_list(self, request: Request) -> Response:
        """The message list alone (the script swaps it in when mail arrives)."""
        viewer = await self.ui.viewer(request)
        context = await self._listing_context(request, viewer)
        return self.ui.page(request, "_message_list.html", context)

    async def _open(self, request: Request) -> tuple[Viewer, MessageRecord]:
        viewer = await self.ui.viewer(request)
        record = await open_message(self.ui.ctx(request).mailboxes, viewer, _inbox(request),
                                    request.path_params["id"],
                                    public_mode=self.ui.public_mode(request))
        return viewer, record

    @html_errors
    async def message(self, request: Request) -> Response:
        viewer, record = await self._open(request)
        mailboxes = self.ui.ctx(request).mailboxes
        parsed = await mailboxes.parsed(record)
        renderings = mailboxes.renderings  # computed once, off the event loop
        view = request.query_params.get("view", "html")
        view = view if view in _VIEW_NAMES else "html"
        raw = None
        if view == "raw":
            raw = (await mailboxes.raw(record)).decode("utf-8", errors="replace")
        images = request.query_params.get("images") == "1"
        base = f"/inbox/{path_part(record.inbox)}/{path_part(record.id)}"
        return await self.ui.page_off_loop(request, "message.html", {
            "viewer": viewer, "inbox": record.inbox, "record": record, "parsed": parsed,
            "text": await renderings.text(record), "headers": headers_ordered(parsed.headers),
            "raw": raw, "view": view, "views": VIEWS, "base": base, "images": images,
            "remote_images": await renderings.has_remote_images(record),
            "sandbox": MAIL_SANDBOX,
        })

    @html_errors
    async def body(self, request: Request) -> Response:
        """The mail's HTML for the sandboxed iframe (remote images only with ``images=1``)."""
        _, record = await self._open(request)
        remote = request.query_params.get("images") == "1"
        renderings = self.ui.ctx(request).mailboxes.renderings
        html = await renderings.sanitized(record, remote_images=remote)
        doc = ('<!doctype html><html><head><meta charset="utf-8">'
               '<meta name="referrer" content="no-referrer"></head><body>'
               f"{html}</body></html>")
        return Response(doc, media_type="text/html", headers=body_headers(remote))

    @html_errors
    async def raw(self, request: Request) -> Response:
        _, record = await self._open(request)
        data = await self.ui.ctx(request).mailboxes.raw(record)
        headers = {"Content-Security-Policy": DOWNLOAD_CSP, "Cache-Control": "no-store"}
        if request.query_params.get("download") == "1":
            headers = _download_headers(f"{record.id}.eml")
        return Response(data, media_type="text/plain; charset=utf-8", headers=headers)

    @html_errors
    async def attachment(self, request: Request) -> Response:
        _, record = await self._open(request)
        parsed = await self.ui.ctx(request).mailboxes.parsed(record)
        found = find_attachment(parsed, request.path_params["checksum"])
        if found is None:
            raise AttachmentNotFound("no such attachment")
        return Response(found.data, media_type="application/octet-stream",
                        headers=_download_headers(found.file_name or found.checksum))
