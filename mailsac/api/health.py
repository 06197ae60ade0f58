"""``GET /healthz``: readiness of the database and the SMTP listener (no key needed).

``GET /readyz``: may a load balancer send this node traffic? ``200`` while it serves,
``503`` with the JSON error body once SIGTERM started the drain (``MAILSAC_DRAIN_SECONDS``):
the node still serves then, but new connections should go elsewhere. It does not touch
the database (balancers poll it every second or two, and every node shares the
database, so a database outage is no reason to prefer another node: see ``/healthz``).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mailsac.api.context import ctx
from mailsac.api.errors import error_response


async def healthz(request: Request) -> Response:
    report = await ctx(request).health()
    return JSONResponse(report, status_code=200 if report["status"] == "ok" else 503)


async def readyz(request: Request) -> Response:
    if not ctx(request).ready():
        return error_response(503, "this node is shutting down (draining): send new "
                                   "connections to another node")
    return JSONResponse({"status": "ready"})
