"""Message flags, account-wide views, /me, validations and the admin API."""

from __future__ import annotations

import uuid

import pytest

from tests.helpers import ServerHandle, client, deliver, new_account, unique_inbox


def test_labels_folder_read_flags(server: ServerHandle) -> None:
    _, key = new_account(server)
    inbox = unique_inbox()
    deliver(server, inbox)
    with client(server, key) as api:
        mid = api.get(f"/api/addresses/{inbox}/messages").json()[0]["_id"]
        base = f"/api/addresses/{inbox}/messages/{mid}"
        assert api.put(f"{base}/labels/urgent").json() == {"_id": mid, "labels": ["urgent"]}
        assert api.put(f"{base}/labels/urgent").json()["labels"] == ["urgent"]  # idempotent
        assert api.put(f"{base}/labels/a%20b").json()["labels"] == ["urgent", "a b"]
        assert api.delete(f"{base}/labels/urgent").json()["labels"] == ["a b"]
        assert api.put(f"{base}/folder/spam").json() == {"_id": mid, "folder": "spam"}
        bad = api.put(f"{base}/folder/nowhere")
        assert bad.status_code == 400 and "folder must be one of" in bad.json()["message"]
        assert api.put(f"{base}/read/true").json() == {"_id": mid, "read": True}
        assert api.put(f"{base}/read/maybe").status_code == 400
        message = api.get(base).json()
        assert message["labels"] == ["a b"] and message["folder"] == "spam"
        assert message["read"] is True
        assert api.put(f"/api/addresses/{inbox}/messages/nope-0/star").status_code == 404


def test_account_inbox_paging_unread_and_search(server: ServerHandle) -> None:
    _, key = new_account(server)
    address = unique_inbox()
    marker = uuid.uuid4().hex[:10]
    with client(server, key) as api:
        assert api.post(f"/api/addresses/{address}").status_code == 200
        for n in range(3):
            deliver(server, address, subject=f"{marker} report {n}")
        page = api.get("/api/inbox", params={"limit": 2}).json()
        assert page["limit"] == 2 and page["skip"] == 0 and page["unread"] == 3
        assert [m["subject"] for m in page["messages"]] == [f"{marker} report 2",
                                                           f"{marker} report 1"]
        rest = api.get("/api/inbox", params={"limit": 2, "skip": 2}).json()["messages"]
        assert [m["subject"] for m in rest] == [f"{marker} report 0"]
        api.put(f"/api/addresses/{address}/messages/{rest[0]['_id']}/read/true")
        assert api.get("/api/inbox").json()["unread"] == 2
        filtered = api.get("/api/inbox-filter", params={"andSubjectIncludes": "REPORT 1",
                                                        "andTo": address}).json()
        assert [m["subject"] for m in filtered["messages"]] == [f"{marker} report 1"]
        assert api.get("/api/inbox-filter").status_code == 400
        by_sender = api.get("/api/inbox-filter", params={"andFrom": "alice@example.org"}).json()
        assert len(by_sender["messages"]) == 3
        search = api.get("/api/inbox-search", params={"query": marker}).json()
        assert search["query"] == marker and len(search["messages"]) == 3
        wildcard = api.get("/api/inbox-search", params={"query": "%"}).json()
        assert wildcard["messages"] == []  # LIKE wildcards are matched literally


def test_starred_listing_and_stats(server: ServerHandle) -> None:
    account, key = new_account(server)
    public = unique_inbox()
    deliver(server, public, subject="star me")
    with client(server, key) as api:
        mid = api.get(f"/api/addresses/{public}/messages").json()[0]["_id"]
        api.put(f"/api/addresses/{public}/messages/{mid}/star")
        starred = api.get("/api/addresses/starred/messages").json()
        assert [m["_id"] for m in starred] == [mid]
        stats = api.get("/api/me/stats").json()
        assert stats["starredMessages"] == 1 and stats["storedMessages"] == 1
        assert stats["inboxBytes"] > 0 and stats["addresses"] == [] and stats["domains"] == []
        me = api.get("/api/me").json()
        assert me["_id"] == account and me["apiKeyName"] == "test"
        assert me["messageLimit"] == 10000 and me["isAdmin"] is False


@pytest.mark.parametrize(
    ("email", "valid"),
    [("Jeff+1@Example.test", True), ("not-an-address", False), ("a@b", False)],
)
def test_validations(server: ServerHandle, email: str, valid: bool) -> None:
    with client(server, server.key) as api:
        one = api.get(f"/api/validations/addresses/{email}").json()
        assert one["email"] == email and one["validFormat"] is valid
        if valid:
            assert one["local"] == "jeff+1" and one["domain"] == "example.test"
            assert one["isDisposable"] is False and one["aliases"] == []
        many = api.post("/api/validations/addresses", json={"emails": [email, email]})
        assert many.status_code == 200 and many.json() == [one, one]
    with client(server, server.key) as api:
        too_many = api.post("/api/validations/addresses", json={"emails": ["a@b.c"] * 51})
    assert too_many.status_code == 400


def test_admin_api_needs_an_admin_key(server: ServerHandle) -> None:
    _, key = new_account(server)
    with client(server, key) as api:
        denied = api.post("/api/admin/accounts", json={"id": "nope"})
        assert denied.status_code == 403 and denied.json()["error"] == "Forbidden"
        assert api.get("/api/admin/accounts").status_code == 403
    with client(server, None) as anon:
        assert anon.get("/api/admin/accounts").status_code == 401


def test_admin_accounts_users_keys(server: ServerHandle) -> None:
    account = f"team-{uuid.uuid4().hex[:8]}"
    with client(server, server.key) as admin:
        created = admin.post("/api/admin/accounts",
                             json={"id": account, "email": "ops@team.test", "messageLimit": 50})
        assert created.status_code == 200 and created.json()["messageLimit"] == 50
        assert admin.post("/api/admin/accounts", json={"id": account}).status_code == 400
        assert admin.post("/api/admin/accounts", json={"id": "Bad Name!"}).status_code == 400
        assert account in [a["_id"] for a in admin.get("/api/admin/accounts").json()]
        for username in ("ann", "bob"):
            user = admin.post(f"/api/admin/accounts/{account}/users",
                              json={"username": f"{username}-{account}"})
            assert user.status_code == 200
        assert len(admin.get(f"/api/admin/accounts/{account}/users").json()) == 2
        keys = [admin.post(f"/api/admin/accounts/{account}/keys",
                           json={"name": name, "username": f"ann-{account}"}).json()
                for name in ("ci", "laptop")]
        assert all(k["key"].startswith("k_") for k in keys)
        listed = admin.get(f"/api/admin/accounts/{account}/keys").json()
        assert [k["name"] for k in listed] == ["ci", "laptop"]
        assert all("key" not in k for k in listed)  # plain keys are never shown again
        assert admin.post("/api/admin/accounts/missing/keys", json={"name": "x"}).status_code \
            == 404
    with client(server, keys[0]["key"]) as ci:
        assert ci.get("/api/me").json()["_id"] == account
    with client(server, server.key) as admin:
        assert admin.delete(f"/api/admin/keys/{keys[0]['id']}").status_code == 204
        assert admin.delete(f"/api/admin/keys/{keys[0]['id']}").status_code == 404
    with client(server, keys[0]["key"]) as ci:
        assert ci.get("/api/me").status_code == 401  # revocation is immediate
    with client(server, keys[1]["key"]) as laptop:
        assert laptop.get("/api/me").status_code == 200
