"""The OpenAPI description of the failure-injection ("chaos") routes (:mod:`.chaos`):
their operations, schemas and the ``rule`` parameter, merged by :mod:`.openapi`."""

from __future__ import annotations

from mailsac.api.openapi_paths import _STR, Obj, _array, _json, _list, _op, _response, _schema
from mailsac.chaos.rules import (
    ACTIONS,
    CODES,
    DEFAULT_EXPIRES,
    MAX_DELAY,
    MAX_EXPIRES,
    MAX_MESSAGE,
    MAX_TIMES,
    SCOPES,
    STAGES,
)

TAG = "Chaos"
_DATE: Obj = {"type": "string", "format": "date-time",
              "description": "UTC, millisecond precision, `Z` suffix."}


def _nullable(kind: str, **extra: object) -> Obj:
    return {"type": [kind, "null"], **extra}


def _closed(properties: Obj) -> Obj:
    return {"type": "object", "properties": properties, "required": list(properties),
            "additionalProperties": False}


CHAOS_PARAMETERS: Obj = {
    "rule": {"name": "rule", "in": "path", "required": True, "schema": _STR,
             "description": "The rule's `_id`."},
}

CHAOS_SCHEMAS: Obj = {
    "NewChaosRule": {
        "type": "object", "required": ["stage"], "additionalProperties": False,
        "properties": {
            "stage": {"enum": list(STAGES), "description": "Address and domain rules: "
                      "`rcpt` or `data` only."},
            "action": {"enum": list(ACTIONS), "default": "reply"},
            "code": _nullable("integer", enum=[*sorted(CODES), None],
                              description="For `reply` (required there): at `connect` 421 "
                              "or 554; 421 closes the connection (not at `rcpt` for address "
                              "and domain rules)."),
            "message": _nullable("string", maxLength=MAX_MESSAGE, pattern="^[ -~]*\\S[ -~]*$",
                                 description="Reply text (printable ASCII); may start with "
                                 "an enhanced status code, else X.0.0 is added."),
            "delaySeconds": _nullable("number", exclusiveMinimum=0, maximum=MAX_DELAY,
                                      description="For `delay` (required there)."),
            "probability": _nullable("number", minimum=0, maximum=1,
                                     description="Chance per attempt; null: always."),
            "times": _nullable("integer", minimum=1, maximum=MAX_TIMES,
                               description="Fire this many times in all (cluster-wide); "
                               "null: unlimited."),
            "expiresInSeconds": _nullable("integer", minimum=1, maximum=MAX_EXPIRES,
                                          default=DEFAULT_EXPIRES),
            "_mailsacKey": {"type": "string", "description": "The API key, when sent "
                            "neither as `Mailsac-Key` header nor as query parameter."},
        },
    },
    "ChaosRule": _closed({
        "_id": _STR, "scope": {"enum": list(SCOPES)}, "target": _nullable("string"),
        "stage": {"enum": list(STAGES)}, "action": {"enum": list(ACTIONS)},
        "code": _nullable("integer"), "message": _nullable("string"),
        "delaySeconds": _nullable("number"), "probability": _nullable("number"),
        "timesLeft": _nullable("integer", description="null: unlimited."),
        "expires": _DATE, "created": _DATE,
        "fired": {"type": "integer", "minimum": 0,
                  "description": "Times it fired (other nodes' count within seconds)."},
    }),
    "ChaosEvent": _closed({
        "inbox": _STR, "rule": _STR, "scope": {"enum": list(SCOPES)},
        "stage": {"enum": list(STAGES)}, "action": {"enum": list(ACTIONS)},
        "reply": _nullable("string"), "from": _nullable("string"), "ip": _nullable("string"),
        "at": _DATE,
    }),
}


def _trio(prefix: str, name: str, params: tuple[str, ...], forbidden: str,
          created: str) -> tuple[Obj, Obj]:
    errors = {400: "Invalid path parameter.", 401: "", 403: forbidden, 503: ""}
    collection = {
        "get": _op(f"list{name}ChaosRules", TAG, f"Live chaos rules {created}",
                   _list("Rules, oldest first (the order they are tried in).", "ChaosRule"),
                   params=params, errors=errors),
        "post": _op(f"create{name}ChaosRule", TAG, f"Add a chaos rule {created}",
                    _json("The rule.", _schema("ChaosRule")), params=params, status="201",
                    body="NewChaosRule", errors=errors | {
                        400: "Invalid rule (the message says which field), an impossible "
                        "stage/action for this scope, or too many live rules."}),
    }
    item = {"delete": _op(f"delete{name}ChaosRule", TAG, f"Delete a chaos rule {created}",
                          _response("Deleted."), params=(*params, "rule"), status="204",
                          errors=errors | {404: "No such rule here."})}
    return {prefix: collection}, {prefix + "/{rule}": item}


def chaos_paths() -> Obj:
    address = "/api/addresses/{email}/chaos"
    domain = "/api/domains/{domain}/chaos"
    paths: Obj = {}
    for pair in (
        _trio(address, "Address", ("email",), "The address is not the account's (reserved, "
              "or in its custom domain).", "on an address"),
        _trio(domain, "Domain", ("domain",), "The domain is not the account's.",
              "on a custom domain"),
        _trio("/api/admin/chaos", "Global", (), "Not an operator key (an admin key of the "
              "account `admin`).", "for every connection (operator)"),
    ):
        for part in pair:
            paths |= part
    paths[address + "/events"] = {"get": _op(
        "listChaosEvents", TAG, "Recent failures injected for an address",
        _json("At most 100, newest first.", _array(_schema("ChaosEvent"))),
        params=("email",), errors={400: "Invalid address.", 401: "",
                                   403: "The address is not the account's.", 503: ""})}
    return paths
