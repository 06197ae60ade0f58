"""Waits that match (issue 19): criteria, count, account- and domain-wide waits, isolation,
parameter errors and many concurrent waiters — real SMTP in, real HTTP long polls out."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import pytest

from tests.helpers import (
    ServerHandle,
    client,
    deliver,
    hub_subscribed,
    make_message,
    new_account,
    send_raw,
    unique_inbox,
)

WAIT = "/api/addresses/{}/messages/wait"


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _later(delay: float, *actions: Callable[[], object]) -> threading.Thread:
    """Run ``actions`` in order after ``delay`` seconds (while a wait is being held)."""
    def run() -> None:
        time.sleep(delay)
        for action in actions:
            action()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _error(response: httpx.Response, status: int, text: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"message", "error"}
    assert text in body["message"], body


@dataclass
class Tenant:
    """An account with two private addresses and a custom domain."""

    account: str
    key: str
    first: str
    second: str
    domain: str


def _tenant(server: ServerHandle) -> Tenant:
    account, key = new_account(server, "waits")
    domain = f"w-{uuid.uuid4().hex[:8]}.test"
    with client(server, server.key) as admin:
        added = admin.post("/api/admin/domains", json={"domain": domain, "account": account})
        assert added.status_code == 200, added.text
    first, second = unique_inbox(), unique_inbox()
    with client(server, key) as api:
        for address in (first, second):
            assert api.post(f"/api/addresses/{address}").status_code == 200
    return Tenant(account, key, first, second, domain)


@pytest.fixture()
def tenant(server: ServerHandle) -> Tenant:
    return _tenant(server)


# -- criteria ------------------------------------------------------------------------------

def test_each_criterion_picks_its_message(server: ServerHandle, api: httpx.Client) -> None:
    inbox = unique_inbox()
    since = _now()
    deliver(server, inbox, subject="Weekly digest", body="nothing to see",
            sender="News <news@letters.test>")
    deliver(server, inbox, subject="Your sign-in code", body="Use 482913 to sign in",
            sender="Shop Security <security@shop.test>")
    deliver(server, inbox, subject="Receipt", body="thanks",
            html="<p>Order <b>ORD-77</b> confirmed</p>", sender="Billing <bill@shop.test>")

    def wait(**params: str) -> httpx.Response:
        return api.get(WAIT.format(inbox), params={"since": since, "timeout": 5, **params})

    assert wait(subject="SIGN-IN").json()["subject"] == "Your sign-in code"
    assert wait(**{"from": "shop security"}).json()["subject"] == "Your sign-in code"
    assert wait(**{"from": "bill@"}).json()["subject"] == "Receipt"
    assert wait(contains="use 482913").json()["subject"] == "Your sign-in code"
    assert wait(contains="<b>ord-77</b>").json()["subject"] == "Receipt"  # HTML as sent
    assert wait(contains="weekly DIGEST").json()["subject"] == "Weekly digest"  # subject
    assert wait(to=inbox.split("@")[0]).json()["subject"] == "Weekly digest"  # oldest
    # All criteria together must hold at once.
    both = wait(subject="receipt", contains="482913", timeout="0")
    assert both.status_code == 204 and both.headers["X-Mailsac-Matched"] == "0"
    assert wait(subject="code", contains="482913", **{"from": "shop.test"}).status_code == 200
    # ``since`` excludes what came before it.
    later = api.get(WAIT.format(inbox), params={"since": _now(), "timeout": 0})
    assert later.status_code == 204


def test_contains_waits_for_a_body_that_arrives(server: ServerHandle,
                                                api: httpx.Client) -> None:
    inbox = unique_inbox()
    token = uuid.uuid4().hex[:10]
    since = _now()  # the wait may reach the server after the mail on a slow machine
    sender = _later(0.5,
                    lambda: deliver(server, inbox, subject="Confirm", body="no token here"),
                    lambda: deliver(server, inbox, subject="Confirm", body="x",
                                    html=f"<a href='https://app.test/c?t={token}'>Go</a>"))
    got = api.get(WAIT.format(inbox), params={"contains": f"t={token.upper()}",
                                               "timeout": 30, "since": since})
    sender.join()
    assert got.status_code == 200, got.text
    assert api.get(f"/api/dirty/{inbox}/{got.json()['_id']}").text.count(token) == 1


def test_to_matches_a_recipient_header_too(server: ServerHandle, api: httpx.Client) -> None:
    inbox = unique_inbox()
    since = _now()
    raw = make_message("Team <team-list@corp.test>", subject="to the list")
    assert send_raw(server, raw, [inbox]) == {}
    deliver(server, inbox, subject="direct")
    got = api.get(WAIT.format(inbox), params={"since": since, "timeout": 5, "to": "TEAM-list",
                                              "count": 1})
    assert [m["subject"] for m in got.json()["messages"]] == ["to the list"]


# -- count ---------------------------------------------------------------------------------

def test_count_gathers_stored_and_arriving_messages_oldest_first(
        server: ServerHandle, api: httpx.Client) -> None:
    inbox = unique_inbox()
    since = _now()
    deliver(server, inbox, subject="match 1")
    deliver(server, inbox, subject="other")
    deliver(server, inbox, subject="match 2")
    sender = _later(0.5, lambda: deliver(server, inbox, subject="other again"),
                    lambda: deliver(server, inbox, subject="match 3"),
                    lambda: deliver(server, inbox, subject="match 4"))
    got = api.get(WAIT.format(inbox), params={"since": since, "subject": "match",
                                              "count": 3, "timeout": 30})
    sender.join()
    assert got.status_code == 200, got.text
    assert [m["subject"] for m in got.json()["messages"]] == ["match 1", "match 2", "match 3"]
    # Fewer than asked for: 204 says how many did match.
    short = api.get(WAIT.format(inbox), params={"since": since, "subject": "match",
                                                "count": 10, "timeout": 0.5})
    assert short.status_code == 204 and short.content == b""
    assert short.headers["X-Mailsac-Matched"] == "4"
    assert "X-Mailsac-Waited-Until" in short.headers
    # Without count the answer is one message object, as before.
    one = api.get(WAIT.format(inbox), params={"since": since, "subject": "match"}).json()
    assert one["subject"] == "match 1" and "messages" not in one


# -- account-wide and domain-wide ------------------------------------------------------------

def test_account_wide_wait_spans_addresses_and_domains(server: ServerHandle,
                                                       tenant: Tenant) -> None:
    since = _now()
    deliver(server, tenant.first, subject="acct to first")
    deliver(server, unique_inbox(), subject="acct public, not mine")
    stranger = _tenant(server)
    deliver(server, stranger.first, subject="acct the other tenant's")
    with client(server, tenant.key) as api:
        sender = _later(0.5, lambda: deliver(server, f"x@{stranger.domain}",
                                             subject="acct other domain"),
                        lambda: deliver(server, tenant.second, subject="acct to second"),
                        lambda: deliver(server, f"sales@{tenant.domain}",
                                        subject="acct to domain"))
        got = api.get("/api/messages/wait", params={"since": since, "subject": "acct",
                                                    "count": 3, "timeout": 30})
        sender.join()
        assert got.status_code == 200, got.text
        messages = got.json()["messages"]
        assert [m["subject"] for m in messages] == ["acct to first", "acct to second",
                                                    "acct to domain"]
        assert [m["inbox"] for m in messages] == [tenant.first, tenant.second,
                                                  f"sales@{tenant.domain}"]
        # ``to`` narrows an account-wide wait to one of its addresses.
        second = api.get("/api/messages/wait", params={"since": since, "to": tenant.second,
                                                       "timeout": 5})
        assert second.json()["subject"] == "acct to second"
        # Four more never come: the others' mail does not count.
        more = api.get("/api/messages/wait", params={"since": since, "count": 4,
                                                     "timeout": 0.5})
        assert more.status_code == 204 and more.headers["X-Mailsac-Matched"] == "3"


def test_domain_wide_wait_sees_only_that_domain(server: ServerHandle, tenant: Tenant) -> None:
    since = _now()
    path = f"/api/domains/{tenant.domain}/messages/wait"
    with client(server, tenant.key) as api:
        sender = _later(0.5, lambda: deliver(server, tenant.first, subject="private address"),
                        lambda: deliver(server, f"a@{tenant.domain}", subject="dom one"),
                        lambda: deliver(server, f"b@{tenant.domain}", subject="dom two"))
        got = api.get(path, params={"since": since, "count": 2, "timeout": 30})
        sender.join()
        assert got.status_code == 200, got.text
        assert [m["subject"] for m in got.json()["messages"]] == ["dom one", "dom two"]
        one = api.get(path.replace(tenant.domain, tenant.domain.upper()),
                      params={"since": since, "contains": "TWO"})
        assert one.json()["subject"] == "dom two"
        _error(api.get("/api/domains/example.test/messages/wait", params={"timeout": 0}),
               403, "not owned by your account")
    stranger = _tenant(server)
    with client(server, stranger.key) as other:
        _error(other.get(path, params={"timeout": 0}), 403, "not owned by your account")


def test_waits_never_see_another_accounts_mail(server: ServerHandle, tenant: Tenant) -> None:
    stranger = _tenant(server)
    since = _now()
    deliver(server, tenant.first, subject="secret for tenant")
    deliver(server, f"ceo@{tenant.domain}", subject="secret for tenant")
    with client(server, stranger.key) as other:
        for path in ("/api/messages/wait", f"/api/domains/{stranger.domain}/messages/wait"):
            got = other.get(path, params={"since": since, "subject": "secret", "timeout": 1})
            assert got.status_code == 204 and got.headers["X-Mailsac-Matched"] == "0"
        _error(other.get(WAIT.format(tenant.first), params={"since": since, "timeout": 0}),
               403, "private to another account")
    with client(server, tenant.key) as mine:
        got = mine.get("/api/messages/wait", params={"since": since, "subject": "secret",
                                                     "count": 2, "timeout": 5})
        assert len(got.json()["messages"]) == 2


# -- parameters ------------------------------------------------------------------------------

@pytest.mark.parametrize(("params", "text"), [
    ({"count": "0"}, "count must be"), ({"count": "101"}, "count must be"),
    ({"count": "two"}, "count must be"), ({"count": ""}, "count must be"),
    ({"timeout": "-1"}, "timeout must be"), ({"timeout": "nan"}, "timeout must be"),
    ({"timeout": "301"}, "timeout must be"), ({"timeout": "soon"}, "timeout must be"),
    ({"since": "yesterday"}, "since must be"), ({"contains": "x" * 257}, "contains is limited"),
    ({"subject": "s" * 300}, "subject is limited"), ({"to": "t" * 300}, "to is limited"),
])
def test_bad_parameters_answer_400(api: httpx.Client, params: dict[str, str],
                                   text: str) -> None:
    for path in (WAIT.format(unique_inbox()), "/api/messages/wait"):
        _error(api.get(path, params=params), 400, text)


def test_a_wait_needs_a_key(anon: httpx.Client) -> None:
    for path in (WAIT.format(unique_inbox()), "/api/messages/wait",
                 "/api/domains/example.test/messages/wait"):
        assert anon.get(path, params={"timeout": 0}).status_code == 401


# -- many waiters ----------------------------------------------------------------------------

def test_two_hundred_concurrent_matching_waiters_are_all_answered(
        server: ServerHandle, tenant: Tenant) -> None:
    token = uuid.uuid4().hex[:12]
    since = _now()

    async def scenario() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=250, max_keepalive_connections=250)
        async with httpx.AsyncClient(base_url=server.http_url, limits=limits, timeout=90,
                                     headers={"Mailsac-Key": tenant.key}) as http:
            # `since` from before any request: a wait reaching the server after the mail
            # (1,000 connections opening on a slow machine) must still see it.
            params = {"contains": token, "timeout": 60, "since": since}
            waits = [http.get(WAIT.format(tenant.first), params=params) for _ in range(80)]
            waits += [http.get("/api/messages/wait", params=params | {"count": 2})
                      for _ in range(60)]
            waits += [http.get(f"/api/domains/{tenant.domain}/messages/wait", params=params)
                      for _ in range(40)]
            waits += [http.get(WAIT.format(tenant.second), params={"timeout": 2})
                      for _ in range(20)]  # these match nothing and time out
            tasks = [asyncio.create_task(w) for w in waits]
            await hub_subscribed(server, len(waits), within=1.5)  # the last 20 last 2 s
            assert (await http.get("/healthz")).status_code == 200
            await asyncio.to_thread(deliver, server, tenant.first, subject="t",
                                    body=f"your token: {token}")
            await asyncio.to_thread(deliver, server, f"z@{tenant.domain}", subject="t",
                                    html=f"<p>{token}</p>")
            return list(await asyncio.gather(*tasks))

    responses = asyncio.run(scenario())
    codes = [r.status_code for r in responses]
    assert codes == [200] * 180 + [204] * 20
    assert {r.json()["inbox"] for r in responses[:80]} == {tenant.first}
    assert {tuple(m["inbox"] for m in r.json()["messages"]) for r in responses[80:140]} \
        == {(tenant.first, f"z@{tenant.domain}")}
    assert {r.json()["inbox"] for r in responses[140:180]} == {f"z@{tenant.domain}"}
