"""``GET /api/openapi.json``: the OpenAPI 3.1 description of our API."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mailsac import __version__


def build_spec() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "mailsac", "version": __version__},
        "paths": {},
    }


_SPEC = build_spec()


async def openapi_json(request: Request) -> Response:
    return JSONResponse(_SPEC)
