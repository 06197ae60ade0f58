"""``GET /api/openapi.json``: the OpenAPI 3.1 description of our API.

The document mirrors the handlers exactly (see ``mailsac.api.app.ROUTES``): every response
object is closed (``additionalProperties: false``) so a schemathesis run can check conformance.
"""

from __future__ import annotations

import copy
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mailsac import __version__
from mailsac.api.messages import DEFAULT_LIMIT, MAX_LIMIT

Obj = dict[str, Any]

_M = "/api/addresses/{email}/messages/{id}"
_SECURITY: list[Obj] = [{"MailsacKeyHeader": []}, {"MailsacKeyQuery": []}]
_ERROR_TEXT = {
    400: "Invalid inbox address or query parameter.",
    401: "Missing, unknown or revoked API key.",
    404: "No such message in this inbox (or no such attachment).",
    503: "The database is unavailable; retry after `Retry-After` seconds.",
}


# ---------------------------------------------------------------------------------------
# Small builders


def _ref(kind: str, name: str) -> Obj:
    return {"$ref": f"#/components/{kind}/{name}"}


def _nullable(kind: str, **extra: Any) -> Obj:
    return {"type": [kind, "null"], **extra}


def _array(items: Obj, *, nullable: bool = False) -> Obj:
    return {"type": ["array", "null"] if nullable else "array", "items": items}


def _object(properties: Obj, *, optional: tuple[str, ...] = ()) -> Obj:
    """A closed object whose properties are all required except ``optional``."""
    required = [name for name in properties if name not in optional]
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


_STR: Obj = {"type": "string"}
_INT: Obj = {"type": "integer", "minimum": 0}
_BOOL: Obj = {"type": "boolean"}


def _response(description: str, media: str | None = None, schema: Obj | None = None,
              headers: Obj | None = None) -> Obj:
    response: Obj = {"description": description}
    if media is not None:
        response["content"] = {media: {"schema": schema if schema is not None else _STR}}
    if headers:
        response["headers"] = headers
    return response


def _json(description: str, schema: Obj) -> Obj:
    return _response(description, "application/json", schema)


def _op(op_id: str, tag: str, summary: str, ok: Obj, *, params: tuple[str, ...] = (),
        errors: tuple[int, ...] = (400, 401, 404, 503), status: str = "200",
        secure: bool = True, more: Obj | None = None) -> Obj:
    """One operation: ``ok`` under ``status``, shared Error responses for ``errors``."""
    responses = {status: ok, **{str(c): _ref("responses", str(c)) for c in errors}}
    return {
        "operationId": op_id,
        "tags": [tag],
        "summary": summary,
        "parameters": [_ref("parameters", p) for p in params],
        "security": _SECURITY if secure else [],
        "responses": responses | (more or {}),
    }


def _path_param(name: str, description: str) -> Obj:
    return {"name": name, "in": "path", "required": True, "schema": _STR,
            "description": description}


def _query_param(name: str, schema: Obj, description: str, **extra: Any) -> Obj:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description, **extra}


# ---------------------------------------------------------------------------------------
# Components

_HEADER_FORMATS = ["json", "json-ordered", "plain"]

_PARAMETERS: Obj = {
    "email": _path_param("email", "Inbox address. Case-folded; a `+tag` is stripped."),
    "id": _path_param("id", "Message `_id`."),
    "ident": _path_param("ident", "Attachment md5 checksum, Content-ID (with or without "
                                  "`<>`) or file name, tried in that order."),
    "limit": _query_param(
        "limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
        "Maximum number of messages returned."),
    "until": _query_param(
        "until",
        {"anyOf": [{"type": "string", "format": "date-time"},
                   {"type": "string", "pattern": "^[0-9]{1,15}$"}]},
        "Only messages received strictly before this instant (paginate backwards by passing "
        "the `received` of the last message). ISO 8601 date-time (no offset = UTC) or "
        "epoch milliseconds.",
    ),
    "download": _query_param("download", _STR, "`1`, `true` or `yes` (any case) adds a "
                             "`Content-Disposition: attachment` header; other values are "
                             "ignored.", example="1"),
    "messageHeadersFormat": _query_param(
        "messageHeadersFormat", {"type": "string", "enum": _HEADER_FORMATS, "default": "json"},
        "`json`: lower-cased name → array of values; `json-ordered`: `[{name, value}]` in "
        "message order; `plain`: the raw header block. Takes precedence over `format`."),
    "format": _query_param("format", {"type": "string", "enum": _HEADER_FORMATS,
                                      "default": "json"}, "Alias of `messageHeadersFormat`."),
}

