"""``GET /api/openapi.json``: the OpenAPI 3.1 description of our API.

The document mirrors the handlers exactly (see ``mailsac.api.app.ROUTES``): every response
object is closed (``additionalProperties: false``) so a schemathesis run can check
conformance; request bodies stay open because the handlers ignore unknown fields. The
operations (and the small builders) live in :mod:`mailsac.api.openapi_paths`; this module
holds the component schemas, the shared error responses and the assembly.
"""

from __future__ import annotations

import copy
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mailsac import __version__
from mailsac.addresses import MAX_BULK
from mailsac.api.account import MAX_VALIDATIONS
from mailsac.api.admin import MAX_SPAM_BATCH
from mailsac.api.messages import DEFAULT_LIMIT, MAX_LIMIT
from mailsac.api.openapi_chaos import CHAOS_PARAMETERS, CHAOS_SCHEMAS, chaos_paths
from mailsac.api.openapi_chaos import TAG as CHAOS_TAG
from mailsac.api.openapi_paths import (
    _STR,
    TAGS,
    Obj,
    _array,
    _json,
    _schema,
    paths,
)
from mailsac.api.waits import MAX_COUNT, MAX_WAIT
from mailsac.mailbox import FOLDERS, MAX_LABEL_LENGTH

# ---------------------------------------------------------------------------------------
# Small builders (more in openapi_paths)

_INT: Obj = {"type": "integer", "minimum": 0}
_BOOL: Obj = {"type": "boolean"}
_DATE: Obj = {"type": "string", "format": "date-time",
              "description": "UTC, millisecond precision, `Z` suffix."}
_KEY_FIELD: Obj = {"type": "string", "description": "The API key, when sent neither as "
                   "`Mailsac-Key` header nor as query parameter."}


def _nullable(kind: str, **extra: Any) -> Obj:
    return {"type": [kind, "null"], **extra}


def _object(properties: Obj, *, optional: tuple[str, ...] = ()) -> Obj:
    """A closed object whose properties are all required except ``optional``."""
    required = [name for name in properties if name not in optional]
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


def _body_object(properties: Obj, *, required: tuple[str, ...] = ()) -> Obj:
    """A request body: unknown fields are ignored; ``_mailsacKey`` may carry the key."""
    return {"type": "object", "properties": properties | {"_mailsacKey": _KEY_FIELD},
            "required": list(required)}


def _path_param(name: str, description: str, schema: Obj = _STR) -> Obj:
    return {"name": name, "in": "path", "required": True, "schema": schema,
            "description": description}


def _query_param(name: str, schema: Obj, description: str, **extra: Any) -> Obj:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description, **extra}


# ---------------------------------------------------------------------------------------
# Parameters

_HEADER_FORMATS = ["json", "json-ordered", "plain"]
_INSTANT: Obj = {"anyOf": [{"type": "string", "format": "date-time"},
                           {"type": "string", "pattern": "^[0-9]{1,15}$"}]}
_INSTANT_TEXT = "ISO 8601 date-time (no offset = UTC) or epoch milliseconds."

