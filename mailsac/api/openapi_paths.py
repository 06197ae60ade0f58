"""The operations of the OpenAPI document: small builders and the path table.

``mailsac.api.openapi`` adds the parameters, the component schemas, the shared error
responses and the security schemes. Status codes are the ones the handlers (and the
services they call) really return; an error entry may say what the code means for that
operation (a 3.1 Reference Object's ``description`` overrides the shared one).
"""

from __future__ import annotations

from typing import Any

from mailsac.addresses import MAX_BULK
from mailsac.api.account import MAX_VALIDATIONS
from mailsac.mailbox import MAX_LABELS

Obj = dict[str, Any]

SECURITY: list[Obj] = [{"MailsacKeyHeader": []}, {"MailsacKeyQuery": []}]
_STR: Obj = {"type": "string"}


# ---------------------------------------------------------------------------------------
# Small builders


def _ref(kind: str, name: str) -> Obj:
    return {"$ref": f"#/components/{kind}/{name}"}


def _array(items: Obj, *, nullable: bool = False, **extra: Any) -> Obj:
    return {"type": ["array", "null"] if nullable else "array", "items": items, **extra}


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


def _schema(name: str) -> Obj:
    return _ref("schemas", name)


def _list(description: str, name: str) -> Obj:
    return _json(description, _array(_schema(name)))


Errors = dict[int, str] | tuple[int, ...]


_WAIT_PARAMS = ("timeout", "waitSince", "subject", "from", "to", "contains", "count")


def _wait_op(op_id: str, tag: str, summary: str, params: tuple[str, ...],
             errors: dict[int, str]) -> Obj:
    """A matching wait (``mailsac.api.waits``): one message, or ``count`` of them."""
    found = {"anyOf": [_schema("Message"), {
        "type": "object", "required": ["messages"],
        "properties": {"messages": _array(_schema("Message"))}}]}
    return _op(op_id, tag, summary, _json(
        "The oldest matching message; with `count`, `{\"messages\": [...]}` (oldest first).",
        found), params=params + _WAIT_PARAMS, errors=errors,
        more={"429": _ref("responses", "429"), "204": _response(
            "Fewer than `count` (default 1) messages matched within `timeout`.", headers={
                "X-Mailsac-Waited-Until": {"description": "When the wait ended.",
                                           "schema": _STR},
                "X-Mailsac-Matched": {"description": "How many messages matched.",
                                      "schema": {"type": "integer"}}})},
        description="Answers as soon as `count` (default 1) messages received at or after "
        "`since` match every given criterion.")


def _op(op_id: str, tag: str, summary: str, ok: Obj, *, params: tuple[str, ...] = (),
        errors: Errors = (400, 401, 404, 503), status: str = "200", secure: bool = True,
        more: Obj | None = None, body: str | None = None, body_required: bool = True,
        description: str | None = None) -> Obj:
    """One operation: ``ok`` under ``status``, shared Error responses for ``errors``
    (a mapping gives the code's meaning for this operation; "" keeps the shared text)."""
    reasons = errors if isinstance(errors, dict) else dict.fromkeys(errors, "")
    responses: Obj = {status: ok}
    for code, reason in sorted(reasons.items()):
        error = _ref("responses", str(code))
        responses[str(code)] = error | {"description": reason} if reason else error
    operation: Obj = {
        "operationId": op_id,
        "tags": [tag],
        "summary": summary,
        "parameters": [_ref("parameters", p) for p in params],
        "security": SECURITY if secure else [],
        "responses": responses | (more or {}),
    }
    if description:
        operation["description"] = description
    if body:
        operation["requestBody"] = {"required": body_required, "content": {
            "application/json": {"schema": _schema(body)}}}
        operation["responses"]["413"] = _ref("responses", "413")  # MAILSAC_HTTP_MAX_BODY
    return operation


# ---------------------------------------------------------------------------------------
# Paths

_M = "/api/addresses/{email}/messages/{id}"
_A = "/api/addresses/{email}"
_BODY_400 = ("The request body is not a JSON object (read only when the key is in neither "
             "the header nor the query).")
_OTHERS_INBOX = "Missing, unknown or revoked key, or another account owns this inbox."
_INBOX_ERRORS: dict[int, str] = {400: "Invalid inbox address or query parameter.", 401: "",
                                 403: "Another account owns this inbox.", 503: ""}
