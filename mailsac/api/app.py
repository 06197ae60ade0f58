"""``create_app()``: the Starlette application with every route, in one explicit list."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mailsac.api import (
    account,
    addresses,
    admin,
    attachments,
    bodies,
    chaos,
    extract,
    health,
    manage,
    messages,
    metrics,
    openapi,
    realtime,
    waits,
)
from mailsac.api.context import ApiContext
from mailsac.api.errors import EXCEPTION_HANDLERS
from mailsac.api.limits import BodyLimit
from mailsac.web.routes import web_routes

M = "/api/addresses/{email}/messages/{id}"

A = "/api/addresses/{email}"

# Not part of the documented /api (Prometheus scrapes it; no key, no per-user data).
SERVICE_ROUTES = [Route("/metrics", metrics.metrics, methods=["GET"])]

WEBSOCKET_ROUTES = [WebSocketRoute("/incoming-messages", realtime.incoming_messages)]

ROUTES = [
    Route("/healthz", health.healthz, methods=["GET"]),
    Route("/readyz", health.readyz, methods=["GET"]),
    Route("/api/openapi.json", openapi.openapi_json, methods=["GET"]),
    # Before the {email} routes: "starred" is not an address.
    Route("/api/addresses/starred/messages", account.starred, methods=["GET"]),
    Route("/api/addresses", addresses.list_addresses, methods=["GET"]),
    Route(A, addresses.get_address, methods=["GET"]),
    Route(A, addresses.reserve_address, methods=["POST"]),
    Route(A, addresses.update_address, methods=["PUT"]),
    Route(A, addresses.release_address, methods=["DELETE"]),
    Route(A + "/availability", addresses.availability, methods=["GET"]),
    Route(A + "/webhook-deliveries", realtime.webhook_deliveries, methods=["GET"]),
    Route(A + "/messages/wait", waits.wait_in_inbox, methods=["GET"]),
    # The API's most frequent requests, early: the router tries routes in order. After
    # the two above they would shadow ("starred" is no address, "wait" no message id).
    Route(A + "/messages", messages.list_messages, methods=["GET"]),
    Route(M, messages.get_message, methods=["GET"]),
    Route(A + "/chaos", chaos.list_address_rules, methods=["GET"]),
    Route(A + "/chaos", chaos.create_address_rule, methods=["POST"]),
    Route(A + "/chaos/events", chaos.address_events, methods=["GET"]),
    Route(A + "/chaos/{rule}", chaos.delete_address_rule, methods=["DELETE"]),
    Route("/api/domains/{domain}/chaos", chaos.list_domain_rules, methods=["GET"]),
    Route("/api/domains/{domain}/chaos", chaos.create_domain_rule, methods=["POST"]),
    Route("/api/domains/{domain}/chaos/{rule}", chaos.delete_domain_rule, methods=["DELETE"]),
    Route("/api/admin/chaos", chaos.list_global_rules, methods=["GET"]),
    Route("/api/admin/chaos", chaos.create_global_rule, methods=["POST"]),
    Route("/api/admin/chaos/{rule}", chaos.delete_global_rule, methods=["DELETE"]),
    Route("/api/private-addresses-bulk", addresses.reserve_bulk, methods=["POST"]),
    Route("/api/private-address-forwarding/{email}", addresses.update_address, methods=["PUT"]),
    Route("/api/domains", addresses.list_domains, methods=["GET"]),
    Route("/api/domains/{domain}/messages", account.domain_messages, methods=["GET"]),
    Route("/api/domains/{domain}/messages/wait", waits.wait_in_domain, methods=["GET"]),
    Route("/api/messages/wait", waits.wait_in_account, methods=["GET"]),
    Route("/api/domains/{domain}/delete-all-domain-mail", account.delete_domain_mail,
          methods=["POST"]),
    Route("/api/inbox", account.account_inbox, methods=["GET"]),
    Route("/api/inbox-filter", account.inbox_filter, methods=["GET"]),
    Route("/api/inbox-search", account.inbox_search, methods=["GET"]),
    Route("/api/me", account.me, methods=["GET"]),
    Route("/api/me", account.update_me, methods=["PUT", "PATCH"]),
    Route("/api/spam-checks", manage.spam_check, methods=["POST"]),
    Route("/api/messages/{id}/spam", manage.mark_spam, methods=["POST"]),
    Route("/api/messages/{id}/ham", manage.mark_ham, methods=["POST"]),
    Route("/api/messages/{id}/spam-report", manage.spam_report, methods=["GET"]),
    Route("/api/me/stats", account.me_stats, methods=["GET"]),
    Route("/api/validations/addresses/{email}", account.validate_one, methods=["GET"]),
    Route("/api/validations/addresses", account.validate_many, methods=["POST"]),
    Route("/api/addresses/{email}/messages", messages.purge_inbox, methods=["DELETE"]),
    Route("/api/addresses/{email}/message-count", messages.message_count, methods=["GET"]),
    Route(M, messages.delete_message, methods=["DELETE"]),
    Route(M + "/headers", messages.get_headers, methods=["GET"]),
    Route(M + "/extract", extract.get_extract, methods=["GET"]),
    Route(M + "/attachments", attachments.list_attachments, methods=["GET"]),
    Route(M + "/attachments/{ident}", attachments.download_attachment, methods=["GET"]),
    Route(M + "/star", manage.toggle_star, methods=["PUT"]),
    Route(M + "/labels/{label:path}", manage.add_label, methods=["PUT"]),
    Route(M + "/labels/{label:path}", manage.remove_label, methods=["DELETE"]),
    Route(M + "/folder/{folder}", manage.set_folder, methods=["PUT"]),
    Route(M + "/read/{state}", manage.set_read, methods=["PUT"]),
    Route("/api/headers/{email}/{id}", messages.get_headers, methods=["GET"]),
    Route("/api/raw/{email}/{id}", bodies.raw_message, methods=["GET"]),
    Route("/api/dirty/{email}/{id}", bodies.dirty_body, methods=["GET"]),
    Route("/api/body/{email}/{id}", bodies.sanitized_body, methods=["GET"]),
    Route("/api/text/{email}/{id}", bodies.plain_text, methods=["GET"]),
    Route("/api/admin/accounts", admin.create_account, methods=["POST"]),
    Route("/api/admin/accounts", admin.list_accounts, methods=["GET"]),
    Route("/api/admin/accounts/{account}/users", admin.add_user, methods=["POST"]),
    Route("/api/admin/accounts/{account}/users", admin.list_users, methods=["GET"]),
    Route("/api/admin/accounts/{account}/keys", admin.create_key, methods=["POST"]),
    Route("/api/admin/accounts/{account}/keys", admin.list_keys, methods=["GET"]),
    Route("/api/admin/keys/{key_id}", admin.revoke_key, methods=["DELETE"]),
    Route("/api/admin/domains", admin.add_domain, methods=["POST"]),
    Route("/api/admin/deny-list", admin.list_deny, methods=["GET"]),
    Route("/api/admin/deny-list", admin.add_deny, methods=["POST"]),
    Route("/api/admin/deny-list/{value:path}", admin.remove_deny, methods=["DELETE"]),
    Route("/api/admin/top-offenders", admin.top_offenders, methods=["GET"]),
    Route("/api/admin/spam/learn", admin.learn_spam, methods=["POST"]),
    Route("/api/mailstats/blacklist", admin.mailstats_blacklist, methods=["GET"]),
    Route("/api/mailstats/blacklist/{value:path}", admin.mailstats_blacklisted,
          methods=["GET"]),
]

_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


class SecurityHeaders:
    """Adds nosniff / no-referrer / DENY framing to every HTTP response that does not set
    that header itself (the web viewer's mail-body frame answers SAMEORIGIN)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(k, v) for k, v in _SECURITY_HEADERS if k not in present]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(context: ApiContext, *, ui_domain: str = "", ui_public: str = "latest") -> Starlette:
    app = Starlette(
        routes=[*ROUTES, *SERVICE_ROUTES, *WEBSOCKET_ROUTES, *web_routes()],
        middleware=[Middleware(SecurityHeaders),
                    Middleware(BodyLimit, max_body=context.limits.max_body,
                               body_timeout=context.limits.body_timeout)],
        exception_handlers=EXCEPTION_HANDLERS,
    )
    app.state.ctx = context
    app.state.ui_domain = ui_domain
    app.state.ui_public = ui_public
    return app
