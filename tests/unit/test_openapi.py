"""The OpenAPI document covers every route, resolves, is valid and matches real payloads."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, cast

import pytest

from mailsac.addresses import AddressView
from mailsac.api.account import validate_address
from mailsac.api.app import ROUTES
from mailsac.api.context import ApiContext
from mailsac.api.errors import error_response
from mailsac.api.openapi import _SPEC, build_spec
from mailsac.api.schemas import account_json, address_json, domain_json, key_json, user_json
from mailsac.messagejson import message_json
from mailsac.mime import headers_json, headers_ordered, parse_message
from mailsac.storage import MessageRecord
from mailsac.storage.accounts import Account, User
from mailsac.storage.directory import AddressRecord, DomainRecord
from mailsac.storage.keys import ApiKey

METHODS = ("get", "put", "post", "delete", "patch", "options", "head", "trace")


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return build_spec()


def _operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def _walk_refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _walk_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk_refs(value)


def _resolve(spec: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = spec
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, f"unresolvable $ref {ref}"
        node = node[part]
    return node


def test_every_route_is_documented(spec: dict[str, Any]) -> None:
    documented = {(path, method) for path, method, _ in _operations(spec)}
    routed = {
        # "{label:path}" is "{label}" in the document (a template has no converters).
        (re.sub(r"{(\w+):\w+}", r"{\1}", route.path), method.lower())
        for route in ROUTES
        for method in route.methods or ()
        if method != "HEAD"
    }
    assert routed, "ROUTES is empty?"
    assert routed == documented


def test_operation_ids_are_present_and_unique(spec: dict[str, Any]) -> None:
    ids = [op.get("operationId") for _, _, op in _operations(spec)]
    assert all(isinstance(i, str) and i for i in ids)
    assert len(ids) == len(set(ids))


def test_every_ref_resolves(spec: dict[str, Any]) -> None:
    refs = set(_walk_refs(spec))
    assert refs
    for ref in refs:
        _resolve(spec, ref)


def test_path_parameters_match_templates(spec: dict[str, Any]) -> None:
    for path, method, op in _operations(spec):
        params = [_resolve(spec, p["$ref"]) if "$ref" in p else p for p in op["parameters"]]
        in_path = {p["name"] for p in params if p["in"] == "path"}
        assert in_path == set(re.findall(r"{(\w+)}", path)), (path, method)
        assert all(p["required"] for p in params if p["in"] == "path")
        names = [(p["name"], p["in"]) for p in params]
        assert len(names) == len(set(names)), (path, method)


def test_security(spec: dict[str, Any]) -> None:
    schemes = spec["components"]["securitySchemes"]
    assert schemes["MailsacKeyHeader"] == {"type": "apiKey", "in": "header",
                                           "name": "Mailsac-Key"}
    assert {k: v for k, v in schemes["MailsacKeyQuery"].items() if k != "description"} == {
        "type": "apiKey", "in": "query", "name": "_mailsacKey"}
    for path, method, op in _operations(spec):
        if path.startswith("/api/") and path != "/api/openapi.json":
            assert op.get("security"), (path, method)
            for requirement in op["security"]:
                assert set(requirement) <= set(schemes)
            assert {"401", "503"} <= set(op["responses"]), (path, method)
        else:
            assert op.get("security") == [], (path, method)


def test_error_responses_use_error_schema(spec: dict[str, Any]) -> None:
    for path, _method, op in _operations(spec):
        for status, response in op["responses"].items():
            if status.startswith(("4", "5")) and path != "/healthz":
                body = _resolve(spec, response["$ref"])["content"]["application/json"]
                assert body["schema"] == {"$ref": "#/components/schemas/Error"}, (path, status)


def test_purge_is_204_without_body(spec: dict[str, Any]) -> None:
    response = spec["paths"]["/api/addresses/{email}/messages"]["delete"]["responses"]["204"]
    assert "content" not in response


def test_served_document_is_json_and_fresh(spec: dict[str, Any]) -> None:
    assert json.loads(json.dumps(_SPEC)) == spec
    other = build_spec()
    other["paths"].clear()
    assert build_spec()["paths"]


def test_document_is_valid_openapi_3_1(spec: dict[str, Any]) -> None:
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(spec)


# ---------------------------------------------------------------------------------------
# Real payloads conform to the component schemas


def _validator(spec: dict[str, Any], schema_name: str) -> Any:
    jsonschema = pytest.importorskip("jsonschema")
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": spec["components"]}
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def _check(spec: dict[str, Any], schema_name: str, instance: Any) -> None:
    _validator(spec, schema_name).validate(json.loads(json.dumps(instance)))


def _same_keys(spec: dict[str, Any], schema_name: str, instance: dict[str, Any]) -> None:
    assert set(instance) == set(spec["components"]["schemas"][schema_name]["properties"])


RAW = (
    b"From: Alice <alice@example.org>\r\nTo: bob@example.com\r\nSubject: hi\r\n"
    b"Received: from a\r\nReceived: from b\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
    b"--b\r\nContent-Type: text/plain\r\n\r\nhello https://example.net/x\r\n"
    b'--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename="a.pdf"'
    b"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n"
    b"--b\r\nContent-Type: image/png\r\n\r\niVBORw==\r\n--b--\r\n"
)


def _record(**overrides: Any) -> MessageRecord:
    fields: dict[str, Any] = dict(
        id="abc-0", inbox="bob@example.com", original_inbox="bob+x@example.com",
        domain="example.com", received=datetime(2026, 1, 2, 3, 4, 5, 678000, UTC), size=42,
        blob_key="k", subject="", from_addrs=[{"name": "", "address": "a@example.org"}],
        to_addrs=[], cc_addrs=[], bcc_addrs=[], attachments=None, links=[], ip="", via="",
        mail_from="", message_id=None, folder="inbox", labels=[], read=False, rtls=False,
        saved_by=None, spam=None, account_id=None,
    )
    return MessageRecord(**(fields | overrides))


def test_message_json_conforms(spec: dict[str, Any]) -> None:
    _check(spec, "Message", message_json(_record()))
    _check(spec, "Message", message_json(_record(
        attachments=["d41d8cd98f00b204e9800998ecf8427e"], saved_by="acct", spam=0.25,
        links=["https://example.net"], labels=["x"], read=True, rtls=True)))
    _same_keys(spec, "Message", message_json(_record()))


def test_parsed_payloads_conform(spec: dict[str, Any]) -> None:
    parsed = parse_message(RAW)
    assert len(parsed.attachments) == 2
    for attachment in parsed.attachments:
        _check(spec, "Attachment", attachment.to_json())
    _check(spec, "HeadersJson", headers_json(parsed.headers))
    for item in headers_ordered(parsed.headers):
        _check(spec, "HeaderOrdered", item)


def test_error_and_health_bodies_conform(spec: dict[str, Any]) -> None:
    for status in (400, 401, 404, 503):
        _check(spec, "Error", json.loads(bytes(error_response(status, "nope").body)))
    ok = {"status": "ok", "version": "0.1.0", "database": {"ok": True, "latencyMs": 1.5},
          "smtp": {"listening": True, "port": 2525}, "journal": {"pending": False}}
    bad = {"status": "degraded", "version": "0.1.0",
           "database": {"ok": False, "error": "TimeoutError"},
           "smtp": {"listening": False, "port": 0}, "journal": {"pending": True}}
    _check(spec, "Health", ok)
    _check(spec, "Health", bad)
    _check(spec, "MessageCount", {"count": 0, "inbox": "bob@example.com"})
    _check(spec, "DeletedMessage", {"_id": "abc-0", "inbox": "bob@example.com",
                                    "message": "Message was deleted."})


T0 = datetime(2026, 1, 2, 3, 4, 5, 678000, UTC)


def _address(**overrides: Any) -> AddressRecord:
    fields: dict[str, Any] = dict(
        id="bob@example.com", account_id="acct", forward=None, enablews=False, webhook=None,
        webhook_slack=None, webhook_slack_to_from=False, catch_all=None, info=None,
        created_at=T0, updated_at=T0, webhook_secret=None,
    )
    return AddressRecord(**(fields | overrides))


def test_address_json_conforms(spec: dict[str, Any]) -> None:
    full = _address(id="*@example.com", forward="x@example.org", enablews=True,
                    webhook="https://hook.example/x", webhook_slack="https://hooks.slack.com/a",
                    webhook_slack_to_from=True, catch_all="example.com", info="note",
                    webhook_secret="s3cret")
    views = [
        AddressView("bob@example.com", _address(), "inbox-ab12@example.com"),
        AddressView("*@example.com", full, "inbox-cd34@example.com"),
        AddressView("eve@example.net", None, "inbox-ef56@example.net"),  # public
        AddressView("joe@own.test", None, "inbox-0@own.test", implicit_owner="acct"),
        AddressView("gone@example.com", None, None),
    ]
    for view in views:
        _check(spec, "Address", address_json(view))
    _same_keys(spec, "Address", address_json(views[0]))


def test_domain_and_admin_payloads_conform(spec: dict[str, Any]) -> None:
    domain = domain_json(DomainRecord("own.test", "acct", False, T0, T0))
    _check(spec, "Domain", domain)
    _same_keys(spec, "Domain", domain)
    for revoked, user_id, admin in ((None, None, False), (T0, 7, True)):
        key = key_json(ApiKey(3, "ci", "k_ab12", T0, revoked, "acct", user_id, admin))
        _check(spec, "ApiKey", key)
        _check(spec, "CreatedApiKey", key | {"key": "k_ab12secret"})
        _same_keys(spec, "ApiKey", key)
    for email in (None, "ops@example.com"):
        account = account_json(Account("acct", email, 1000, 5, T0))
        _check(spec, "Account", account)
        _same_keys(spec, "Account", account)
        user = user_json(User(1, "acct", "alice", email, T0))
        _check(spec, "User", user)
        _same_keys(spec, "User", user)


def test_validation_payloads_conform(spec: dict[str, Any]) -> None:
    owners = {"own.test": "acct"}
    context = cast(ApiContext, SimpleNamespace(
        addresses=SimpleNamespace(domain_owner=owners.get), accepted_domains=()))
    invalid = validate_address(context, "not an address")
    assert set(invalid) == {"email", "validFormat"}
    _check(spec, "Validation", invalid)
    for email in ("Bob+x@Own.test", "alice@example.org"):
        _check(spec, "Validation", validate_address(context, email))
    validator = _validator(spec, "Validation")
    assert not validator.is_valid({"email": "x", "validFormat": False, "local": "x"})
    assert not validator.is_valid({"email": "x@y.z", "validFormat": True})


def test_request_bodies(spec: dict[str, Any]) -> None:
    ok: dict[str, list[Any]] = {
        "AddressSettings": [{}, {"forward": "", "webhook": None, "enablews": True,
                                 "webhookSlack": "HTTPS://hooks.slack.com/x", "info": "n",
                                 "_mailsacKey": "k"}],
        "BulkAddresses": [{"addresses": ["a@example.com"]}],
        "ValidationRequest": [{"emails": []}],
        "NewAccount": [{"id": "acme", "email": None, "messageLimit": 0}],
        "NewApiKey": [{"name": "ci", "admin": True, "username": None}],
        "NewDomain": [{"domain": "own.test", "account": "acme", "catchAll": True}],
    }
    bad: dict[str, list[Any]] = {
        "AddressSettings": [{"webhook": "ftp://example.com"}, {"enablews": None},
                            {"info": "x" * 2001}],
        "BulkAddresses": [{"addresses": []}, {"addresses": ["a@b.c"] * 101}, {}],
        "ValidationRequest": [{"emails": ["a"] * 51}, {"emails": "a@b.c"}],
        "NewAccount": [{"id": "Bad Name!"}, {"id": "acme", "messageLimit": -1}],
        "NewApiKey": [{"name": ""}, {"name": "ci", "admin": "yes"}],
        "NewDomain": [{"domain": "own.test"}, {"domain": "own.test", "account": "a",
                                               "catchAll": 1}],
    }
    for name, instances in ok.items():
        for instance in instances:
            _check(spec, name, instance)
    for name, instances in bad.items():
        for instance in instances:
            assert not _validator(spec, name).is_valid(instance), (name, instance)
