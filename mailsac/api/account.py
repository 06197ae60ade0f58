"""Account-wide endpoints: inbox, filter, search, starred, domains, me, validations."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mailsac.api.context import (
    ApiContext,
    ctx,
    date_param,
    domain_param,
    int_param,
    json_body,
    require_key,
)
from mailsac.api.errors import BadRequest
from mailsac.api.messages import DEFAULT_LIMIT, MAX_LIMIT
from mailsac.api.responses import json_response
from mailsac.errors import InvalidAddress
from mailsac.messagejson import message_json
from mailsac.policy import domain_accepted, parse_recipient

MAX_VALIDATIONS = 50


async def account_inbox(request: Request) -> Response:
    key = await require_key(request)
    limit = int_param(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    skip = int_param(request, "skip", 0, 0, 10_000_000)
    page = await ctx(request).account_mail.inbox(key, limit=limit, skip=skip,
                                                 since=date_param(request, "since"))
    return await json_response({"messages": [message_json(m) for m in page.messages],
                                "unread": page.unread, "limit": limit, "skip": skip},
                               items=len(page.messages))


async def inbox_filter(request: Request) -> Response:
    key = await require_key(request)
    q = request.query_params
    found = await ctx(request).account_mail.filter(
        key, subject=q.get("andSubjectIncludes"), sender=q.get("andFrom"), to=q.get("andTo"))
    return await json_response({"messages": [message_json(m) for m in found]},
                               items=len(found))


async def inbox_search(request: Request) -> Response:
    key = await require_key(request)
    query = request.query_params.get("query", "")
    found = await ctx(request).account_mail.search(key, query)
    return await json_response({"query": query, "messages": [message_json(m) for m in found]},
                               items=len(found))


async def starred(request: Request) -> Response:
    key = await require_key(request)
    limit = int_param(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    skip = int_param(request, "skip", 0, 0, 10_000_000)
    found = await ctx(request).account_mail.starred(key, limit=limit, skip=skip)
    return await json_response([message_json(m) for m in found], items=len(found))


async def domain_messages(request: Request) -> Response:
    key = await require_key(request)
    limit = int_param(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    found = await ctx(request).account_mail.domain_messages(
        key, domain_param(request), limit=limit,
        until=date_param(request, "until"))
    return await json_response([message_json(m) for m in found], items=len(found))


async def delete_domain_mail(request: Request) -> Response:
    key = await require_key(request)
    await ctx(request).account_mail.delete_domain_mail(key, domain_param(request))
    return Response(status_code=204)


async def me(request: Request) -> Response:
    key = await require_key(request)
    return JSONResponse(await ctx(request).account_mail.me(key))


async def update_me(request: Request) -> Response:
    """``PUT``/``PATCH /api/me`` with ``{"capturePrivate": bool}`` (our extension: the
    contract documents the flag on ``GET /me`` but no way to change it)."""
    key = await require_key(request)
    value = (await json_body(request)).get("capturePrivate")
    if not isinstance(value, bool):
        raise BadRequest("capturePrivate must be true or false")
    return JSONResponse(await ctx(request).account_mail.set_capture_private(key, value))


async def me_stats(request: Request) -> Response:
    key = await require_key(request)
    return JSONResponse(await ctx(request).account_mail.stats(key))


def validate_address(context: ApiContext, email: str) -> dict[str, Any]:
    """Mailsac's validation object; "disposable" means: this server receives its mail."""
    result: dict[str, Any] = {"email": email, "validFormat": False}
    try:
        recipient = parse_recipient(email)
    except InvalidAddress:
        return result
    served = context.addresses.domain_owner(recipient.domain) is not None or (
        bool(context.accepted_domains)
        and domain_accepted(recipient.domain, frozenset(context.accepted_domains)))
    result.update(validFormat=True, local=recipient.local_part, domain=recipient.domain,
                  isDisposable=served,
                  disposableDomains=[recipient.domain] if served else [], aliases=[])
    return result


async def validate_one(request: Request) -> Response:
    await require_key(request)
    return JSONResponse(validate_address(ctx(request), request.path_params["email"]))


async def validate_many(request: Request) -> Response:
    await require_key(request)
    emails = (await json_body(request)).get("emails")
    if not isinstance(emails, list) or not all(isinstance(e, str) for e in emails):
        raise BadRequest("emails must be a list of strings")
    if len(emails) > MAX_VALIDATIONS:
        raise BadRequest(f"at most {MAX_VALIDATIONS} emails per request")
    return JSONResponse([validate_address(ctx(request), e) for e in emails])