_SCHEMAS: Obj = {
    "Address": _object({"name": _STR, "address": _STR}),
    "Message": _object({
        "_id": _STR,
        "from": _array(_ref("schemas", "Address")),
        "to": _array(_ref("schemas", "Address")),
        "cc": _array(_ref("schemas", "Address")),
        "bcc": _array(_ref("schemas", "Address")),
        "subject": _STR,
        "savedBy": _nullable("string", description="Account that starred it, else null."),
        "originalInbox": _STR,
        "inbox": _STR,
        "domain": _STR,
        "received": {"type": "string", "format": "date-time",
                     "description": "UTC, millisecond precision, `Z` suffix."},
        "size": _INT | {"description": "Bytes of the raw message."},
        "attachments": _array({"type": "string", "pattern": "^[0-9a-f]{32}$"}, nullable=True)
                       | {"description": "md5 checksums of the attachments, or null."},
        "ip": _STR,
        "via": _STR,
        "folder": _STR,
        "labels": _array(_STR),
        "read": _BOOL,
        "rtls": _BOOL,
        "links": _array(_STR),
        "spam": _nullable("number", minimum=0, maximum=1),
    }),
    "Attachment": _object({
        "checksum": {"type": "string", "pattern": "^[0-9a-f]{32}$", "description": "md5"},
        "contentType": _STR,
        "fileName": _nullable("string"),
        "contentDisposition": _nullable("string"),
        "contentId": _nullable("string"),
        "length": _INT,
        "transferEncoding": _nullable("string"),
    }),
    "Error": _object({"message": _STR, "error": _STR}),
    "MessageCount": _object({"count": _INT, "inbox": _STR}),
    "DeletedMessage": _object({"_id": _STR, "inbox": _STR, "message": _STR}),
    "HeaderOrdered": _object({"name": _STR, "value": _STR}),
    "HeadersJson": {"type": "object", "additionalProperties": _array(_STR),
                    "description": "Lower-cased header name → values in message order."},
    "Health": _object({
        "status": {"type": "string", "enum": ["ok", "degraded"]},
        "version": _STR,
        "database": _object({"ok": _BOOL, "latencyMs": {"type": "number", "minimum": 0},
                             "error": _STR}, optional=("latencyMs", "error")),
        "smtp": _object({"listening": _BOOL, "port": _INT}),
    }),
}

_ERROR_RESPONSES: Obj = {
    str(code): _json(text, _ref("schemas", "Error")) for code, text in _ERROR_TEXT.items()
}
_ERROR_RESPONSES["503"]["headers"] = {
    "Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}},
}

_SECURITY_SCHEMES: Obj = {
    "MailsacKeyHeader": {"type": "apiKey", "in": "header", "name": "Mailsac-Key"},
    "MailsacKeyQuery": {"type": "apiKey", "in": "query", "name": "_mailsacKey",
                        "description": "Least secure: the key may end up in logs."},
}


# ---------------------------------------------------------------------------------------
# Paths

_DISPOSITION = {"Content-Disposition": {
    "description": "Present when `download` is set: `attachment; filename=\"<id>.<ext>\"`.",
    "schema": _STR,
}}
_CSP = {"Content-Security-Policy": {"description": "Sandboxes the HTML.", "schema": _STR}}
_BODY = ("email", "id", "download")


def _body_op(op_id: str, summary: str, media: str, description: str) -> Obj:
    headers = _DISPOSITION | (_CSP if media == "text/html" else {})
    return {"get": _op(op_id, "Bodies", summary, _response(description, media, None, headers),
                       params=_BODY)}


def _headers_op(op_id: str, summary: str) -> Obj:
    ok: Obj = {"description": "The headers, in the requested format.", "content": {
        "application/json": {"schema": {"oneOf": [
            _ref("schemas", "HeadersJson"), _array(_ref("schemas", "HeaderOrdered"))]}},
        "text/plain": {"schema": _STR},
    }}
    return {"get": _op(op_id, "Messages", summary, ok,
                       params=("email", "id", "messageHeadersFormat", "format"))}


