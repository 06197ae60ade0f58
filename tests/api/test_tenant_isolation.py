"""Tenant isolation and per-account quotas (issue 14, findings 9, 11, 13 and 18), against
the real server: one account must never reach, take or delete another account's data, and
every per-account store has a limit that answers a clear error."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import (
    Receiver,
    ServerHandle,
    client,
    database_of_its_own,
    deliver,
    new_account,
    start_server,
    stop_server,
    unique_inbox,
)


def _sql(database_url: str, query: str, **params: Any) -> Any:
    """One scalar from the test database (the server's own PostgreSQL)."""
    from sqlalchemy import text

    from mailsac.storage.db import create_engine

    async def run() -> Any:
        engine = create_engine(database_url, pool_size=1)
        try:
            async with engine.connect() as conn:
                return (await conn.execute(text(query), params)).scalar()
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _wait_until(check: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def _error(response: httpx.Response, status: int, text: str) -> None:
    """A clear JSON error: the status, and a message that says what happened."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"message", "error"}
    assert text in body["message"], body


def _ids(api: httpx.Client, inbox: str) -> list[str]:
    listed = api.get(f"/api/addresses/{inbox}/messages")
    assert listed.status_code == 200, listed.text
    return [m["_id"] for m in listed.json()]


# -- finding 9: star theft ---------------------------------------------------------------


def test_reserving_never_takes_another_accounts_starred_mail(server: ServerHandle) -> None:
    _, a_key = new_account(server, "holder")
    _, b_key = new_account(server, "starrer")
    address = unique_inbox()
    deliver(server, address, subject="starred by B")
    deliver(server, address, subject="plain public")
    with client(server, a_key) as a, client(server, b_key) as b:
        by_subject = {m["subject"]: m["_id"]
                      for m in b.get(f"/api/addresses/{address}/messages").json()}
        starred, plain = by_subject["starred by B"], by_subject["plain public"]
        assert b.put(f"/api/addresses/{address}/messages/{starred}/star").json()["_id"]
        assert a.post(f"/api/addresses/{address}").status_code == 200
        # B still has it: by id, its body, and in its starred list; A neither lists nor opens it.
        assert b.get(f"/api/addresses/{address}/messages/{starred}").status_code == 200
        assert "Hi there" in b.get(f"/api/text/{address}/{starred}").text
        assert [m["_id"] for m in b.get("/api/addresses/starred/messages").json()] == [starred]
        assert _ids(a, address) == [plain]
        assert a.get(f"/api/addresses/{address}/messages/{starred}").status_code == 404
        assert a.get(f"/api/raw/{address}/{starred}").status_code == 404
        # B is still shut out of the rest of the now-private inbox.
        assert b.get(f"/api/addresses/{address}/messages/{plain}").status_code == 401
        assert b.get(f"/api/addresses/{address}/messages").status_code == 403
        # A's purge and release with deleteAddressMessages leave B's starred mail alone.
        released = a.delete(f"/api/addresses/{address}", params={"deleteAddressMessages": "true"})
        assert released.status_code == 200, released.text
        kept = b.get(f"/api/addresses/{address}/messages/{starred}")
        assert kept.status_code == 200 and kept.json()["subject"] == "starred by B"
        assert b.get(f"/api/addresses/{address}/messages/{plain}").status_code == 404


def test_unstarring_hands_the_message_to_the_inbox_holder(server: ServerHandle) -> None:
    _, a_key = new_account(server, "holder")
    _, b_key = new_account(server, "starrer")
    address = unique_inbox()
    deliver(server, address, subject="given back")
    with client(server, a_key) as a, client(server, b_key) as b:
        (message,) = _ids(b, address)
        b.put(f"/api/addresses/{address}/messages/{message}/star")
        assert a.post(f"/api/addresses/{address}").status_code == 200
        assert _ids(a, address) == []
        unstarred = b.put(f"/api/addresses/{address}/messages/{message}/star")
        assert unstarred.status_code == 200 and unstarred.json()["savedBy"] is None
        # Now the holder's private mail, not a public message inside a private inbox.
        assert _ids(a, address) == [message]
        assert b.get(f"/api/addresses/{address}/messages/{message}").status_code == 401


# -- finding 11: webhook history -----------------------------------------------------------


def test_webhook_history_belongs_to_its_account_and_hides_secrets(server: ServerHandle) -> None:
    receiver = Receiver()
    _, a_key = new_account(server, "hooker")
    _, b_key = new_account(server, "next")
    address = unique_inbox()
    port = receiver.url.rsplit(":", 1)[1]
    hook = f"http://user:PASSWORDX@127.0.0.1:{port}/hook?token=HOOKSECRET#frag"
    slack = f"{receiver.url}/services/T000/B000/SLACKSECRET"
    secrets = ("PASSWORDX", "HOOKSECRET", "SLACKSECRET", "B000")
    try:
        with client(server, a_key) as a, client(server, b_key) as b:
            assert a.post(f"/api/addresses/{address}",
                          json={"webhook": hook, "webhookSlack": slack}).status_code == 200
            deliver(server, address, subject="for A only")
            assert len(receiver.wait_for(2)) >= 2
            history = a.get(f"/api/addresses/{address}/webhook-deliveries")
            assert history.status_code == 200
            assert sorted(d["kind"] for d in history.json()) == ["slack", "webhook"]
            urls = {d["kind"]: d["url"] for d in history.json()}
            assert urls["webhook"] == f"http://127.0.0.1:{port}/hook"
            assert urls["slack"].startswith(f"{receiver.url}/") and "services" not in urls["slack"]
            assert not any(s in history.text for s in secrets)
            assert a.delete(f"/api/addresses/{address}").status_code == 200
            assert b.post(f"/api/addresses/{address}").status_code == 200
            seen = b.get(f"/api/addresses/{address}/webhook-deliveries")
            assert seen.status_code == 200 and seen.json() == []
            # B's own address view shows B's settings, none of A's.
            assert not any(s in b.get(f"/api/addresses/{address}").text for s in secrets)
            # A no longer holds it: its old history is not reachable through the address.
            assert a.get(f"/api/addresses/{address}/webhook-deliveries").status_code == 401
    finally:
        receiver.close()


def test_pending_webhooks_stop_when_the_address_changes_hands(server: ServerHandle,
                                                              database_url: str) -> None:
    """A's retrying delivery is never sent after A released the address: not to A's URL,
    and never signed with the secret of B, who reserved it next."""
    failing = Receiver(fail_first=1_000_000)  # A's receiver: always 500, so it retries
    _, a_key = new_account(server, "releaser")
    _, b_key = new_account(server, "newholder")
    address = unique_inbox()
    try:
        with client(server, a_key) as a, client(server, b_key) as b:
            assert a.post(f"/api/addresses/{address}",
                          json={"webhook": failing.url + "/a"}).status_code == 200
            deliver(server, address, subject="retried")
            assert len(failing.wait_for(2)) >= 2  # retrying
            message_id = _ids(a, address)[0]
            assert a.delete(f"/api/addresses/{address}").status_code == 200
            assert b.post(f"/api/addresses/{address}",
                          json={"webhook": failing.url + "/b"}).status_code == 200

            def status() -> tuple[str, str] | None:
                row = _sql(database_url, "SELECT status || '|' || coalesce(last_error, '') "
                                         "FROM webhook_deliveries WHERE message_id = :id",
                           id=message_id)
                return tuple(row.split("|")) if row else None  # type: ignore[return-value]

            assert _wait_until(lambda: status() == ("failed", "address released")), status()
            sent = len(failing.requests)
            time.sleep(1.5)  # several retry periods (base 0.2 s): nothing more goes out
            assert len(failing.requests) == sent
            assert not any(path == "/b" for path, _, _ in failing.requests)
    finally:
        failing.close()


def _payload_present(database_url: str, message_id: str) -> bool | None:
    return _sql(database_url, "SELECT bool_and(payload IS NOT NULL) FROM webhook_deliveries "
                              "WHERE message_id = :id", id=message_id)  # type: ignore[no-any-return]


def test_webhook_payload_is_dropped_with_its_message(server: ServerHandle,
                                                     database_url: str) -> None:
    receiver = Receiver()
    _, key = new_account(server, "payloads")
    address = unique_inbox()
    try:
        with client(server, key) as api:
            assert api.post(f"/api/addresses/{address}",
                            json={"webhook": receiver.url + "/hook"}).status_code == 200
            for n in range(3):
                deliver(server, address, subject=f"m{n}")
            receiver.wait_for(3)
            ids = _ids(api, address)
            assert len(ids) == 3 and all(_payload_present(database_url, i) for i in ids)
            # API delete, purge and release with deleteAddressMessages each drop payloads.
            assert api.delete(f"/api/addresses/{address}/messages/{ids[0]}").status_code == 200
            assert _payload_present(database_url, ids[0]) is False
            assert _payload_present(database_url, ids[1]) is True
            api.put(f"/api/addresses/{address}/messages/{ids[2]}/star")
            assert api.delete(f"/api/addresses/{address}/messages").status_code == 204
            assert _payload_present(database_url, ids[1]) is False
            assert _payload_present(database_url, ids[2]) is True  # starred: kept
            assert api.delete(f"/api/addresses/{address}",
                              params={"deleteAddressMessages": "true"}).status_code == 200
            assert _payload_present(database_url, ids[2]) is False
    finally:
        receiver.close()


# -- finding 13: admin scope -------------------------------------------------------------


def test_account_admin_manages_only_its_own_account(server: ServerHandle) -> None:
    x_account = f"tenant-{uuid.uuid4().hex[:8]}"
    y_account, y_key = new_account(server, "victim")
    with client(server, server.key) as operator:
        assert operator.post("/api/admin/accounts", json={"id": x_account}).status_code == 200
        x_admin = operator.post(f"/api/admin/accounts/{x_account}/keys",
                                json={"name": "x-admin", "admin": True}).json()["key"]
        y_key_id = operator.get(f"/api/admin/accounts/{y_account}/keys").json()[0]["id"]
    with client(server, x_admin) as x:
        for method, path, body in [
            ("POST", f"/api/admin/accounts/{y_account}/keys", {"name": "stolen"}),
            ("POST", f"/api/admin/accounts/{y_account}/users", {"username": "mallory"}),
            ("GET", f"/api/admin/accounts/{y_account}/keys", None),
            ("GET", f"/api/admin/accounts/{y_account}/users", None),
        ]:
            _error(x.request(method, path, json=body), 403, "may manage only that account")
        _error(x.post("/api/admin/accounts", json={"id": f"new-{uuid.uuid4().hex[:8]}"}),
               403, "Only an operator key")
        _error(x.post("/api/admin/domains", json={"domain": "taken.test",
                                                  "account": x_account}), 403, "operator")
        _error(x.get("/api/admin/deny-list"), 403, "Only an operator key")
        _error(x.post("/api/admin/deny-list", json={"value": "198.51.100.7"}), 403, "operator")
        _error(x.delete("/api/admin/deny-list/198.51.100.7"), 403, "operator")
        _error(x.get("/api/admin/top-offenders"), 403, "operator")
        assert x.delete(f"/api/admin/keys/{y_key_id}").status_code == 404
        assert [a["_id"] for a in x.get("/api/admin/accounts").json()] == [x_account]
        # Its own account: allowed.
        own = x.post(f"/api/admin/accounts/{x_account}/keys", json={"name": "ci"})
        assert own.status_code == 200, own.text
        assert x.post(f"/api/admin/accounts/{x_account}/users",
                      json={"username": f"u{uuid.uuid4().hex[:8]}"}).status_code == 200
    with client(server, y_key) as y:
        assert y.get("/api/me").status_code == 200  # the revoke attempt did nothing
    with client(server, own.json()["key"]) as ci:
        assert ci.get("/api/me").json()["_id"] == x_account
    with client(server, server.key) as operator:  # the operator still manages everyone
        made = operator.post(f"/api/admin/accounts/{y_account}/keys", json={"name": "ops"})
        assert made.status_code == 200
        assert operator.get("/api/admin/deny-list").status_code == 200


# -- finding 18: quotas --------------------------------------------------------------------


def test_starring_stops_at_the_accounts_limit(server: ServerHandle) -> None:
    account = f"stars-{uuid.uuid4().hex[:8]}"
    with client(server, server.key) as operator:
        assert operator.post("/api/admin/accounts",
                             json={"id": account, "messageLimit": 2}).status_code == 200
        key = operator.post(f"/api/admin/accounts/{account}/keys",
                            json={"name": "k"}).json()["key"]
    inboxes = [unique_inbox() for _ in range(3)]  # public inboxes: their stars count too
    for inbox in inboxes:
        deliver(server, inbox)
    with client(server, key) as api:
        targets = [(inbox, _ids(api, inbox)[0]) for inbox in inboxes]
        for inbox, message in targets[:2]:
            assert api.put(f"/api/addresses/{inbox}/messages/{message}/star").status_code == 200
        inbox, message = targets[2]
        _error(api.put(f"/api/addresses/{inbox}/messages/{message}/star"), 403,
               "Starred message limit reached")
        assert api.get(f"/api/addresses/{inbox}/messages/{message}").json()["savedBy"] is None
        first_inbox, first = targets[0]
        api.put(f"/api/addresses/{first_inbox}/messages/{first}/star")  # unstar one
        assert api.put(f"/api/addresses/{inbox}/messages/{message}/star").status_code == 200


@pytest.fixture(scope="module")
def quota_db(database_url: str) -> str:
    """The quota server's own database: its payload expiry and the feedback table it
    counts are database-wide, so other servers of the session must not share them."""
    return database_of_its_own(database_url, "mailsac_quota")


@pytest.fixture(scope="module")
def quota_server(quota_db: str) -> Iterator[tuple[ServerHandle, int]]:
    """A server with small alias/feedback limits and a short payload retention; the
    global feedback cap leaves room for exactly four more rows."""
    existing = int(_sql(quota_db, "SELECT count(*) FROM spam_feedback"))
    data_dir = Path(tempfile.mkdtemp(prefix="mailsac-test-quota-"))
    handle = start_server(data_dir, {
        "DATABASE_URL": quota_db,
        "MAILSAC_MAX_ALIASES_PER_ACCOUNT": "3",
        "MAILSAC_SPAM_FEEDBACK_PER_ACCOUNT": "2",
        "MAILSAC_SPAM_FEEDBACK_MAX_ROWS": str(existing + 4),
        "MAILSAC_WEBHOOK_PAYLOAD_RETENTION_HOURS": "0.0015",  # 5.4 s: sent well before
        "MAILSAC_RETENTION_INTERVAL": "0.5",
    })
    try:
        yield handle, existing
    finally:
        code = stop_server(handle)
        shutil.rmtree(data_dir, ignore_errors=True)
        assert code == 0


def test_address_views_create_aliases_only_within_the_cap(
        quota_server: tuple[ServerHandle, int], quota_db: str) -> None:
    server, _ = quota_server
    account, key = new_account(server, "aliases")
    addresses = [unique_inbox() for _ in range(4)]

    def charged() -> int:
        return int(_sql(quota_db, "SELECT count(*) FROM inbox_aliases "
                                      "WHERE created_by = :a", a=account))

    with client(server, key) as api:
        views = [api.get(f"/api/addresses/{a}") for a in addresses[:3]]
        assert all(v.status_code == 200 and v.json()["encryptedInbox"] for v in views)
        assert charged() == 3
        again = api.get(f"/api/addresses/{addresses[0]}")  # existing alias: no new row
        assert again.json()["encryptedInbox"] == views[0].json()["encryptedInbox"]
        _error(api.get(f"/api/addresses/{addresses[3]}"), 403, "Alias limit reached")
        assert charged() == 3
        # Addresses the account reserves are bounded by its credits, not charged here.
        reserved = unique_inbox()
        assert api.post(f"/api/addresses/{reserved}").json()["encryptedInbox"]
        assert api.get(f"/api/addresses/{reserved}").status_code == 200
        assert charged() == 3


def test_spam_feedback_is_capped_per_account_and_in_total(
        quota_server: tuple[ServerHandle, int], quota_db: str) -> None:
    server, existing = quota_server
    _, first_key = new_account(server, "teacher")
    _, second_key = new_account(server, "teacher")
    inbox = unique_inbox()
    for n in range(6):
        deliver(server, inbox, subject=f"feedback {n}", body=f"body number {n} {uuid.uuid4()}")
    with client(server, first_key) as first, client(server, second_key) as second:
        ids = _ids(first, inbox)
        for message in ids[:2]:
            assert first.post(f"/api/messages/{message}/spam").status_code == 200
        _error(first.post(f"/api/messages/{ids[2]}/spam"), 403, "Spam feedback limit reached")
        assert first.get(f"/api/addresses/{inbox}/messages/{ids[2]}").json()["folder"] == "inbox"
        for message in ids[2:4]:  # the other class has its own budget
            assert first.post(f"/api/messages/{message}/ham").status_code == 200
        _error(second.post(f"/api/messages/{ids[4]}/spam"), 403, "storage is full")
    assert int(_sql(quota_db, "SELECT count(*) FROM spam_feedback")) == existing + 4


def test_webhook_payload_expires_after_the_retention_period(
        quota_server: tuple[ServerHandle, int], quota_db: str) -> None:
    server, _ = quota_server
    receiver = Receiver()
    _, key = new_account(server, "expiry")
    address = unique_inbox()
    try:
        with client(server, key) as api:
            assert api.post(f"/api/addresses/{address}",
                            json={"webhook": receiver.url + "/hook"}).status_code == 200
            deliver(server, address, subject="short-lived payload")
            assert len(receiver.wait_for(1)) == 1  # sent while the payload was kept
            (message,) = _ids(api, address)
            assert _wait_until(lambda: _payload_present(quota_db, message) is False), \
                server.log()[-3000:]
            # The message itself is untouched, and the history row is still shown.
            assert api.get(f"/api/addresses/{address}/messages/{message}").status_code == 200
            (row,) = api.get(f"/api/addresses/{address}/webhook-deliveries").json()
            assert row["status"] == "delivered"
    finally:
        receiver.close()
