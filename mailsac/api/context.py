"""What the HTTP handlers need from the composition root, and small request helpers."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request

from mailsac.access import KeyAuthenticator
from mailsac.account_mail import AccountMail
from mailsac.addresses import Addresses
from mailsac.admin import Admin
from mailsac.api.errors import BadRequest, RequestRefused
from mailsac.api.limits import HttpLimits, StreamCaps
from mailsac.chaos import Chaos
from mailsac.errors import Forbidden, InvalidAddress
from mailsac.extract.service import Extracts
from mailsac.forwarding.hub import MessageHub
from mailsac.gate import SenderGate
from mailsac.mailbox import Mailboxes
from mailsac.policy import normalize_domain, normalize_inbox
from mailsac.storage.keys import ApiKey


@dataclass(frozen=True)
class ApiContext:
    """Services exposed to the API (set as ``app.state.ctx``)."""

    mailboxes: Mailboxes
    auth: KeyAuthenticator
    health: Callable[[], Awaitable[dict[str, Any]]]
    addresses: Addresses
    account_mail: AccountMail
    admin: Admin
    hub: MessageHub
    gate: SenderGate
    metrics: Callable[[], dict[str, Any]]
    accepted_domains: tuple[str, ...] = ()
    ws_send_timeout: float = 10.0
    limits: HttpLimits = field(default_factory=HttpLimits)
    streams: StreamCaps = field(default_factory=lambda: StreamCaps(1024, 1024))
    ready: Callable[[], bool] = lambda: True  # False while draining (GET /readyz: 503)
    chaos: Chaos | None = None  # SMTP failure-injection rules (mailsac.api.chaos)
    extracts: Extracts | None = None  # codes and links of messages (mailsac.api.extract)


def ctx(request: Request) -> ApiContext:
    context: ApiContext = request.app.state.ctx
    return context


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, read as it streams and refused (413) once it passes ``limit``
    bytes; a declared ``Content-Length`` over the limit is refused before reading."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise RequestRefused(413, f"the request body is larger than the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestRefused(413, f"the request body is larger than the limit of "
                                      f"{limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object body ({} when empty); 400 when it is not a JSON object,
    413 when it is larger than the body limit (``MAILSAC_HTTP_MAX_BODY``)."""
    cached: dict[str, Any] | None = getattr(request.state, "json_body", None)
    if cached is not None:
        return cached
    raw = await read_body(request, ctx(request).limits.max_body)
    body: Any = {}
    if raw.strip():
        try:
            body = json.loads(raw)
        except RecursionError:  # "[[[[…": deeper than the decoder can nest
            raise BadRequest("the request body is nested too deeply") from None
        except ValueError:
            raise BadRequest("the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    request.state.json_body = body
    return body


async def presented_key(request: Request) -> str | None:
    """The key from the ``Mailsac-Key`` header, the ``_mailsacKey`` query parameter, or the
    ``_mailsacKey`` field of a JSON body."""
    key = request.headers.get("mailsac-key") or request.query_params.get("_mailsacKey")
    if key is None and request.method in ("POST", "PUT", "PATCH"):
        value = (await json_body(request)).get("_mailsacKey")
        key = value if isinstance(value, str) else None
    return key


async def require_key(request: Request) -> ApiKey:
    return await ctx(request).auth.authenticate(await presented_key(request))


async def require_admin(request: Request) -> ApiKey:
    key = await require_key(request)
    if not key.is_admin:
        raise Forbidden("This needs an admin API key")
    return key


def inbox_param(request: Request) -> str:
    """The normalised inbox named by the ``{email}`` path parameter (400 if invalid)."""
    return normalize_inbox(request.path_params["email"])


def domain_param(request: Request) -> str:
    """The normalised domain named by the ``{domain}`` path parameter (400 if invalid):
    lower case, no trailing dot, checked as the domain of an address is."""
    try:
        return normalize_domain(str(request.path_params["domain"]))
    except InvalidAddress as exc:
        raise BadRequest(f"Invalid domain: {exc.reason}") from None


def message_target(request: Request) -> tuple[str, str]:
    """(inbox, message id) from the ``{email}`` and ``{id}`` path parameters."""
    return inbox_param(request), request.path_params["id"]


def int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer") from None
    if not low <= value <= high:
        raise BadRequest(f"{name} must be between {low} and {high}")
    return value


def date_param(request: Request, name: str) -> datetime | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = datetime.fromisoformat(raw.replace(" ", "+").upper())
    except ValueError:
        try:  # epoch milliseconds, as some Mailsac clients send
            value = datetime.fromtimestamp(int(raw) / 1000, UTC)
        except (ValueError, OverflowError, OSError):
            raise BadRequest(f"{name} must be an ISO 8601 date") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def wants_download(request: Request) -> bool:
    return request.query_params.get("download", "").lower() in {"1", "true", "yes"}