_MSG_ERRORS: dict[int, str] = {400: "Invalid inbox address.",
                               401: _OTHERS_INBOX + " (whether or not the message exists).",
                               404: "No such message visible to this key.", 503: ""}
_ADMIN_ERRORS: dict[int, str] = {401: "", 403: "The key is not an admin key, or it is an "
                                  "admin key of another account than the one named (only "
                                  "operator keys manage other accounts).", 503: ""}
_OPERATOR_ONLY = {403: "Not an operator key (an admin key of the account `admin`)."}
_NO_ACCOUNT = "No such account."
_FEEDBACK_403 = ("The account's feedback limit for this class "
                 "(MAILSAC_SPAM_FEEDBACK_PER_ACCOUNT) or the global one "
                 "(MAILSAC_SPAM_FEEDBACK_MAX_ROWS) is reached; the message is not moved.")

_DISPOSITION = {"Content-Disposition": {
    "description": "Present when `download` is set: `attachment; filename=\"<id>.<ext>\"`.",
    "schema": _STR,
}}
_CSP = {"Content-Security-Policy": {"description": "Sandboxes the HTML.", "schema": _STR}}


def _body_op(op_id: str, summary: str, media: str, description: str) -> Obj:
    headers = _DISPOSITION | (_CSP if media == "text/html" else {})
    return {"get": _op(op_id, "Bodies", summary, _response(description, media, None, headers),
                       params=("email", "id", "download"), errors=_MSG_ERRORS)}


def _headers_op(op_id: str, summary: str) -> Obj:
    ok: Obj = {"description": "The headers, in the requested format.", "content": {
        "application/json": {"schema": {"oneOf": [
            _schema("HeadersJson"), _array(_schema("HeaderOrdered"))]}},
        "text/plain": {"schema": _STR},
    }}
    return {"get": _op(op_id, "Messages", summary, ok,
                       params=("email", "id", "messageHeadersFormat", "format"),
                       errors=_MSG_ERRORS | {400: "Invalid inbox address or header format."})}


def _label_op(op_id: str, summary: str) -> Obj:
    return _op(op_id, "Messages", summary, _json("The message's labels.",
                                                 _schema("LabelsResult")),
               params=("email", "id", "label"), errors=_MSG_ERRORS | {
                   400: "Invalid inbox address, blank or too long label, or already "
                        f"{MAX_LABELS} labels."})


def _settings_op(op_id: str, summary: str) -> Obj:
    return _op(op_id, "Addresses", summary, _json("The updated address.", _schema("Address")),
               params=("email",), body="AddressSettings", body_required=False,
               errors={400: "Invalid address or settings.", 401: "Missing or unknown key, or "
                       "the address is not reserved by your account.", 503: ""})


