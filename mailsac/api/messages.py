"""Inbox and message metadata endpoints (contract §1.3)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from mailsac.api.context import (
    ctx,
    date_param,
    inbox_param,
    int_param,
    message_target,
    require_key,
)
from mailsac.api.errors import BadRequest
from mailsac.api.responses import FastJSONResponse, json_response
from mailsac.messagejson import message_json
from mailsac.mime import headers_json, headers_ordered, headers_plain

MAX_LIMIT = 1000
DEFAULT_LIMIT = 20


async def list_messages(request: Request) -> Response:
    key = await require_key(request)
    inbox = inbox_param(request)
    limit = int_param(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    until = date_param(request, "until")
    records = await ctx(request).mailboxes.list_messages(key, inbox, limit=limit, until=until)
    return await json_response([message_json(r) for r in records], items=len(records))


async def message_count(request: Request) -> Response:
    key = await require_key(request)
    inbox = inbox_param(request)
    count = await ctx(request).mailboxes.count_messages(key, inbox)
    return JSONResponse({"count": count, "inbox": inbox})


async def get_message(request: Request) -> Response:
    key = await require_key(request)
    record = await ctx(request).mailboxes.get(key, *message_target(request))
    return FastJSONResponse(message_json(record))


async def delete_message(request: Request) -> Response:
    key = await require_key(request)
    record = await ctx(request).mailboxes.delete(key, *message_target(request))
    return JSONResponse(
        {"_id": record.id, "inbox": record.inbox, "message": "Message was deleted."}
    )


async def purge_inbox(request: Request) -> Response:
    key = await require_key(request)
    await ctx(request).mailboxes.purge(key, inbox_param(request))
    return Response(status_code=204)


_HEADER_FORMATS = ("json", "json-ordered", "plain")


async def get_headers(request: Request) -> Response:
    key = await require_key(request)
    fmt = (
        request.query_params.get("messageHeadersFormat")
        or request.query_params.get("format")
        or "json"
    )
    if fmt not in _HEADER_FORMATS:
        raise BadRequest(f"format must be one of {', '.join(_HEADER_FORMATS)}")
    mailboxes = ctx(request).mailboxes
    record = await mailboxes.get(key, *message_target(request))
    if fmt == "plain":
        return PlainTextResponse(headers_plain(await mailboxes.raw(record)))
    parsed = await mailboxes.parsed(record)
    if fmt == "json-ordered":
        return JSONResponse(headers_ordered(parsed.headers))
    return JSONResponse(headers_json(parsed.headers))
