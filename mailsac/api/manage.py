"""Per-message flags: star, labels, folder, read (contract §1.3)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mailsac.api.context import ctx, message_target, require_key
from mailsac.api.errors import BadRequest
from mailsac.messagejson import message_json


async def toggle_star(request: Request) -> Response:
    key = await require_key(request)
    record = await ctx(request).mailboxes.toggle_star(key, *message_target(request))
    return JSONResponse(message_json(record))


async def add_label(request: Request) -> Response:
    return await _label(request, present=True)


async def remove_label(request: Request) -> Response:
    return await _label(request, present=False)


async def _label(request: Request, *, present: bool) -> Response:
    key = await require_key(request)
    label = request.path_params["label"]  # already percent-decoded by the server
    record = await ctx(request).mailboxes.set_label(key, *message_target(request), label,
                                                    present)
    return JSONResponse({"_id": record.id, "labels": record.labels})


async def set_folder(request: Request) -> Response:
    key = await require_key(request)
    record = await ctx(request).mailboxes.set_folder(key, *message_target(request),
                                                     request.path_params["folder"])
    return JSONResponse({"_id": record.id, "folder": record.folder})


async def set_read(request: Request) -> Response:
    key = await require_key(request)
    value = request.path_params["state"].lower()
    if value not in ("true", "false"):
        raise BadRequest("read must be true or false")
    record = await ctx(request).mailboxes.set_read(key, *message_target(request),
                                                   value == "true")
    return JSONResponse({"_id": record.id, "read": record.read})
