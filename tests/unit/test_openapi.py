"""The OpenAPI document covers every route, resolves, is valid and matches real payloads."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from mailsac.api.app import ROUTES
from mailsac.api.errors import error_response
from mailsac.api.openapi import _SPEC, build_spec
from mailsac.api.schemas import message_json
from mailsac.mime import headers_json, headers_ordered, parse_message
from mailsac.storage import MessageRecord

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
        (route.path, method.lower())
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


def _check(spec: dict[str, Any], schema_name: str, instance: Any) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": spec["components"]}
    jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    ).validate(json.loads(json.dumps(instance)))


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
        saved_by=None, spam=None,
    )
    return MessageRecord(**(fields | overrides))


def test_message_json_conforms(spec: dict[str, Any]) -> None:
    _check(spec, "Message", message_json(_record()))
    _check(spec, "Message", message_json(_record(
        attachments=["d41d8cd98f00b204e9800998ecf8427e"], saved_by="acct", spam=0.25,
        links=["https://example.net"], labels=["x"], read=True, rtls=True)))
    keys = set(message_json(_record()))
    assert keys == set(spec["components"]["schemas"]["Message"]["properties"])


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
          "smtp": {"listening": True, "port": 2525}}
    bad = {"status": "degraded", "version": "0.1.0",
           "database": {"ok": False, "error": "TimeoutError"},
           "smtp": {"listening": False, "port": 0}}
    _check(spec, "Health", ok)
    _check(spec, "Health", bad)
    _check(spec, "MessageCount", {"count": 0, "inbox": "bob@example.com"})
    _check(spec, "DeletedMessage", {"_id": "abc-0", "inbox": "bob@example.com",
                                    "message": "Message was deleted."})
