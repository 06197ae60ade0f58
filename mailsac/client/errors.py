"""Errors of :mod:`mailsac.client`: the API's ``{"message", "error"}`` bodies as exceptions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from mailsac.client.models import MessageData


class MailsacError(Exception):
    """Base of every error the client raises.

    ``status`` is the HTTP status (``None`` when there was no response), ``message`` the
    server's explanation and ``error`` its short reason phrase (``"Not Found"``)."""

    def __init__(self, message: str, *, status: int | None = None, error: str | None = None,
                 body: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.error = error
        self.body = body

    def __str__(self) -> str:
        if self.status is None:
            return self.message
        return f"{self.status} {self.error or ''}: {self.message}".replace("  ", " ")


class BadRequestError(MailsacError):
    """400: a parameter or body the server refused (``validationErrors`` in ``body``)."""


class UnauthorizedError(MailsacError):
    """401: missing or unknown key, or another account's message."""


class ForbiddenError(MailsacError):
    """403: never allowed for this key (another account's inbox, operator-only routes)."""


class NotFoundError(MailsacError):
    """404: no such message, attachment, rule or route."""


class RateLimitedError(MailsacError):
    """429: too many requests or streams; ``retry_after`` in seconds when the server said."""

    retry_after: float | None = None


class ServerError(MailsacError):
    """5xx: the service failed or is unavailable (503 carries ``Retry-After``)."""


class ConnectionFailed(MailsacError):  # noqa: N818 (reads better at the raise site)
    """The service could not be reached at all (refused, DNS, timeout)."""


class WaitTimeout(MailsacError, TimeoutError):  # noqa: N818 (the brief's name)
    """A wait ended without the mail it waited for.

    The message says what *did* arrive (newest first, with why each one did not match),
    so a failing test shows at once whether the mail went elsewhere, had another subject
    or never came. ``arrived`` holds those messages, ``matched`` how many matched."""

    def __init__(self, message: str, *, arrived: list[MessageData], matched: int,
                 criteria: dict[str, str]) -> None:
        super().__init__(message)
        self.arrived = arrived
        self.matched = matched
        self.criteria = criteria


_BY_STATUS: dict[int, type[MailsacError]] = {
    400: BadRequestError, 401: UnauthorizedError, 403: ForbiddenError, 404: NotFoundError,
    429: RateLimitedError,
}


def error_from_response(response: httpx.Response) -> MailsacError:
    """The exception for a failed response (JSON error body or not)."""
    body: Any = None
    message, error = "", response.reason_phrase
    try:
        body = response.json()
    except ValueError:
        message = response.text[:500]
    if isinstance(body, dict):
        message = str(body.get("message") or body.get("msg") or "")
        error = str(body.get("error") or error)
        problems = body.get("validationErrors")
        if isinstance(problems, list) and problems:
            message += " (" + "; ".join(str(p) for p in problems) + ")"
    request = response.request
    message = message or f"{request.method} {request.url.path} failed"
    cls = _BY_STATUS.get(response.status_code,
                         ServerError if response.status_code >= 500 else MailsacError)
    exc = cls(message, status=response.status_code, error=error, body=body)
    if isinstance(exc, RateLimitedError):
        try:
            exc.retry_after = float(response.headers.get("Retry-After", ""))
        except ValueError:
            exc.retry_after = None
    return exc