def _message_paths() -> Obj:
    message = _schema("Message")
    binary = {"type": "string", "contentMediaType": "application/octet-stream"}
    download = {"description": "The attachment bytes, with its own Content-Type "
                "(`application/octet-stream` when it has none).",
                "content": {"application/octet-stream": {"schema": binary}, "*/*": {}},
                "headers": {"Content-Disposition": {"schema": _STR, "description":
                                                    "`attachment; filename*=UTF-8''…`"}}}
    return {
        "/api/addresses/{email}/messages": {
            "get": _op("listMessages", "Messages", "List an inbox, newest first",
                       _json("Messages.", _array(message)),
                       params=("email", "limit", "until"), errors=_INBOX_ERRORS),
            "delete": _op("purgeInbox", "Messages", "Delete every non-starred message",
                          _response("Purged."), status="204", params=("email",),
                          errors=_INBOX_ERRORS | {400: "Invalid inbox address."}),
        },
        "/api/addresses/{email}/message-count": {"get": _op(
            "countMessages", "Messages", "Number of messages in an inbox",
            _json("Count.", _schema("MessageCount")), params=("email",),
            errors=_INBOX_ERRORS | {400: "Invalid inbox address."})},
        "/api/addresses/{email}/messages/wait": {"get": _wait_op(
            "waitForMessage", "Messages", "Wait for matching messages in an inbox (long poll)",
            ("email",), _INBOX_ERRORS | {400: "Invalid inbox address or wait parameter."})},
        _M: {
            "get": _op("getMessage", "Messages", "One message",
                       _json("The message.", message), params=("email", "id"),
                       errors=_MSG_ERRORS),
            "delete": _op("deleteMessage", "Messages", "Delete one message (no undo)",
                          _json("Deleted.", _schema("DeletedMessage")),
                          params=("email", "id"), errors=_MSG_ERRORS),
        },
        _M + "/headers": _headers_op("getMessageHeaders", "Parsed message headers"),
        _M + "/extract": {"get": _op(
            "getMessageExtract", "Messages", "One-time codes and links of a message",
            _json("Codes and links (our extension).", _schema("Extract")),
            params=("email", "id"), errors=_MSG_ERRORS,
            description="Computed once at intake (on demand for older mail): likely "
                        "verification codes with their context, most likely first; the "
                        "links with their anchor text and kind; the action link.")},
        _M + "/attachments": {"get": _op(
            "listAttachments", "Attachments", "Attachments of a message",
            _json("Attachment metadata.", _array(_schema("Attachment"))),
            params=("email", "id"), errors=_MSG_ERRORS)},
        _M + "/attachments/{ident}": {"get": _op(
            "downloadAttachment", "Attachments", "Download one attachment", download,
            params=("email", "id", "ident"),
            errors=_MSG_ERRORS | {404: "No such message visible to this key, or no such "
                                       "attachment in it."})},
        _M + "/star": {"put": _op(
            "toggleStar", "Messages", "Star or unstar a message (toggle)",
            _json("The message; `savedBy` is the account when starred, else null.", message),
            params=("email", "id"), errors=_MSG_ERRORS | {
                403: "Starring it would exceed the account's starred-message limit "
                     "(MAILSAC_MAX_STARRED_PER_ACCOUNT and the account's messageLimit)."},
            description="A starred message is private to the starring account and never "
                        "recycled; it stays the starrer's even if another account reserves "
                        "its inbox later.")},
        _M + "/labels/{label}": {
            "put": _label_op("addLabel", "Add a label (idempotent)"),
            "delete": _label_op("removeLabel", "Remove a label (idempotent)"),
        },
        _M + "/folder/{folder}": {"put": _op(
            "setFolder", "Messages", "Move a message to a folder",
            _json("The new folder.", _schema("FolderResult")), params=("email", "id", "folder"),
            errors=_MSG_ERRORS | {400: "Invalid inbox address or folder."})},
        _M + "/read/{state}": {"put": _op(
            "setRead", "Messages", "Mark a message read or unread",
            _json("The new read state.", _schema("ReadResult")), params=("email", "id", "state"),
            errors=_MSG_ERRORS | {400: "Invalid inbox address, or state is not true/false."})},
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


def _address_paths() -> Obj:
    address = _schema("Address")
    return {
        "/api/addresses": {"get": _op(
            "listAddresses", "Addresses", "Addresses reserved by the account",
            _list("Reserved addresses, sorted.", "Address"), errors=(401, 503))},
        _A: {
            "get": _op("getAddress", "Addresses", "One address", _json("The address.", address),
                       params=("email",), errors={
                           400: "Invalid address.", 401: "Missing or unknown key, or the "
                           "address (or its domain) belongs to another account.",
                           403: "Showing this address would create a new alias beyond the "
                           "account's limit (MAILSAC_MAX_ALIASES_PER_ACCOUNT).", 503: ""},
                       description="A reserved address of the account, or a non-reserved "
                       "one (then its settings are null/false and `implicit` tells whether "
                       "the account owns its domain)."),
            "post": _op("reserveAddress", "Addresses", "Reserve (make private) an address",
                        _json("The reserved address.", address), params=("email",),
                        body="AddressSettings", body_required=False, errors={
                            400: "Invalid address or settings; already reserved by your "
                            "account; not enough private address credits; or `*@domain` "
                            "outside a domain of your account.",
                            401: "Missing or unknown key, or the address or its domain "
                            "belongs to another account.", 503: ""},
                        description="Its stored and future mail becomes private to the "
                        "account. `*@domain` reserves the catch-all of an owned domain."),
            "put": _settings_op("updateAddress", "Change an address's forwarding settings"),
            "delete": _op("releaseAddress", "Addresses", "Release a reserved address",
                          _json("The released address, as it was.", address),
                          params=("email", "deleteAddressMessages"), errors={
                              400: "Invalid address, or it is not reserved.",
                              401: "Missing or unknown key, or reserved by another account.",
                              503: ""},
                          description="Its mail becomes public again (or the domain "
                          "owner's), unless `deleteAddressMessages` deletes it."),
        },
        _A + "/availability": {"get": _op(
            "getAddressAvailability", "Addresses", "Whether an address is free to reserve",
            _json("Availability.", _schema("Availability")), params=("email",),
            errors={400: "Invalid address.", 401: "", 503: ""})},
        _A + "/webhook-deliveries": {"get": _op(
            "listWebhookDeliveries", "Addresses", "Recent webhook and Slack deliveries",
            _list("At most 100 deliveries, newest first.", "WebhookDelivery"),
            params=("email",), errors={400: "Invalid address.", 401: "Missing or unknown key, "
                                       "or the address is not reserved by your account.",
                                       503: ""},
            description="Only deliveries your account's settings created (never a previous "
            "holder's). `url` hides secrets: webhook URLs without userinfo, query or fragment; "
            "Slack URLs only as scheme and host. Payloads are not shown, are dropped when the "
            "message is deleted or after MAILSAC_WEBHOOK_PAYLOAD_RETENTION_HOURS, and finished "
            "rows go after MAILSAC_WEBHOOK_HISTORY_RETENTION_HOURS.")},
        "/api/private-addresses-bulk": {"post": _op(
            "reserveAddresses", "Addresses", "Reserve several addresses (all or none)",
            _list("The reserved addresses.", "Address"), body="BulkAddresses", errors={
                400: f"Not a non-empty list of addresses, more than {MAX_BULK} distinct "
                "ones, an invalid one, one already yours, or not enough credits.",
                401: "Missing or unknown key, or an address or its domain belongs to another "
                "account.", 503: ""})},
        "/api/private-address-forwarding/{email}": {"put": _settings_op(
            "updateAddressForwarding", "Change forwarding settings (legacy path of PUT "
            "/api/addresses/{email})")},
    }


def _me_update_op(op_id: str) -> Obj:
    return _op(op_id, "Account", "Change the account's Email Capture setting",
               _json("The account, changed.", _schema("Me")), body="MeSettings",
               errors={400: "The body is not a JSON object or `capturePrivate` is not a "
                       "boolean.", 401: "", 404: "The key's account no longer exists.",
                       503: ""},
               description="Any key of the account may change it (PUT and PATCH are the "
               "same). With `capturePrivate` on, mail the account sends through SMTP AUTH "
               "(Email Capture) is starred for it: private to the account and never "
               "recycled; mail captured before the change is left as it is.")


def _account_paths() -> Obj:
    messages = _list("Messages, newest first.", "Message")
    domain_403 = {403: "The domain is not owned by your account."}
    return {
        "/api/addresses/starred/messages": {"get": _op(
            "listStarredMessages", "Account", "Messages starred by the account", messages,
            params=("limit", "skip"), errors=(400, 401, 503))},
        "/api/domains": {"get": _op(
            "listDomains", "Domains", "Domains owned by the account",
            _list("Owned domains, sorted.", "Domain"), errors=(401, 503))},
        "/api/domains/{domain}/messages": {"get": _op(
            "listDomainMessages", "Domains", "Private mail of an owned domain", messages,
            params=("domain", "limit", "until"),
            errors={400: "Invalid domain, limit or until.", 401: "", 503: ""} | domain_403)},
        "/api/domains/{domain}/messages/wait": {"get": _wait_op(
            "waitForDomainMessage", "Domains", "Wait for matching mail of an owned domain "
            "(long poll)", ("domain",),
            {400: "Invalid domain or wait parameter.", 401: "", 503: ""} | domain_403)},
        "/api/messages/wait": {"get": _wait_op(
            "waitForAccountMessage", "Account", "Wait for matching mail anywhere in your "
            "account (long poll)", (), {400: "Invalid wait parameter.", 401: "", 503: ""})},
        "/api/domains/{domain}/delete-all-domain-mail": {"post": _op(
            "deleteDomainMail", "Domains", "Delete an owned domain's non-starred mail",
            _response("Deleted."), status="204", params=("domain",),
            errors={400: "Invalid domain, or " + _BODY_400[0].lower() + _BODY_400[1:],
                    401: "", 503: ""} | domain_403)},
        "/api/inbox": {"get": _op(
            "getAccountInbox", "Account", "All the account's mail, newest first",
            _json("A page of messages.", _schema("AccountInbox")),
            params=("limit", "skip", "since"), errors=(400, 401, 503),
            description="The account's private mail plus the public messages it starred; "
            "`unread` counts all of them (ignoring `since`).")},
        "/api/inbox-filter": {"get": _op(
            "filterAccountInbox", "Account", "Account mail matching every given criterion",
            _json("At most 100 messages.", _schema("FilteredMessages")),
            params=("andSubjectIncludes", "andFrom", "andTo"),
            errors={400: "None of the three criteria given.", 401: "", 503: ""})},
        "/api/inbox-search": {"get": _op(
            "searchAccountInbox", "Account", "Account mail matching a text",
            _json("At most 100 messages.", _schema("SearchedMessages")), params=("query",),
            errors={400: "The query contains a character that cannot be searched (NUL).",
                    401: "", 503: ""})},
        "/api/spam-checks": {"post": _op(
            "checkSpam", "Spam", "Score a message given as to/from/subject/text",
            _json("Mailsac's classifier-server answer.", _schema("SpamCheck")),
            body="SpamCheckRequest", errors=(400, 401, 503))},
        "/api/messages/{id}/spam": {"post": _op(
            "markSpam", "Spam", "Teach the spam model: this message is spam",
            _json("The message, now in the spam folder.", _schema("Message")),
            params=("id",), errors={401: "", 403: _FEEDBACK_403, 404: "", 503: ""})},
        "/api/messages/{id}/ham": {"post": _op(
            "markHam", "Spam", "Teach the spam model: this message is not spam",
            _json("The message, back in the inbox folder.", _schema("Message")),
            params=("id",), errors={401: "", 403: _FEEDBACK_403, 404: "", 503: ""})},
        "/api/messages/{id}/spam-report": {"get": _op(
            "spamReport", "Spam", "Why a message has its spam score",
            _json("Score, strongest tokens for and against, and the model layers' shares.",
                  _schema("SpamReport")),
            params=("id",), errors={401: "", 404: "", 503: ""},
            description="Our extension. The same messages as reading them; the score is "
            "recomputed with everything the model has learned since delivery.")},
        "/api/me": {
            "get": _op("getMe", "Account", "The key's account",
                       _json("The account.", _schema("Me")),
                       errors={401: "", 404: "The key's account no longer exists.", 503: ""}),
            "put": _me_update_op("updateMe"),
            "patch": _me_update_op("patchMe"),
        },
        "/api/me/stats": {"get": _op(
            "getMeStats", "Account", "Usage of the key's account",
            _json("Statistics.", _schema("MeStats")), errors=(401, 503))},
        "/api/validations/addresses/{email}": {"get": _op(
            "validateAddress", "Validations", "Check one address",
            _json("The verdict.", _schema("Validation")), params=("candidate",),
            errors={401: "", 404: _NO_ROUTE, 503: ""})},
        "/api/validations/addresses": {"post": _op(
            "validateAddresses", "Validations", f"Check up to {MAX_VALIDATIONS} addresses",
            _list("One verdict per address, in order.", "Validation"),
            body="ValidationRequest", errors={
                400: f"`emails` is not a list of strings or has more than {MAX_VALIDATIONS}.",
                401: "",
                503: ""})},
    }


def _admin_paths() -> Obj:
    def admin_op(op_id: str, summary: str, ok: Obj, *, errors: dict[int, str] | None = None,
                 **extra: Any) -> Obj:
        return _op(op_id, "Admin", summary, ok, errors=_ADMIN_ERRORS | (errors or {}), **extra)

    users = "/api/admin/accounts/{account}/users"
    keys = "/api/admin/accounts/{account}/keys"
    return {
        "/api/admin/accounts": {
            "post": admin_op("createAccount", "Create an account",
                             _json("The account.", _schema("Account")), body="NewAccount",
                             errors={400: "Invalid body or id, or the account exists.",
                                     **_OPERATOR_ONLY}),
            "get": admin_op("listAccounts", "Every account (an account admin: its own)",
                            _list("Accounts.", "Account")),
        },
        users: {
            "post": admin_op("addUser", "Add a user to an account",
                             _json("The user.", _schema("User")), params=("account",),
                             body="NewUser", errors={
                                 400: "Invalid body or username, or the username is taken.",
                                 404: _NO_ACCOUNT}),
            "get": admin_op("listUsers", "Users of an account", _list("Users.", "User"),
                            params=("account",), errors={404: _NO_ACCOUNT}),
        },
        keys: {
            "post": admin_op("createApiKey", "Create an API key for an account",
                             _json("The key, with its secret.", _schema("CreatedApiKey")),
                             params=("account",), body="NewApiKey", errors={
                                 400: "Invalid body or name.",
                                 404: "No such account, or no such user in it."}),
            "get": admin_op("listApiKeys", "API keys of an account (revoked ones included)",
                            _list("Keys; an unknown account has none.", "ApiKey"),
                            params=("account",)),
        },
        "/api/admin/deny-list": {
            "get": admin_op("listDenyList", "The deny-list",
                            _list("Entries.", "DenyEntry"), errors=_OPERATOR_ONLY),
            "post": admin_op("addDenyEntry", "Refuse mail from an IP, network or domain",
                             _json("The stored entry.", _schema("DenyEntry")),
                             body="NewDenyEntry",
                             errors={400: "Not an IP, CIDR network or domain.",
                                     **_OPERATOR_ONLY}),
        },
        "/api/admin/deny-list/{value}": {"delete": admin_op(
            "removeDenyEntry", "Take an entry off the deny-list", _response("Removed."),
            status="204", params=("value",),
            errors={400: "Not an IP, CIDR network or domain.", 404: "Not on the deny-list.",
                    **_OPERATOR_ONLY})},
        "/api/admin/spam/learn": {"post": admin_op(
            "learnSpam", "Teach the spam model's operator layer with raw messages",
            _json("How many were learned; repeats are not counted twice.",
                  _schema("SpamLearnResult")), body="SpamLearnRequest",
            errors={400: "Not 1-200 messages with base64 raw and a spam/ham label.",
                    404: "Spam scoring is disabled.", 413: "", **_OPERATOR_ONLY})},
        "/api/admin/top-offenders": {"get": admin_op(
            "topOffenders", "Heaviest senders per rate limit (from the in-memory counter)",
            _json("Per limit name.", _schema("TopOffenders")), params=("limit",),
            errors=_OPERATOR_ONLY)},
        "/api/mailstats/blacklist": {"get": _op(
            "mailstatsBlacklist", "Mailstats", "Deny-listed domains and IPs",
            _json("Values.", _array({"type": "string"})), errors=(401, 503))},
        "/api/mailstats/blacklist/{value}": {"get": _op(
            "mailstatsBlacklisted", "Mailstats", "Is this domain or IP deny-listed?",
            _json("The answer.", _schema("Blacklisted")), params=("value",),
            errors={401: "", 404: _NO_ROUTE, 503: ""})},
        "/api/admin/keys/{key_id}": {"delete": admin_op(
            "revokeApiKey", "Revoke an API key", _response("Revoked."), status="204",
            params=("key_id",), errors={400: "`key_id` is not an integer.",
                                        404: "No active key with this id (in the "
                                             "caller's account, for an account admin)."})},
        "/api/admin/domains": {"post": admin_op(
            "addDomain", "Give a domain to an account", _json("The domain.", _schema("Domain")),
            body="NewDomain", errors={
                400: "Invalid body or domain.",
                403: "Not an operator key; or the domain, or an address reserved in it, "
                     "belongs to another account.", 404: _NO_ACCOUNT},
            description="Its stored mail becomes private to the account; idempotent for the "
            "same account.")},
    }


_NO_ROUTE = ("No route matched: the value was empty or a dot-segment (`.`, `..`) that "
             "URL normalisation removes.")


def paths() -> Obj:
    meta = {
        "/healthz": {"get": _op(
            "healthz", "Health", "Readiness of the database and the SMTP listener",
            _json("Ready.", _schema("Health")), errors=(), secure=False,
            more={"503": _json("Degraded (body says why).", _schema("Health"))})},
        "/readyz": {"get": _op(
            "readyz", "Health", "May a load balancer send this node traffic?",
            _json("Serving.", _schema("Ready")), secure=False,
            errors={503: "Draining after SIGTERM (`MAILSAC_DRAIN_SECONDS`): still serving, "
                         "but new connections should go to another node."},
            description="No database query: cheap enough to poll every second. Unready "
            "from SIGTERM until the process exits; see `/healthz` for the database.")},
        "/api/openapi.json": {"get": _op(
            "getOpenApi", "Meta", "This OpenAPI document",
            _json("OpenAPI 3.1 document.", {"type": "object"}), errors=(), secure=False)},
    }
    return meta | _address_paths() | _account_paths() | _message_paths() | _admin_paths()


TAGS = ("Health", "Meta", "Messages", "Bodies", "Attachments", "Addresses", "Domains",
        "Account", "Validations", "Admin")
