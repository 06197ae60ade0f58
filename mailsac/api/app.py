"""``create_app()``: the Starlette application with every route, in one explicit list."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mailsac.api import attachments, bodies, health, messages, openapi
from mailsac.api.context import ApiContext
from mailsac.api.errors import EXCEPTION_HANDLERS

M = "/api/addresses/{email}/messages/{id}"

ROUTES = [
    Route("/healthz", health.healthz, methods=["GET"]),
    Route("/api/openapi.json", openapi.openapi_json, methods=["GET"]),
    Route("/api/addresses/{email}/messages", messages.list_messages, methods=["GET"]),
    Route("/api/addresses/{email}/messages", messages.purge_inbox, methods=["DELETE"]),
    Route("/api/addresses/{email}/message-count", messages.message_count, methods=["GET"]),
    Route(M, messages.get_message, methods=["GET"]),
    Route(M, messages.delete_message, methods=["DELETE"]),
    Route(M + "/headers", messages.get_headers, methods=["GET"]),
    Route(M + "/attachments", attachments.list_attachments, methods=["GET"]),
    Route(M + "/attachments/{ident}", attachments.download_attachment, methods=["GET"]),
    Route("/api/headers/{email}/{id}", messages.get_headers, methods=["GET"]),
    Route("/api/raw/{email}/{id}", bodies.raw_message, methods=["GET"]),
    Route("/api/dirty/{email}/{id}", bodies.dirty_body, methods=["GET"]),
    Route("/api/body/{email}/{id}", bodies.sanitized_body, methods=["GET"]),
    Route("/api/text/{email}/{id}", bodies.plain_text, methods=["GET"]),
]

_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


class SecurityHeaders:
    """Adds nosniff / no-referrer / DENY framing to every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + _SECURITY_HEADERS
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(context: ApiContext) -> Starlette:
    app = Starlette(
        routes=ROUTES,
        middleware=[Middleware(SecurityHeaders)],
        exception_handlers=EXCEPTION_HANDLERS,
    )
    app.state.ctx = context
    return app
