"""Message bodies: raw source, HTML as sent, sanitized HTML, plain text (contract §1.3).

The renderings come from :class:`mailsac.rendering.Renderings` (computed once per message,
off the event loop, cached)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from mailsac.api.context import ctx, message_target, require_key, wants_download

# Mail HTML must never run in our origin, even when a browser opens the URL directly:
# the sandbox directive gives the document an opaque origin and blocks scripts.
HTML_CSP = "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def _respond(request: Request, body: bytes | str, media_type: str, ext: str) -> Response:
    headers: dict[str, str] = {}
    if wants_download(request):
        headers["Content-Disposition"] = f'attachment; filename="{request.path_params["id"]}.{ext}"'
    if media_type == "text/html":
        headers["Content-Security-Policy"] = HTML_CSP
    return Response(body, media_type=media_type, headers=headers)


async def raw_message(request: Request) -> Response:
    key = await require_key(request)
    mailboxes = ctx(request).mailboxes
    record = await mailboxes.get(key, *message_target(request))
    return _respond(request, await mailboxes.raw(record), "text/plain", "eml")


async def dirty_body(request: Request) -> Response:
    key = await require_key(request)
    mailboxes = ctx(request).mailboxes
    record = await mailboxes.get(key, *message_target(request))
    return _respond(request, await mailboxes.renderings.dirty(record), "text/html", "html")


async def sanitized_body(request: Request) -> Response:
    key = await require_key(request)
    mailboxes = ctx(request).mailboxes
    record = await mailboxes.get(key, *message_target(request))
    return _respond(request, await mailboxes.renderings.sanitized(record), "text/html", "html")


async def plain_text(request: Request) -> Response:
    key = await require_key(request)
    mailboxes = ctx(request).mailboxes
    record = await mailboxes.get(key, *message_target(request))
    return _respond(request, await mailboxes.renderings.text(record), "text/plain", "txt")
