"""The chaos rule API against the real server: create, list, delete; validation (400 with
Mailsac's JSON error body); who may touch which rules (401/403). Global rules are only
read or refused here (creating one would change every test's SMTP on this server: see
tests/smtp/test_chaos.py for those, on a private server)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from mailsac.chaos.rules import MAX_RULES_PER_TARGET
from tests.helpers import ServerHandle, client, new_account, unique_inbox


def _reserved(server: ServerHandle) -> tuple[str, str, str]:
    """(account, key, a reserved address of it)."""
    account, key = new_account(server, "chaosapi")
    inbox = unique_inbox()
    with client(server, key) as api:
        assert api.post(f"/api/addresses/{inbox}").status_code == 200
    return account, key, inbox


def _error(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"message", "error"} and body["message"], body
    return str(body["message"])


def test_create_list_delete(server: ServerHandle) -> None:
    _, key, inbox = _reserved(server)
    path = f"/api/addresses/{inbox}/chaos"
    with client(server, key) as api:
        assert api.get(path).json() == []
        created = api.post(path, json={"stage": "rcpt", "action": "reply", "code": 451,
                                       "message": "4.7.1 Slow down", "probability": 0.5,
                                       "times": 3, "expiresInSeconds": 600})
        assert created.status_code == 201, created.text
        rule = created.json()
        assert set(rule) == {"_id", "scope", "target", "stage", "action", "code", "message",
                             "delaySeconds", "probability", "timesLeft", "expires", "created",
                             "fired"}
        assert (rule["scope"], rule["target"], rule["stage"], rule["action"], rule["code"],
                rule["message"], rule["delaySeconds"], rule["probability"],
                rule["timesLeft"], rule["fired"]) == (
            "address", inbox, "rcpt", "reply", 451, "4.7.1 Slow down", None, 0.5, 3, 0)
        assert rule["expires"] > rule["created"]
        delay = api.post(path, json={"stage": "data", "action": "delay", "delaySeconds": 2.5})
        assert delay.status_code == 201, delay.text
        assert (delay.json()["delaySeconds"], delay.json()["code"],
                delay.json()["timesLeft"]) == (2.5, None, None)
        listed = api.get(path).json()
        assert [r["_id"] for r in listed] == [rule["_id"], delay.json()["_id"]]
        assert api.delete(f"{path}/{rule['_id']}").status_code == 204
        _error(api.delete(f"{path}/{rule['_id']}"), 404)
        assert [r["_id"] for r in api.get(path).json()] == [delay.json()["_id"]]


def test_domain_rules(server: ServerHandle) -> None:
    account, key = new_account(server, "chaosdom")
    domain = f"chaosapi-{uuid.uuid4().hex[:8]}.test"
    with client(server, server.key) as admin:
        assert admin.post("/api/admin/domains", json={
            "domain": domain, "account": account}).status_code == 200
    with client(server, key) as api:
        made = api.post(f"/api/domains/{domain}/chaos", json={"stage": "data", "code": 554})
        assert made.status_code == 201, made.text
        assert (made.json()["scope"], made.json()["target"]) == ("domain", domain)
        assert [r["_id"] for r in api.get(f"/api/domains/{domain.upper()}/chaos").json()] == [
            made.json()["_id"]]
        # the domain's addresses are the account's: address rules and events work too
        assert api.get(f"/api/addresses/x@{domain}/chaos/events").json() == []
        assert api.delete(f"/api/domains/{domain}/chaos/{made.json()['_id']}"
                          ).status_code == 204
    _, other = new_account(server, "chaosdom2")
    with client(server, other) as api:
        _error(api.get(f"/api/domains/{domain}/chaos"), 403)
        _error(api.post(f"/api/domains/{domain}/chaos", json={"stage": "data", "code": 554}),
               403)
        _error(api.post(f"/api/domains/{uuid.uuid4().hex[:8]}.test/chaos",
                        json={"stage": "data", "code": 554}), 403)


INVALID = [
    ({}, "stage"),
    ({"stage": "helo", "code": 451}, "stage"),
    ({"stage": "rcpt", "action": "explode"}, "action"),
    ({"stage": "rcpt"}, "code"),
    ({"stage": "rcpt", "code": 250}, "code"),
    ({"stage": "rcpt", "code": 599}, "code"),
    ({"stage": "rcpt", "code": "451"}, "code"),
    ({"stage": "rcpt", "code": True}, "code"),
    ({"stage": "connect", "code": 421}, "rcpt or data"),
    ({"stage": "mail", "code": 451}, "rcpt or data"),
    ({"stage": "rcpt", "action": "drop"}, "drop"),
    ({"stage": "rcpt", "code": 421}, "421"),
    ({"stage": "rcpt", "code": 451, "message": "caf\u00e9"}, "message"),
    ({"stage": "rcpt", "code": 451, "message": "a\r\nb"}, "message"),
    ({"stage": "rcpt", "code": 451, "message": "x" * 201}, "message"),
    ({"stage": "rcpt", "code": 451, "message": "  "}, "message"),
    ({"stage": "rcpt", "action": "delay"}, "delaySeconds"),
    ({"stage": "rcpt", "action": "delay", "delaySeconds": 0}, "delaySeconds"),
    ({"stage": "rcpt", "action": "delay", "delaySeconds": 61}, "delaySeconds"),
    ({"stage": "rcpt", "action": "delay", "delaySeconds": 1, "code": 451}, "code"),
    ({"stage": "rcpt", "code": 451, "delaySeconds": 1}, "delaySeconds"),
    ({"stage": "rcpt", "code": 451, "probability": 1.5}, "probability"),
    ({"stage": "rcpt", "code": 451, "probability": -0.1}, "probability"),
    ({"stage": "rcpt", "code": 451, "probability": "half"}, "probability"),
    ({"stage": "rcpt", "code": 451, "times": 0}, "times"),
    ({"stage": "rcpt", "code": 451, "times": 1.5}, "times"),
    ({"stage": "rcpt", "code": 451, "expiresInSeconds": 0}, "expiresInSeconds"),
    ({"stage": "rcpt", "code": 451, "expiresInSeconds": 8 * 24 * 3600}, "expiresInSeconds"),
    ({"stage": "rcpt", "code": 451, "color": "red"}, "unknown"),
]


@pytest.mark.parametrize(("body", "named"), INVALID)
def test_validation(server: ServerHandle, body: dict[str, Any], named: str) -> None:
    _, key, inbox = _reserved(server)
    with client(server, key) as api:
        assert named in _error(api.post(f"/api/addresses/{inbox}/chaos", json=body), 400)
        assert api.get(f"/api/addresses/{inbox}/chaos").json() == []
        _error(api.post(f"/api/addresses/{inbox}/chaos", content=b"[1]",
                        headers={"content-type": "application/json"}), 400)


def test_connect_needs_421_or_554_even_for_the_operator(server: ServerHandle) -> None:
    with client(server, server.key) as admin:  # refused: nothing is created
        assert "421 or 554" in _error(admin.post("/api/admin/chaos", json={
            "stage": "connect", "code": 450}), 400)


def test_rules_per_target_are_bounded(server: ServerHandle) -> None:
    _, key, inbox = _reserved(server)
    path = f"/api/addresses/{inbox}/chaos"
    with client(server, key) as api:
        for _ in range(MAX_RULES_PER_TARGET):
            assert api.post(path, json={"stage": "rcpt", "code": 450,
                                        "probability": 0}).status_code == 201
        assert "at most" in _error(api.post(path, json={"stage": "rcpt", "code": 450}), 400)
        assert len(api.get(path).json()) == MAX_RULES_PER_TARGET


def test_who_may(server: ServerHandle) -> None:
    _, key, inbox = _reserved(server)
    _, other = new_account(server, "chaosother")
    with client(server, key) as api:
        rule = api.post(f"/api/addresses/{inbox}/chaos",
                        json={"stage": "rcpt", "code": 450}).json()
    path = f"/api/addresses/{inbox}/chaos"
    with client(server, None) as anon:
        _error(anon.get(path), 401)
        _error(anon.post(path, json={"stage": "rcpt", "code": 450}), 401)
        _error(anon.get(path + "/events"), 401)
        _error(anon.get("/api/admin/chaos"), 401)
    with client(server, "k_not_a_real_key_000000000000") as bad:
        _error(bad.get(path), 401)
    with client(server, other) as api:
        _error(api.get(path), 403)
        _error(api.post(path, json={"stage": "rcpt", "code": 450}), 403)
        _error(api.delete(f"{path}/{rule['_id']}"), 403)
        _error(api.get(path + "/events"), 403)
        _error(api.get("/api/admin/chaos"), 403)
        _error(api.post("/api/admin/chaos", json={"stage": "rcpt", "code": 450}), 403)
        # a public inbox has no owner: nobody sets rules on it
        _error(api.post(f"/api/addresses/{unique_inbox()}/chaos",
                        json={"stage": "rcpt", "code": 450}), 403)
    with client(server, server.key) as admin:
        # the operator manages global rules, not other accounts' address rules
        _error(admin.get(path), 403)
        _error(admin.delete(f"/api/admin/chaos/{rule['_id']}"), 404)  # not a global rule
        assert isinstance(admin.get("/api/admin/chaos").json(), list)
    with client(server, key) as api:
        assert [r["_id"] for r in api.get(path).json()] == [rule["_id"]]
        _error(api.get("/api/addresses/not an address/chaos"), 400)