_PARAMETERS: Obj = {
    "email": _path_param("email", "Inbox address. Case-folded; a `+tag` is stripped."),
    "candidate": _path_param("email", "Any string; one that is not a valid address gives "
                             "`validFormat: false`."),
    "id": _path_param("id", "Message `_id`."),
    "ident": _path_param("ident", "Attachment md5 checksum, Content-ID (with or without "
                                  "`<>`) or file name, tried in that order."),
    "domain": _path_param("domain", "A domain owned by the key's account (case-insensitive)."),
    "label": _path_param("label", f"The label (1-{MAX_LABEL_LENGTH} characters after trimming "
                         "spaces), URL-encoded; may contain `/`."),
    "folder": _path_param("folder", "Target folder.", {"type": "string", "enum": list(FOLDERS)}),
    "state": _path_param("state", "`true` or `false` (any case).",
                         {"type": "string", "enum": ["true", "false"]}),
    "account": _path_param("account", "Account id."),
    "value": _path_param("value", "An IP address, CIDR network or domain."),
    "key_id": _path_param("key_id", "Numeric id of the API key (`id` in key objects).",
                          {"type": "integer"}),
    "limit": _query_param(
        "limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
        "Maximum number of messages returned."),
    "skip": _query_param("skip", {"type": "integer", "minimum": 0, "maximum": 10_000_000,
                                  "default": 0}, "Number of messages skipped (newest first)."),
    "until": _query_param(
        "until", _INSTANT, "Only messages received strictly before this instant (paginate "
        "backwards by passing the `received` of the last message). " + _INSTANT_TEXT),
    "since": _query_param("since", _INSTANT, "Only messages received strictly after this "
                          "instant. " + _INSTANT_TEXT),
    "download": _query_param("download", _STR, "`1`, `true` or `yes` (any case) adds a "
                             "`Content-Disposition: attachment` header; other values are "
                             "ignored.", example="1"),
    "messageHeadersFormat": _query_param(
        "messageHeadersFormat", {"type": "string", "enum": _HEADER_FORMATS, "default": "json"},
        "`json`: lower-cased name → array of values; `json-ordered`: `[{name, value}]` in "
        "message order; `plain`: the raw header block. Takes precedence over `format`."),
    "format": _query_param("format", {"type": "string", "enum": _HEADER_FORMATS,
                                      "default": "json"}, "Alias of `messageHeadersFormat`."),
    "deleteAddressMessages": _query_param(
        "deleteAddressMessages", _STR, "`1` or `true` (any case): also delete every message "
        "of the address, starred ones included, irreversibly.", example="true"),
    "andSubjectIncludes": _query_param("andSubjectIncludes", _STR,
                                       "Subject contains this text (case-insensitive)."),
    "andFrom": _query_param("andFrom", _STR, "A sender address or name contains this text."),
    "andTo": _query_param("andTo", _STR, "A recipient or the inbox contains this text."),
    "timeout": _query_param("timeout", {"type": "number", "minimum": 0,
                                        "maximum": MAX_WAIT, "default": 30},
                            "Seconds to wait at most."),
    "waitSince": _query_param("since", _INSTANT, "Only messages received at or after this "
                              "instant (default: now; take it before the action that sends "
                              "the mail). " + _INSTANT_TEXT),
    "subject": _query_param("subject", _STR, "Subject contains this text (case-insensitive)."),
    "from": _query_param("from", _STR, "A sender address or name contains this text "
                         "(case-insensitive)."),
    "to": _query_param("to", _STR, "The inbox or a recipient address or name contains this "
                       "text (case-insensitive)."),
    "contains": _query_param("contains", _STR, "The subject, the text body or the HTML body "
                             "contains this text (case-insensitive)."),
    "count": _query_param("count", {"type": "integer", "minimum": 1, "maximum": MAX_COUNT},
                          "Wait until this many messages match; the answer is then "
                          "`{\"messages\": [...]}`, oldest first."),
    "query": _query_param("query", _STR, "Text searched (case-insensitive substring) in the "
                          "subject, senders, recipients and inbox; empty finds nothing."),
}


# ---------------------------------------------------------------------------------------
# Schemas

_MD5: Obj = {"type": "string", "pattern": "^[0-9a-f]{32}$"}
_NULL_DATE: Obj = _nullable("string", format="date-time")
_NULL_STR: Obj = _nullable("string")
_NAME: Obj = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$",
              "description": "1-63 characters of a-z, 0-9, `.`, `_`, `-`; lower-cased."}
_SETTING_TEXT: Obj = _nullable("string", maxLength=2000)
_URL_SETTING: Obj = {"anyOf": [
    {"type": "string", "maxLength": 2000, "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://[^/?#]+"},
    {"type": "null"}, {"const": ""}]}

_KEY_PROPS: Obj = {
    "id": {"type": "integer"}, "name": _STR, "prefix": _STR, "account": _STR,
    "userId": _nullable("integer"), "admin": _BOOL, "created": _DATE,
    "revoked": _NULL_DATE | {"description": "When the key was revoked, else null."},
}
_VALID_FORMAT: Obj = {
    "email": _STR, "validFormat": {"const": True}, "local": _STR, "domain": _STR,
    "isDisposable": _BOOL | {"description": "This server receives mail for the domain."},
    "disposableDomains": _array(_STR), "aliases": _array(_STR),
}
_MESSAGES: Obj = _array(_schema("Message"))

