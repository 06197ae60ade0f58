"""Per-message flags: star, labels, folder, read (contract §1.3)."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mailsac.api.context import ctx, json_body, message_target, require_key
from mailsac.api.errors import BadRequest
from mailsac.api.responses import FastJSONResponse
from mailsac.errors import NotFound
from mailsac.messagejson import message_json
from mailsac.spam import check_spam
from mailsac.spam.report import spam_report as build_spam_report


async def toggle_star(request: Request) -> Response:
    key = await require_key(request)
    record = await ctx(request).mailboxes.toggle_star(key, *message_target(request))
    return FastJSONResponse(message_json(record))


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


async def mark_spam(request: Request) -> Response:
    return await _mark(request, is_spam=True)


async def mark_ham(request: Request) -> Response:
    return await _mark(request, is_spam=False)


async def _mark(request: Request, *, is_spam: bool) -> Response:
    """Our extension: teach the spam model about a message (and file it accordingly)."""
    key = await require_key(request)
    record = await ctx(request).mailboxes.mark_spam(key, request.path_params["id"], is_spam)
    return FastJSONResponse(message_json(record))


async def spam_check(request: Request) -> Response:
    """Mailsac's open-source classifier server: ``{to, from, subject, text}`` in,
    ``{"spamminess", "spam"}`` out."""
    await require_key(request)
    body = await json_body(request)
    missing = [f for f in ("to", "from", "subject", "text") if not isinstance(body.get(f), str)]
    if missing:
        raise BadRequest(f"missing or non-string fields: {', '.join(missing)}")
    result = await asyncio.to_thread(check_spam, body["to"], body["from"], body["subject"],
                                     body["text"])
    return JSONResponse(result)


async def spam_report(request: Request) -> Response:
    """Our extension: why a message got its spam score (same visibility as reading it)."""
    key = await require_key(request)
    mailboxes = ctx(request).mailboxes
    record = await mailboxes.get_by_id(key, request.path_params["id"])
    if mailboxes.spam is None:
        raise NotFound("spam scoring is disabled on this server")
    parsed = await mailboxes.parsed(record)
    raw = await mailboxes.raw(record)
    report = await asyncio.to_thread(build_spam_report, mailboxes.spam.model, raw, parsed)
    return JSONResponse({"_id": record.id, "storedSpam": record.spam, **report})