def _paths() -> Obj:
    message = _ref("schemas", "Message")
    binary = {"type": "string", "contentMediaType": "application/octet-stream"}
    download = {"description": "The attachment bytes, with its own Content-Type "
                "(`application/octet-stream` when it has none).",
                "content": {"application/octet-stream": {"schema": binary}, "*/*": {}},
                "headers": {"Content-Disposition": {"schema": _STR, "description":
                                                    "`attachment; filename*=UTF-8''…`"}}}
    return {
        "/healthz": {"get": _op(
            "healthz", "Health", "Readiness of the database and the SMTP listener",
            _json("Ready.", _ref("schemas", "Health")), errors=(), secure=False,
            more={"503": _json("Degraded (body says why).", _ref("schemas", "Health"))})},
        "/api/openapi.json": {"get": _op(
            "getOpenApi", "Meta", "This OpenAPI document",
            _json("OpenAPI 3.1 document.", {"type": "object"}), errors=(), secure=False)},
        "/api/addresses/{email}/messages": {
            "get": _op("listMessages", "Messages", "List an inbox, newest first",
                       _json("Messages.", _array(message)),
                       params=("email", "limit", "until"), errors=(400, 401, 503)),
            "delete": _op("purgeInbox", "Messages", "Delete every non-starred message",
                          _response("Purged."), status="204", params=("email",),
                          errors=(400, 401, 503)),
        },
        "/api/addresses/{email}/message-count": {"get": _op(
            "countMessages", "Messages", "Number of messages in an inbox",
            _json("Count.", _ref("schemas", "MessageCount")), params=("email",),
            errors=(400, 401, 503))},
        _M: {
            "get": _op("getMessage", "Messages", "One message",
                       _json("The message.", message), params=("email", "id")),
            "delete": _op("deleteMessage", "Messages", "Delete one message (no undo)",
                          _json("Deleted.", _ref("schemas", "DeletedMessage")),
                          params=("email", "id")),
        },
        _M + "/headers": _headers_op("getMessageHeaders", "Parsed message headers"),
        _M + "/attachments": {"get": _op(
            "listAttachments", "Attachments", "Attachments of a message",
            _json("Attachment metadata.", _array(_ref("schemas", "Attachment"))),
            params=("email", "id"))},
        _M + "/attachments/{ident}": {"get": _op(
            "downloadAttachment", "Attachments", "Download one attachment", download,
            params=("email", "id", "ident"))},
        "/api/headers/{email}/{id}": _headers_op(
            "getMessageHeadersLegacy", "Parsed message headers (legacy path)"),
        "/api/raw/{email}/{id}": _body_op(
            "getRawMessage", "Raw SMTP message", "text/plain", "The message as received."),
        "/api/dirty/{email}/{id}": _body_op(
            "getDirtyBody", "HTML body as sent", "text/html",
            "HTML untouched, cid images inlined; generated from text if no HTML part."),
        "/api/body/{email}/{id}": _body_op(
            "getSanitizedBody", "Sanitized HTML body", "text/html",
            "HTML with scripts, images and links stripped."),
        "/api/text/{email}/{id}": _body_op(
            "getTextBody", "Plain-text body", "text/plain",
            "Plain text; generated from the HTML if no text part."),
    }


def build_spec() -> dict[str, Any]:
    """A fresh document (deep-copied: the builders share sub-dicts between operations)."""
    return copy.deepcopy({
        "openapi": "3.1.0",
        "info": {
            "title": "mailsac",
            "version": __version__,
            "description": "Self-hosted, Mailsac-compatible disposable inbound email. "
            "Errors are `{\"message\", \"error\"}` JSON.",
        },
        "tags": [{"name": n} for n in ("Health", "Meta", "Messages", "Bodies", "Attachments")],
        "paths": _paths(),
        "components": {
            "schemas": _SCHEMAS,
            "parameters": _PARAMETERS,
            "responses": _ERROR_RESPONSES,
            "securitySchemes": _SECURITY_SCHEMES,
        },
    })


_SPEC = build_spec()


async def openapi_json(request: Request) -> Response:
    return JSONResponse(_SPEC)
