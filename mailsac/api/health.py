"""``GET /healthz``: readiness of the database and the SMTP listener (no key needed)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mailsac.api.context import ctx


async def healthz(request: Request) -> Response:
    report = await ctx(request).health()
    return JSONResponse(report, status_code=200 if report["status"] == "ok" else 503)
