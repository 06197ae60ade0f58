"""Admin-only endpoints (admin API keys): accounts, users, keys, domains.

An admin key of the operator account manages everything; an admin key of any other
account manages only its own account's users and keys (see :mod:`mailsac.admin`).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mailsac.admin import require_operator
from mailsac.api.context import ctx, json_body, require_admin, require_key
from mailsac.api.errors import BadRequest
from mailsac.api.schemas import account_json, domain_json, key_json, user_json
from mailsac.errors import NotFound
from mailsac.throttle import DenyEntry


def _str(body: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"{name} must be a non-empty string")
    return value.strip()


def _int(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise BadRequest(f"{name} must be a non-negative integer")
    return value


async def create_account(request: Request) -> Response:
    actor = await require_admin(request)
    require_operator(actor, "create accounts")
    body = await json_body(request)
    account = await ctx(request).admin.create_account(
        _str(body, "id") or "", email=_str(body, "email", required=False),
        message_limit=_int(body, "messageLimit"), credits=_int(body, "privateAddressCredits"),
        actor=actor)
    return JSONResponse(account_json(account))


async def list_accounts(request: Request) -> Response:
    actor = await require_admin(request)
    return JSONResponse([account_json(a) for a in await ctx(request).admin.accounts(actor)])


async def add_user(request: Request) -> Response:
    actor = await require_admin(request)
    body = await json_body(request)
    user = await ctx(request).admin.add_user(
        request.path_params["account"], _str(body, "username") or "",
        _str(body, "email", required=False), actor=actor)
    return JSONResponse(user_json(user))


async def list_users(request: Request) -> Response:
    actor = await require_admin(request)
    users = await ctx(request).admin.users(request.path_params["account"], actor=actor)
    return JSONResponse([user_json(u) for u in users])


async def create_key(request: Request) -> Response:
    actor = await require_admin(request)
    body = await json_body(request)
    admin_flag = body.get("admin", False)
    if not isinstance(admin_flag, bool):
        raise BadRequest("admin must be true or false")
    record, plain = await ctx(request).admin.create_key(
        request.path_params["account"], _str(body, "name") or "", is_admin=admin_flag,
        username=_str(body, "username", required=False), actor=actor)
    return JSONResponse({**key_json(record), "key": plain})


async def list_keys(request: Request) -> Response:
    actor = await require_admin(request)
    keys = await ctx(request).admin.keys(request.path_params["account"], actor=actor)
    return JSONResponse([key_json(k) for k in keys])


async def revoke_key(request: Request) -> Response:
    actor = await require_admin(request)
    try:
        key_id = int(request.path_params["key_id"])
    except ValueError:
        raise BadRequest("key id must be an integer") from None
    await ctx(request).admin.revoke_key(key_id, actor=actor)
    return Response(status_code=204)


async def add_domain(request: Request) -> Response:
    actor = await require_admin(request)
    require_operator(actor, "give domains to accounts")
    body = await json_body(request)
    catch_all = body.get("catchAll", False)
    if not isinstance(catch_all, bool):
        raise BadRequest("catchAll must be true or false")
    record = await ctx(request).admin.add_domain(
        _str(body, "domain") or "", _str(body, "account") or "", catch_all, actor=actor)
    return JSONResponse(domain_json(record))


def _deny_json(entry: DenyEntry) -> dict[str, str]:
    return {"value": entry.value, "kind": entry.kind, "reason": entry.reason}


async def _require_operator(request: Request, action: str) -> None:
    require_operator(await require_admin(request), action)


async def list_deny(request: Request) -> Response:
    await _require_operator(request, "read the deny-list")
    return JSONResponse([_deny_json(e) for e in ctx(request).gate.deny.entries()])


async def add_deny(request: Request) -> Response:
    await _require_operator(request, "change the deny-list")
    body = await json_body(request)
    value = _str(body, "value") or ""
    reason = _str(body, "reason", required=False) or ""
    try:
        entry = await ctx(request).gate.deny_add(value, reason)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    return JSONResponse(_deny_json(entry))


async def remove_deny(request: Request) -> Response:
    await _require_operator(request, "change the deny-list")
    try:
        removed = await ctx(request).gate.deny_remove(request.path_params["value"])
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    if not removed:
        raise NotFound("that value is not on the deny-list")
    return Response(status_code=204)


async def top_offenders(request: Request) -> Response:
    """The heaviest keys per limit, from the in-memory counter (bounded list)."""
    await _require_operator(request, "read the top offenders")
    try:
        n = max(1, min(100, int(request.query_params.get("limit", "10"))))
    except ValueError:
        raise BadRequest("limit must be an integer") from None
    limiter = ctx(request).gate.limiter
    return JSONResponse({limit.name: [{"key": t.key, "count": t.count}
                                      for t in limiter.top(limit.name, n)]
                         for limit in limiter.limits})


async def mailstats_blacklist(request: Request) -> Response:
    """Mailsac's ``GET /api/mailstats/blacklist``: the deny-listed domains and IPs."""
    await require_key(request)
    return JSONResponse([e.value for e in ctx(request).gate.deny.entries()])


async def mailstats_blacklisted(request: Request) -> Response:
    await require_key(request)
    entry = ctx(request).gate.deny_match(request.path_params["value"])
    return JSONResponse({"blacklisted": entry is not None})


MAX_SPAM_BATCH = 200  # messages per teaching request (the body is capped at 1 MiB anyway)


async def learn_spam(request: Request) -> Response:
    """Our extension: the operator teaches the spam model's trusted layer with raw mail.

    Body: ``{"messages": [{"raw": "<base64 RFC 5322>", "label": "spam"|"ham"}, ...]}``.
    """
    actor = await require_admin(request)
    require_operator(actor, "teach the spam model")
    body = await json_body(request)
    items = body.get("messages")
    if not isinstance(items, list) or not items or len(items) > MAX_SPAM_BATCH:
        raise BadRequest(f"messages must be a list of 1-{MAX_SPAM_BATCH} objects")
    decoded: list[tuple[bytes, bool]] = []
    for i, item in enumerate(items):
        label = item.get("label") if isinstance(item, dict) else None
        raw = item.get("raw") if isinstance(item, dict) else None
        if label not in ("spam", "ham") or not isinstance(raw, str):
            raise BadRequest(f"messages[{i}] needs raw (base64) and label (spam or ham)")
        try:
            decoded.append((base64.b64decode(raw, validate=True), label == "spam"))
        except (binascii.Error, ValueError):
            raise BadRequest(f"messages[{i}].raw is not valid base64") from None
    spam = ctx(request).mailboxes.spam
    if spam is None:
        raise NotFound("spam scoring is disabled on this server")
    learned = 0
    for raw, is_spam in decoded:
        learned += bool(await spam.learn_raw(raw, is_spam))
    return JSONResponse({"learned": learned, "alreadyKnown": len(decoded) - learned})
