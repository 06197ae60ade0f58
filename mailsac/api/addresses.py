"""Reserved (private) addresses and owned domains (contract §1.5–1.7)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mailsac.addresses import parse_settings
from mailsac.api.context import ctx, json_body, require_key
from mailsac.api.errors import BadRequest
from mailsac.api.schemas import address_json, domain_json


def _email(request: Request) -> str:
    return str(request.path_params["email"])


async def list_addresses(request: Request) -> Response:
    key = await require_key(request)
    views = await ctx(request).addresses.owned(key)
    return JSONResponse([address_json(v) for v in views])


async def get_address(request: Request) -> Response:
    key = await require_key(request)
    return JSONResponse(address_json(await ctx(request).addresses.view(key, _email(request))))


async def reserve_address(request: Request) -> Response:
    key = await require_key(request)
    settings = parse_settings(await json_body(request))
    (view,) = await ctx(request).addresses.reserve(key, [_email(request)], settings)
    return JSONResponse(address_json(view))


async def update_address(request: Request) -> Response:
    key = await require_key(request)
    settings = parse_settings(await json_body(request))
    view = await ctx(request).addresses.update(key, _email(request), settings)
    return JSONResponse(address_json(view))


async def release_address(request: Request) -> Response:
    key = await require_key(request)
    flag = request.query_params.get("deleteAddressMessages", "").lower() in ("1", "true")
    view = await ctx(request).addresses.release(key, _email(request), flag)
    return JSONResponse(address_json(view))


async def availability(request: Request) -> Response:
    await require_key(request)
    return JSONResponse(ctx(request).addresses.availability(_email(request)))


async def reserve_bulk(request: Request) -> Response:
    key = await require_key(request)
    body: dict[str, Any] = await json_body(request)
    wanted = body.get("addresses")
    if not isinstance(wanted, list) or not wanted or not all(isinstance(a, str) for a in wanted):
        raise BadRequest("addresses must be a non-empty list of email addresses")
    views = await ctx(request).addresses.reserve(key, wanted, {})
    return JSONResponse([address_json(v) for v in views])


async def list_domains(request: Request) -> Response:
    key = await require_key(request)
    return JSONResponse([domain_json(d) for d in ctx(request).addresses.domains(key)])