_SCHEMAS: Obj = {
    "NameAddress": _object({"name": _STR, "address": _STR}),
    "Message": _object({
        "_id": _STR,
        "from": _array(_schema("NameAddress")),
        "to": _array(_schema("NameAddress")),
        "cc": _array(_schema("NameAddress")),
        "bcc": _array(_schema("NameAddress")),
        "subject": _STR,
        "savedBy": _nullable("string", description="Account that starred it, else null."),
        "originalInbox": _STR,
        "inbox": _STR,
        "domain": _STR,
        "received": _DATE,
        "size": _INT | {"description": "Bytes of the raw message."},
        "attachments": _array(_MD5, nullable=True)
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
        "checksum": _MD5 | {"description": "md5"},
        "contentType": _STR,
        "fileName": _NULL_STR,
        "contentDisposition": _NULL_STR,
        "contentId": _NULL_STR,
        "length": _INT,
        "transferEncoding": _NULL_STR,
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
        "journal": _object({"pending": _BOOL | {
            "description": "Mail accepted during a database outage awaits indexing."}}),
        "node": _STR | {"description": "The answering process, as host:pid:id (several "
                        "processes or machines may serve one address)."},
    }, optional=("node",)),
    "Ready": _object({"status": {"type": "string", "enum": ["ready"]}}),
    "Address": _object({
        "_id": _STR,
        "owner": _NULL_STR | {"description": "The reserving account; for a non-reserved "
                              "address the owner of its domain, else null."},
        "forward": _NULL_STR,
        "enablews": _BOOL,
        "webhook": _NULL_STR,
        "webhookSlack": _NULL_STR,
        "webhookSlackToFrom": _BOOL,
        "catchAll": _NULL_STR | {"description": "The domain, for a `*@domain` catch-all."},
        "password": {"type": "null"},
        "info": _NULL_STR,
        "created": _NULL_DATE | {"description": "Null when not reserved."},
        "updated": _NULL_DATE,
        "encryptedInbox": _NULL_STR | {"description": "Secret alias delivering to this inbox."},
        "webhookSecret": _NULL_STR | {"description": "Key to verify `X-Mailsac-Signature` "
                                      "of webhook calls (our extension); null when not "
                                      "reserved."},
        "implicit": _BOOL | {"description": "Not reserved, but in a domain the caller owns."},
    }),
    "Domain": _object({
        "_id": _STR, "created": _DATE, "updated": _DATE, "enablews": _BOOL,
        "hosted": _BOOL, "isDefault": _BOOL, "isPrivate": _BOOL,
        "lastVerificationErrors": _array(_STR), "owner": _STR, "verificationTxt": _STR,
        "verified": _BOOL, "verifiedMx": _BOOL,
    }),
    "WebhookDelivery": _object({
        "id": {"type": "integer"}, "messageId": _STR,
        "kind": {"type": "string", "enum": ["webhook", "slack"]}, "url": _STR,
        "status": {"type": "string", "enum": ["pending", "delivered", "failed"]},
        "attempts": _INT, "lastStatusCode": _nullable("integer"),
        "lastError": _NULL_STR, "nextAttemptAt": _DATE, "created": _DATE, "updated": _DATE,
    }),
    "Availability": _object({"available": _BOOL, "email": _STR,
                             "owned": _BOOL | {"description": "Owned by any account."}}),
    "AccountInbox": _object({"messages": _MESSAGES, "unread": _INT, "limit": _INT,
                             "skip": _INT}),
    "FilteredMessages": _object({"messages": _MESSAGES}),
    "SearchedMessages": _object({"query": _STR, "messages": _MESSAGES}),
    "Me": _object({
        "_id": _STR, "email": _NULL_STR, "messageLimit": _INT, "privateAddressCredits": _INT,
        "privateDomain": _BOOL, "capturePrivate": _BOOL, "recents": _array(_STR),
        "labels": _array(_STR), "apiAccess": _BOOL, "apiKeyName": _STR, "isAdmin": _BOOL,
        "created": _DATE,
    }),
    "MeStats": _object({
        "addresses": _array(_STR), "domains": _array(_STR), "starredMessages": _INT,
        "storedMessages": _INT, "inboxBytes": _INT, "lastMonthOps": _INT,
        "defaultDomain": _NULL_STR,
    }),
    "Validation": {"oneOf": [
        _object(_VALID_FORMAT),
        _object({"email": _STR, "validFormat": {"const": False}}),
    ], "description": "`email` and `validFormat` only, when the format is invalid."},
    "LabelsResult": _object({"_id": _STR, "labels": _array(_STR)}),
    "ExtractedCode": _object({
        "value": _STR | {"description": "As written in the mail (`482913`, `123-456`)."},
        "context": _STR | {"description": "About 60 characters of text on each side."},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "source": {"enum": ["subject", "text", "html"]},
    }),
    "ExtractedLink": _object({
        "url": _STR, "text": _STR | {"description": "Anchor text (or image alt); for a "
                                     "text-body URL, the words before it on its line."},
        "source": {"enum": ["html", "text"]},
        "kind": {"enum": ["confirm", "verify", "reset", "unsubscribe", "login", "other"]},
    }),
    "Extract": _object({
        "_id": _STR,
        "codes": _array(_schema("ExtractedCode"), maxItems=10)
                 | {"description": "Most likely first."},
        "links": _array(_schema("ExtractedLink"), maxItems=100)
                 | {"description": "HTML anchors, then text-body URLs; document order."},
        "actionLink": {"oneOf": [_schema("ExtractedLink"), {"type": "null"}],
                       "description": "The link the mail wants clicked (confirm, verify, "
                                      "reset or log in; never unsubscribe), else null."},
    }),
    "FolderResult": _object({"_id": _STR, "folder": {"type": "string", "enum": list(FOLDERS)}}),
    "ReadResult": _object({"_id": _STR, "read": _BOOL}),
    "DenyEntry": _object({"value": _STR, "kind": {"enum": ["ip", "network", "domain"]},
                          "reason": _STR}),
    "Blacklisted": _object({"blacklisted": _BOOL}),
    "TopOffenders": {"type": "object", "description": "Limit name → heaviest keys.",
                     "additionalProperties": {"type": "array", "items": _object(
                         {"key": _STR, "count": {"type": "integer"}})}},
    "SpamCheck": _object({"spamminess": {"type": "number", "minimum": 0, "maximum": 1},
                          "spam": _BOOL}),
    "SpamReport": _object({
        "_id": _STR, "storedSpam": {"type": ["number", "null"]},
        "spam": {"type": "number", "minimum": 0, "maximum": 1,
                 "description": "The score with what the model knows now."},
        "isSpam": _BOOL, "tokens": {"type": "integer"}, "discriminators": {"type": "integer"},
        "evidenceSlots": {"type": "number"},
        "forSpam": _array(_object({"token": _STR, "logit": {"type": "number"}})),
        "againstSpam": _array(_object({"token": _STR, "logit": {"type": "number"}})),
        "layers": _object({
            "shipped": _object({"spam": {"type": "number"}, "logit": {"type": "number"}}),
            "operator": _object({"logitShift": {"type": "number"},
                                 "tokensKnown": {"type": "integer"}}),
            "community": _object({"logitShift": {"type": "number"},
                                  "tokensKnown": {"type": "integer"},
                                  "maxShift": {"type": "number"}}),
        }),
    }),
    "SpamLearnResult": _object({"learned": {"type": "integer"},
                                "alreadyKnown": {"type": "integer"}}),
    "Account": _object({"_id": _STR, "email": _NULL_STR, "messageLimit": _INT,
                        "privateAddressCredits": _INT, "created": _DATE}),
    "User": _object({"id": {"type": "integer"}, "account": _STR, "username": _STR,
                     "email": _NULL_STR, "created": _DATE}),
    "ApiKey": _object(_KEY_PROPS),
    "CreatedApiKey": _object(_KEY_PROPS | {
        "key": _STR | {"description": "The secret key; shown only this once."}}),
    # Request bodies
    "AddressSettings": _body_object({
        "forward": _SETTING_TEXT | {"description": "Forward to this (valid) address; \"\" "
                                    "or null disables."},
        "enablews": _BOOL | {"description": "Publish new mail on the WebSocket."},
        "webhook": _URL_SETTING | {"description": "http(s) URL; \"\" or null disables."},
        "webhookSlack": _URL_SETTING | {"description": "Slack incoming-webhook URL."},
        "webhookSlackToFrom": _BOOL,
        "info": _SETTING_TEXT | {"description": "Free-text note."},
    }) | {"description": "Settings to change; absent ones are left as they are."},
    "MeSettings": _body_object({"capturePrivate": _BOOL | {
        "description": "Star mail captured through SMTP AUTH for the account (private)."}},
        required=("capturePrivate",)),
    "BulkAddresses": _body_object({"addresses": _array(
        _STR, minItems=1, maxItems=MAX_BULK)}, required=("addresses",)),
    "NewDenyEntry": _body_object(
        {"value": {"type": "string", "pattern": "\\S",
                   "description": "IP address, CIDR network or domain (covers sub-domains)."},
         "reason": {"type": "string", "description": "Shown to refused senders."}},
        required=("value",)),
    "SpamCheckRequest": _body_object(
        {"to": _STR, "from": _STR, "subject": _STR, "text": _STR},
        required=("to", "from", "subject", "text")),
    "SpamLearnRequest": _body_object({"messages": _array(_object({
        "raw": {"type": "string", "contentEncoding": "base64",
                "description": "The raw RFC 5322 message, base64."},
        "label": {"enum": ["spam", "ham"]}}), minItems=1, maxItems=MAX_SPAM_BATCH)},
        required=("messages",)),
    "ValidationRequest": _body_object(
        {"emails": _array(_STR, maxItems=MAX_VALIDATIONS)}, required=("emails",)),
    "NewAccount": _body_object({
        "id": _NAME, "email": _nullable("string", pattern="\\S"),
        "messageLimit": _nullable("integer", minimum=0),
        "privateAddressCredits": _nullable("integer", minimum=0),
    }, required=("id",)),
    "NewUser": _body_object({"username": _NAME, "email": _nullable("string", pattern="\\S")},
                            required=("username",)),
    "NewApiKey": _body_object({
        "name": {"type": "string", "minLength": 1, "maxLength": 100, "pattern": "\\S"},
        "admin": _BOOL | {"default": False},
        "username": _nullable("string", description="Bind the key to this user of the "
                              "account."),
    }, required=("name",)),
    "NewDomain": _body_object({
        "domain": {"type": "string", "pattern": "\\S"},
        "account": {"type": "string", "pattern": "\\S", "description": "Account id."},
        "catchAll": _BOOL | {"description": "Also reserve `*@domain` for the account.",
                             "default": False},
    }, required=("domain", "account")),
}

