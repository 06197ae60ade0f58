"""What the HTTP handlers need from the composition root, and small request helpers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request

from mailsac.access import KeyAuthenticator
from mailsac.api.errors import BadRequest
from mailsac.mailbox import Mailboxes
from mailsac.policy import normalize_inbox
from mailsac.storage.keys import ApiKey


@dataclass(frozen=True)
class ApiContext:
    """Services exposed to the API (set as ``app.state.ctx``)."""

    mailboxes: Mailboxes
    auth: KeyAuthenticator
    health: Callable[[], Awaitable[dict[str, Any]]]


def ctx(request: Request) -> ApiContext:
    context: ApiContext = request.app.state.ctx
    return context


def presented_key(request: Request) -> str | None:
    """The key from the ``Mailsac-Key`` header, else the ``_mailsacKey`` query parameter."""
    return request.headers.get("mailsac-key") or request.query_params.get("_mailsacKey")


async def require_key(request: Request) -> ApiKey:
    return await ctx(request).auth.authenticate(presented_key(request))


def inbox_param(request: Request) -> str:
    """The normalised inbox named by the ``{email}`` path parameter (400 if invalid)."""
    return normalize_inbox(request.path_params["email"])


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
