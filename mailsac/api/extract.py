"""``GET /api/addresses/{email}/messages/{id}/extract``: a message's one-time codes and
links (our extension; the Mailsac message object stays as it is)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from mailsac.api.context import ctx, message_target, require_key
from mailsac.errors import StorageUnavailable


async def get_extract(request: Request) -> Response:
    """``{"_id", "codes", "links", "actionLink"}``; 401/404 exactly like GET message."""
    key = await require_key(request)
    extracts = ctx(request).extracts
    if extracts is None:
        raise StorageUnavailable("code and link extraction is not available here")
    body = await extracts.get(key, *message_target(request))
    return Response(body, media_type="application/json")
