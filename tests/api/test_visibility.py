"""The visibility matrix: public / reserved / custom-domain mail × own key / other account's
key / no key, for every read, flag, delete and body endpoint, against the real server."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest

from tests.helpers import ServerHandle, client, deliver, new_account, unique_inbox


@dataclass(frozen=True)
class World:
    owner_key: str
    other_key: str
    inboxes: dict[str, str]  # kind -> inbox
    ids: dict[str, str]  # kind -> message id


@pytest.fixture(scope="module")
def world(server: ServerHandle) -> World:
    _, owner_key = new_account(server, "owner")
    _, other_key = new_account(server, "other")
    domain = f"acme-{uuid.uuid4().hex[:8]}.test"
    with client(server, owner_key) as api:
        me = api.get("/api/me").json()["_id"]
    with client(server, server.key) as admin:
        added = admin.post("/api/admin/domains", json={"domain": domain, "account": me})
        assert added.status_code == 200, added.text
    inboxes = {
        "public": unique_inbox(),
        "reserved": unique_inbox(),
        "domain": f"user@{domain}",
    }
    with client(server, owner_key) as api:
        reserved = api.post(f"/api/addresses/{inboxes['reserved']}")
        assert reserved.status_code == 200, reserved.text
    ids = {}
    for kind, inbox in inboxes.items():
        deliver(server, inbox, subject=f"{kind} mail")
        with client(server, owner_key) as api:
            (message,) = api.get(f"/api/addresses/{inbox}/messages").json()
            ids[kind] = message["_id"]
    return World(owner_key, other_key, inboxes, ids)


READS = [
    ("GET", "/api/addresses/{inbox}/messages", "inbox"),
    ("GET", "/api/addresses/{inbox}/message-count", "inbox"),
    ("GET", "/api/addresses/{inbox}/messages/{id}", "message"),
    ("GET", "/api/addresses/{inbox}/messages/{id}/headers", "message"),
    ("GET", "/api/addresses/{inbox}/messages/{id}/attachments", "message"),
    ("GET", "/api/raw/{inbox}/{id}", "message"),
    ("GET", "/api/dirty/{inbox}/{id}", "message"),
    ("GET", "/api/body/{inbox}/{id}", "message"),
    ("GET", "/api/text/{inbox}/{id}", "message"),
    ("PUT", "/api/addresses/{inbox}/messages/{id}/labels/seen", "message"),
    ("PUT", "/api/addresses/{inbox}/messages/{id}/folder/inbox", "message"),
    ("PUT", "/api/addresses/{inbox}/messages/{id}/read/true", "message"),
]


def expected(kind: str, caller: str, level: str) -> int:
    if caller == "none":
        return 401
    if kind == "public" or caller == "owner":
        return 200
    return 403 if level == "inbox" else 401


@pytest.mark.parametrize(("method", "path", "level"), READS)
@pytest.mark.parametrize("kind", ["public", "reserved", "domain"])
@pytest.mark.parametrize("caller", ["owner", "other", "none"])
def test_matrix(server: ServerHandle, world: World, method: str, path: str, level: str,
                kind: str, caller: str) -> None:
    key = {"owner": world.owner_key, "other": world.other_key, "none": None}[caller]
    url = path.format(inbox=world.inboxes[kind], id=world.ids[kind])
    with client(server, key) as api:
        response = api.request(method, url)
    assert response.status_code == expected(kind, caller, level), response.text
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"message", "error"}
    elif url.endswith("/messages"):
        assert [m["_id"] for m in response.json()] == [world.ids[kind]]


@pytest.mark.parametrize("kind", ["public", "reserved", "domain"])
@pytest.mark.parametrize("caller", ["owner", "other", "none"])
def test_delete_matrix(server: ServerHandle, world: World, kind: str, caller: str) -> None:
    inbox = world.inboxes[kind]
    deliver(server, inbox, subject="to delete")
    with client(server, world.owner_key) as owner:
        target = owner.get(f"/api/addresses/{inbox}/messages").json()[0]
    assert target["subject"] == "to delete"
    key = {"owner": world.owner_key, "other": world.other_key, "none": None}[caller]
    with client(server, key) as api:
        one = api.delete(f"/api/addresses/{inbox}/messages/{target['_id']}")
    assert one.status_code == expected(kind, caller, "message")
    with client(server, world.owner_key) as owner:
        still = owner.get(f"/api/addresses/{inbox}/messages/{target['_id']}").status_code
        assert still == (404 if one.status_code == 200 else 200)
        if still == 200:
            owner.delete(f"/api/addresses/{inbox}/messages/{target['_id']}")
    deliver(server, inbox, subject="survives a refused purge")
    with client(server, key) as api:
        purge = api.delete(f"/api/addresses/{inbox}/messages")
    refused = expected(kind, caller, "inbox") != 200
    assert purge.status_code == (expected(kind, caller, "inbox") if refused else 204)
    with client(server, world.owner_key) as owner:
        left = owner.get(f"/api/addresses/{inbox}/message-count").json()["count"]
    assert (left >= 1) if refused else (left == 0)
    if kind != "public":  # restore the fixture message the matrix reads
        deliver(server, inbox, subject=f"{kind} mail")


def test_unknown_message_in_foreign_inbox_is_also_401(server: ServerHandle,
                                                      world: World) -> None:
    # Same answer whether the id exists or not: nothing leaks about private messages.
    with client(server, world.other_key) as api:
        real = api.get(f"/api/raw/{world.inboxes['reserved']}/{world.ids['reserved']}")
        fake = api.get(f"/api/raw/{world.inboxes['reserved']}/doesnotexist-0")
    assert real.status_code == fake.status_code == 401
    assert real.json() == fake.json()


def test_starring_public_mail_hides_it_from_others(server: ServerHandle, world: World) -> None:
    inbox = unique_inbox()
    deliver(server, inbox, subject="mine now")
    with client(server, world.owner_key) as owner:
        message = owner.get(f"/api/addresses/{inbox}/messages").json()[0]
        starred = owner.put(f"/api/addresses/{inbox}/messages/{message['_id']}/star")
        assert starred.status_code == 200 and starred.json()["savedBy"] is not None
    with client(server, world.other_key) as other:
        assert other.get(f"/api/addresses/{inbox}/messages").json() == []
        hidden = other.get(f"/api/addresses/{inbox}/messages/{message['_id']}")
        assert hidden.status_code == 404
        assert other.delete(f"/api/addresses/{inbox}/messages").status_code == 204
    with client(server, world.owner_key) as owner:
        assert owner.get(f"/api/addresses/{inbox}/message-count").json()["count"] == 1
        # Purging keeps starred mail even for its owner.
        assert owner.delete(f"/api/addresses/{inbox}/messages").status_code == 204
        assert owner.get(f"/api/addresses/{inbox}/message-count").json()["count"] == 1
        unstarred = owner.put(f"/api/addresses/{inbox}/messages/{message['_id']}/star")
        assert unstarred.json()["savedBy"] is None
    with client(server, world.other_key) as other:
        assert len(other.get(f"/api/addresses/{inbox}/messages").json()) == 1


def test_account_wide_views_never_include_other_accounts_mail(
    server: ServerHandle, world: World
) -> None:
    marker = uuid.uuid4().hex[:12]
    foreign = set()
    for kind in ("reserved", "domain"):
        deliver(server, world.inboxes[kind], subject=f"private {marker}")
        with client(server, world.owner_key) as owner:
            listed = owner.get(f"/api/addresses/{world.inboxes[kind]}/messages").json()
        foreign.add(listed[0]["_id"])
    with client(server, world.other_key) as other:
        page = other.get("/api/inbox").json()
        search = other.get("/api/inbox-search", params={"query": marker}).json()
        filtered = other.get("/api/inbox-filter", params={"andSubjectIncludes": marker}).json()
    for listing in (page["messages"], search["messages"], filtered["messages"]):
        assert not foreign & {m["_id"] for m in listing}
    with client(server, world.owner_key) as owner:
        mine = {m["_id"] for m in owner.get("/api/inbox").json()["messages"]}
        found = owner.get("/api/inbox-search", params={"query": marker}).json()["messages"]
    assert foreign <= mine
    assert {m["_id"] for m in found} == foreign