# ---------------------------------------------------------------------------------------
# Shared error responses, security, assembly

_ERROR_TEXT = {
    400: "Invalid address, parameter or request body.",
    401: "Missing, unknown or revoked API key.",
    403: "The key's account may not do this.",
    404: "Not found.",
    413: "The request body is larger than `MAILSAC_HTTP_MAX_BODY` (refused from "
         "`Content-Length` before it is read).",
    429: "Too many open waits, WebSocket feeds and event streams from this client IP or for "
         "this key; retry after `Retry-After` seconds.",
    503: "The database is unavailable; retry after `Retry-After` seconds.",
}
_ERROR_RESPONSES: Obj = {
    str(code): _json(text, _schema("Error")) for code, text in _ERROR_TEXT.items()
}
for _code in ("429", "503"):
    _ERROR_RESPONSES[_code]["headers"] = {
        "Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}},
    }

_SECURITY_SCHEMES: Obj = {
    "MailsacKeyHeader": {"type": "apiKey", "in": "header", "name": "Mailsac-Key"},
    "MailsacKeyQuery": {"type": "apiKey", "in": "query", "name": "_mailsacKey",
                        "description": "Least secure: the key may end up in logs."},
}

_DESCRIPTION = (
    "Self-hosted, Mailsac-compatible disposable inbound email. Errors are "
    "`{\"message\", \"error\"}` JSON. On POST and PUT the key may also be sent as the "
    "`_mailsacKey` field of a JSON object body; such a body is then parsed first, so one "
    "that is not a JSON object answers 400. Admin operations need an admin key (403 "
    "otherwise)."
)


def build_spec() -> dict[str, Any]:
    """A fresh document (deep-copied: the builders share sub-dicts between operations)."""
    return copy.deepcopy({
        "openapi": "3.1.0",
        "info": {"title": "mailsac", "version": __version__, "description": _DESCRIPTION},
        "tags": [{"name": n} for n in (*TAGS, CHAOS_TAG)],
        "paths": paths() | chaos_paths(),
        "components": {
            "schemas": _SCHEMAS | CHAOS_SCHEMAS,
            "parameters": _PARAMETERS | CHAOS_PARAMETERS,
            "responses": _ERROR_RESPONSES,
            "securitySchemes": _SECURITY_SCHEMES,
        },
    })


_SPEC = build_spec()


async def openapi_json(request: Request) -> Response:
    return JSONResponse(_SPEC)
