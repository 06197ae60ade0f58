"""Attachment listing and download (contract §1.4)."""

from __future__ import annotations

from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mailsac.api.context import ctx, message_target, require_key
from mailsac.errors import AttachmentNotFound
from mailsac.mime import find_attachment


async def list_attachments(request: Request) -> Response:
    key = await require_key(request)
    mailboxes = ctx(request).mailboxes
    record = await mailboxes.get(key, *message_target(request))
    parsed = await mailboxes.parsed(record)
    return JSONResponse([a.to_json() for a in parsed.attachments])


async def download_attachment(request: Request) -> Response:
    key = await require_key(request)
    mailboxes = ctx(request).mailboxes
    record = await mailboxes.get(key, *message_target(request))
    parsed = await mailboxes.parsed(record)
    attachment = find_attachment(parsed, request.path_params["ident"])
    if attachment is None:
        raise AttachmentNotFound(request.path_params["ident"])
    name = attachment.file_name or attachment.checksum
    headers = {
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name, safe='')}",
        # Served bytes are untrusted: never let a browser render them in our origin.
        "Content-Security-Policy": "sandbox; default-src 'none'",
    }
    return Response(attachment.data, media_type=attachment.content_type or
                    "application/octet-stream", headers=headers)
