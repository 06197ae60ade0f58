"""Exception → HTTP status and Mailsac's JSON error body ``{"message", "error"}``."""

from __future__ import annotations

import logging
from http import HTTPStatus

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mailsac.errors import (
    AttachmentNotFound,
    Forbidden,
    InvalidAddress,
    InvalidRequest,
    MessageNotFound,
    NotFound,
    StorageUnavailable,
    Unauthorized,
)

log = logging.getLogger(__name__)


class BadRequest(InvalidRequest):
    """Invalid query or body parameter (400)."""


class RequestRefused(Exception):  # noqa: N818 (not an error of the request's content)
    """An HTTP-level refusal with its status (413 body too large, 408 body stalled, 429 too
    many streams). Deliberately not a ``MailsacError``: the web viewer answers it as JSON
    too. 408 and 413 close the connection (the rest of the body is never read)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = dict(headers or {})
        if status in (408, 413):
            self.headers["Connection"] = "close"


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    body = {"message": message, "error": HTTPStatus(status).phrase}
    return JSONResponse(body, status_code=status, headers=headers)


async def _unauthorized(request: Request, exc: Exception) -> Response:
    return error_response(401, str(exc) or "Unauthorized")


async def _not_found(request: Request, exc: Exception) -> Response:
    if isinstance(exc, AttachmentNotFound):
        return error_response(404, "Attachment not found")
    if isinstance(exc, MessageNotFound):
        return error_response(404, "Message not found")
    return error_response(404, str(exc) or "Not found")


async def _forbidden(request: Request, exc: Exception) -> Response:
    return error_response(403, str(exc) or "Forbidden")


async def _invalid_address(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, InvalidAddress)
    return error_response(400, f"Invalid email address: {exc.reason}")


async def _bad_request(request: Request, exc: Exception) -> Response:
    return error_response(400, str(exc))


async def _unavailable(request: Request, exc: Exception) -> Response:
    return error_response(503, f"Service temporarily unavailable: {exc}", {"Retry-After": "5"})


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = f"No route for {request.method} {request.url.path}"
    elif exc.status_code == 405:
        message = f"Method {request.method} is not allowed on {request.url.path}"
    else:
        message = exc.detail or HTTPStatus(exc.status_code).phrase
    return error_response(exc.status_code, message, dict(exc.headers or {}))


async def _refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestRefused)
    return error_response(exc.status, str(exc), exc.headers)


async def _internal(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "Internal server error")


EXCEPTION_HANDLERS = {
    Unauthorized: _unauthorized,
    NotFound: _not_found,
    Forbidden: _forbidden,
    InvalidAddress: _invalid_address,
    InvalidRequest: _bad_request,
    StorageUnavailable: _unavailable,
    HTTPException: _http_exception,
    RequestRefused: _refused,
    Exception: _internal,
}
