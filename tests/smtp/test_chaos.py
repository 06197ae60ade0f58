"""SMTP failure injection ("chaos") seen from a real SMTP client (smtplib) against the real
server: configured codes at each stage, delays, dropped connections, times, probability,
expiry, and isolation between accounts. Global rules change every connection of a server,
so they are tested only on a private server with a private database."""

from __future__ import annotations

import shutil
import smtplib
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import (
    ServerHandle,
    client,
    database_of_its_own,
    make_message,
    metric,
    new_account,
    start_server,
    stop_server,
    unique_inbox,
)


@dataclass(frozen=True)
class Tenant:
    account: str
    key: str


def _tenant(server: ServerHandle) -> Tenant:
    account, key = new_account(server, "chaos")
    return Tenant(account, key)


def _reserve(server: ServerHandle, tenant: Tenant) -> str:
    inbox = unique_inbox()
    with client(server, tenant.key) as api:
        reserved = api.post(f"/api/addresses/{inbox}")
        assert reserved.status_code == 200, reserved.text
    return inbox


def _rule(server: ServerHandle, key: str, path: str, **body: Any) -> dict[str, Any]:
    with client(server, key) as api:
        created = api.post(path, json=body)
        assert created.status_code == 201, created.text
        rule: dict[str, Any] = created.json()
        return rule


def _address_rule(server: ServerHandle, tenant: Tenant, inbox: str, **body: Any
                  ) -> dict[str, Any]:
    return _rule(server, tenant.key, f"/api/addresses/{inbox}/chaos", **body)


def _count(server: ServerHandle, inbox: str, key: str | None = None) -> int:
    with client(server, key or server.key) as api:
        found = api.get(f"/api/addresses/{inbox}/message-count")
        assert found.status_code == 200, found.text
        return int(found.json()["count"])


def _rcpt(server: ServerHandle, inbox: str) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=60) as smtp:
        smtp.ehlo("client.test")
        assert smtp.mail("sender@example.org")[0] == 250
        return smtp.rcpt(inbox)


def _injected(server: ServerHandle, scope: str, stage: str, action: str) -> float:
    return metric(server, "mailsac_chaos_injected_total",
                  f'{{action="{action}",scope="{scope}",stage="{stage}"}}')


@pytest.fixture()
def tenant(server: ServerHandle) -> Tenant:
    return _tenant(server)


def test_rcpt_reply_refuses_only_that_recipient(server: ServerHandle, tenant: Tenant) -> None:
    mine, public = _reserve(server, tenant), unique_inbox()
    _address_rule(server, tenant, mine, stage="rcpt", code=550,
                  message="5.1.1 Chaos says no such user")
    before = _injected(server, "address", "rcpt", "reply")
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=60) as smtp:
        refused = smtp.sendmail("sender@example.org", [mine, public], make_message(public))
    assert refused == {mine: (550, b"5.1.1 Chaos says no such user")}
    assert _count(server, public) == 1  # the other recipient's copy was stored
    assert _count(server, mine, tenant.key) == 0
    after = _injected(server, "address", "rcpt", "reply")
    assert after == before + 1
    with client(server, tenant.key) as api:
        events = api.get(f"/api/addresses/{mine}/chaos/events").json()
        (rule,) = api.get(f"/api/addresses/{mine}/chaos").json()
    assert [(e["stage"], e["action"], e["reply"], e["from"]) for e in events] == [
        ("rcpt", "reply", "550 5.1.1 Chaos says no such user", "sender@example.org")]
    assert events[0]["rule"] == rule["_id"] and rule["fired"] == 1


def test_reply_text_gets_an_enhanced_code(server: ServerHandle, tenant: Tenant) -> None:
    mine = _reserve(server, tenant)
    rule = _address_rule(server, tenant, mine, stage="rcpt", code=452)
    code, text = _rcpt(server, mine)
    assert code == 452
    assert text.decode() == f"4.0.0 Failure injected by chaos rule {rule['_id']}"


def test_data_reply_is_not_stored(server: ServerHandle, tenant: Tenant) -> None:
    mine = _reserve(server, tenant)
    _address_rule(server, tenant, mine, stage="data", code=451,
                  message="4.3.0 Try again later (chaos)")
    with pytest.raises(smtplib.SMTPDataError) as refused:
        with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=60) as smtp:
            smtp.sendmail("sender@example.org", [mine], make_message(mine))
    assert (refused.value.smtp_code, refused.value.smtp_error) == (
        451, b"4.3.0 Try again later (chaos)")
    assert _count(server, mine, tenant.key) == 0


def test_data_rule_needs_every_recipient(server: ServerHandle, tenant: Tenant) -> None:
    """A data rule on one address never refuses a message that also goes to someone else:
    it is stored for everyone and the rule does not fire."""
    mine, public = _reserve(server, tenant), unique_inbox()
    _address_rule(server, tenant, mine, stage="data", code=554)
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=60) as smtp:
        assert smtp.sendmail("sender@example.org", [mine, public], make_message(public)) == {}
    assert _count(server, mine, tenant.key) == 1 and _count(server, public) == 1
    with client(server, tenant.key) as api:
        (rule,) = api.get(f"/api/addresses/{mine}/chaos").json()
    assert rule["fired"] == 0


def test_data_421_closes_the_connection(server: ServerHandle, tenant: Tenant) -> None:
    mine = _reserve(server, tenant)
    _address_rule(server, tenant, mine, stage="data", code=421, times=1)
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=60) as smtp:
        smtp.ehlo("client.test")
        smtp.mail("sender@example.org")
        smtp.rcpt(mine)
        assert smtp.data(make_message(mine))[0] == 421
        with pytest.raises(smtplib.SMTPServerDisconnected):
            smtp.noop()
    assert _count(server, mine, tenant.key) == 0


def test_drop_at_data_disconnects_and_stores_nothing(server: ServerHandle,
                                                     tenant: Tenant) -> None:
    mine = _reserve(server, tenant)
    _address_rule(server, tenant, mine, stage="data", action="drop")
    with pytest.raises(smtplib.SMTPServerDisconnected):
        with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=60) as smtp:
            smtp.sendmail("sender@example.org", [mine], make_message(mine))
    assert _count(server, mine, tenant.key) == 0
    assert _injected(server, "address", "data", "drop") >= 1


def test_delay_at_rcpt_then_normal_reply(server: ServerHandle, tenant: Tenant) -> None:
    mine, other = _reserve(server, tenant), unique_inbox()
    _address_rule(server, tenant, mine, stage="rcpt", action="delay", delaySeconds=1.5)
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=60) as smtp:
        smtp.ehlo("client.test")
        smtp.mail("sender@example.org")
        started = time.monotonic()
        assert smtp.rcpt(other)[0] == 250
        normal = time.monotonic() - started
        started = time.monotonic()
        assert smtp.rcpt(mine)[0] == 250  # delayed, then the normal reply
        delayed = time.monotonic() - started
    assert delayed >= 1.5  # an injected delay lasts at least its time (sleep_at_least)
    assert delayed > normal


def test_times_then_normal(server: ServerHandle, tenant: Tenant) -> None:
    mine = _reserve(server, tenant)
    _address_rule(server, tenant, mine, stage="rcpt", code=450, times=2)
    codes = [_rcpt(server, mine)[0] for _ in range(4)]
    assert codes == [450, 450, 250, 250]
    with client(server, tenant.key) as api:
        (rule,) = api.get(f"/api/addresses/{mine}/chaos").json()
    assert (rule["timesLeft"], rule["fired"]) == (0, 2)


def test_probability_zero_and_one(server: ServerHandle, tenant: Tenant) -> None:
    never, always = _reserve(server, tenant), _reserve(server, tenant)
    _address_rule(server, tenant, never, stage="rcpt", code=550, probability=0)
    _address_rule(server, tenant, always, stage="rcpt", code=551, probability=1)
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=60) as smtp:
        smtp.ehlo("client.test")
        smtp.mail("sender@example.org")
        for _ in range(10):
            assert smtp.rcpt(never)[0] == 250
            assert smtp.rcpt(always)[0] == 551


def test_rule_expires(server: ServerHandle, tenant: Tenant) -> None:
    mine = _reserve(server, tenant)
    rule = _address_rule(server, tenant, mine, stage="rcpt", code=550, expiresInSeconds=2)
    created = time.monotonic()
    assert _rcpt(server, mine)[0] == 550 or time.monotonic() - created >= 2
    time.sleep(max(0.0, created + 2.5 - time.monotonic()))
    assert _rcpt(server, mine)[0] == 250
    with client(server, tenant.key) as api:  # an expired rule is no longer listed
        assert rule["_id"] not in [r["_id"] for r in api.get(
            f"/api/addresses/{mine}/chaos").json()]


def test_domain_rule(server: ServerHandle, tenant: Tenant) -> None:
    domain = f"chaos-{uuid.uuid4().hex[:8]}.test"
    with client(server, server.key) as admin:
        added = admin.post("/api/admin/domains", json={"domain": domain,
                                                        "account": tenant.account})
        assert added.status_code == 200, added.text
    _rule(server, tenant.key, f"/api/domains/{domain}/chaos", stage="rcpt", code=553,
          message="5.1.3 Chaos domain")
    assert _rcpt(server, f"anyone@{domain}") == (553, b"5.1.3 Chaos domain")
    assert _rcpt(server, f"else+tag@{domain}")[0] == 553
    assert _rcpt(server, unique_inbox())[0] == 250  # other domains are untouched
    with client(server, tenant.key) as api:  # recorded for the (domain-owned) address
        events = api.get(f"/api/addresses/anyone@{domain}/chaos/events").json()
    assert [e["scope"] for e in events] == ["domain"]


def test_isolation_between_accounts(server: ServerHandle) -> None:
    """A rule on one account's address never affects another account's address, a public
    inbox, or the address once it is released."""
    first, second = _tenant(server), _tenant(server)
    mine, theirs, public = _reserve(server, first), _reserve(server, second), unique_inbox()
    _address_rule(server, first, mine, stage="rcpt", code=550)
    _address_rule(server, first, mine, stage="data", code=554)
    assert _rcpt(server, mine)[0] == 550
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=60) as smtp:
        assert smtp.sendmail("sender@example.org", [theirs, public],
                             make_message(theirs)) == {}
    assert _count(server, theirs, second.key) == 1 and _count(server, public) == 1
    with client(server, second.key) as api:  # nor can the other account see or change it
        assert api.get(f"/api/addresses/{mine}/chaos").status_code == 403
        assert api.get(f"/api/addresses/{mine}/chaos/events").status_code == 403
        assert api.get(f"/api/addresses/{theirs}/chaos/events").json() == []
    with client(server, first.key) as api:
        assert api.delete(f"/api/addresses/{mine}").status_code == 200
    # Released: the rules stay (until they expire) but no longer fire.
    deadline = time.monotonic() + 30
    while _rcpt(server, mine)[0] != 250:
        assert time.monotonic() < deadline, "a rule fired on a released address"
        time.sleep(0.1)


# -- global rules: a private server on a private database ----------------------------------


@pytest.fixture(scope="module")
def lonely_db(database_url: str) -> str:
    return database_of_its_own(database_url, "mailsac_chaos")


def _node(url: str) -> Iterator[ServerHandle]:
    data_dir = Path(tempfile.mkdtemp(prefix="mailsac-test-chaos-"))
    handle = start_server(data_dir, {"DATABASE_URL": url})
    yield handle
    assert stop_server(handle) == 0, handle.log()
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def lonely(lonely_db: str) -> Iterator[ServerHandle]:
    yield from _node(lonely_db)


@pytest.fixture()
def global_rule(lonely: ServerHandle) -> Iterator[Any]:
    """Create global rules on the private server; delete them after the test."""
    made: list[str] = []

    def create(**body: Any) -> dict[str, Any]:
        rule = _rule(lonely, lonely.key, "/api/admin/chaos", **body)
        made.append(rule["_id"])
        return rule

    yield create
    with client(lonely, lonely.key) as admin:
        for rule_id in made:
            admin.delete(f"/api/admin/chaos/{rule_id}")


def test_global_connect_reply(lonely: ServerHandle, global_rule: Any) -> None:
    global_rule(stage="connect", code=554, message="5.7.1 Chaos: go away", times=1)
    with pytest.raises(smtplib.SMTPConnectError) as refused:
        smtplib.SMTP("127.0.0.1", lonely.smtp_port, timeout=60)
    assert (refused.value.smtp_code, refused.value.smtp_error) == (
        554, b"5.7.1 Chaos: go away")
    with smtplib.SMTP("127.0.0.1", lonely.smtp_port, timeout=60) as smtp:  # times=1: over
        assert smtp.noop()[0] == 250
    assert _injected(lonely, "global", "connect", "reply") == 1


def test_global_connect_drop_and_delay(lonely: ServerHandle, global_rule: Any) -> None:
    global_rule(stage="connect", action="drop", times=1)
    with pytest.raises(smtplib.SMTPServerDisconnected):
        smtplib.SMTP("127.0.0.1", lonely.smtp_port, timeout=60)
    global_rule(stage="connect", action="delay", delaySeconds=1.0, times=1)
    started = time.monotonic()
    with smtplib.SMTP("127.0.0.1", lonely.smtp_port, timeout=60) as smtp:
        waited = time.monotonic() - started
        assert smtp.noop()[0] == 250
    assert waited >= 0.95


def test_global_mail_and_rcpt(lonely: ServerHandle, global_rule: Any) -> None:
    global_rule(stage="mail", code=451, message="4.7.1 Chaos greylisting", times=1)
    global_rule(stage="rcpt", code=421, times=1)
    with smtplib.SMTP("127.0.0.1", lonely.smtp_port, timeout=60) as smtp:
        smtp.ehlo("client.test")
        assert smtp.mail("a@example.org") == (451, b"4.7.1 Chaos greylisting")
        assert smtp.mail("a@example.org")[0] == 250
        assert smtp.rcpt(unique_inbox())[0] == 421  # closes the connection
        with pytest.raises(smtplib.SMTPServerDisconnected):
            smtp.noop()
    inbox = unique_inbox()
    with smtplib.SMTP("127.0.0.1", lonely.smtp_port, timeout=60) as smtp:
        assert smtp.sendmail("a@example.org", [inbox], make_message(inbox)) == {}


def test_global_rules_only_for_the_operator(lonely: ServerHandle) -> None:
    account, key = new_account(lonely, "notop")
    body = {"stage": "connect", "code": 421}
    with client(lonely, key) as api:
        assert api.post("/api/admin/chaos", json=body).status_code == 403
        assert api.get("/api/admin/chaos").status_code == 403
    with client(lonely, lonely.key) as admin:  # an admin key of another account: still not
        made = admin.post(f"/api/admin/accounts/{account}/keys",
                          json={"name": "adm", "admin": True})
        assert made.status_code == 200, made.text
    with client(lonely, made.json()["key"]) as api:
        refused = api.post("/api/admin/chaos", json=body)
        assert refused.status_code == 403
        assert set(refused.json()) == {"message", "error"}
    with client(lonely, None) as anon:
        assert anon.post("/api/admin/chaos", json=body).status_code == 401
    with client(lonely, lonely.key) as admin:
        assert admin.get("/api/admin/chaos").json() == []
    with smtplib.SMTP("127.0.0.1", lonely.smtp_port, timeout=60) as smtp:
        assert smtp.noop()[0] == 250


def test_two_nodes_share_rules_and_times(lonely: ServerHandle, lonely_db: str) -> None:
    """A rule created through one node applies on another node of the same database, and
    `times` counts firings across both: exactly N in all."""
    tenant = _tenant(lonely)
    mine = _reserve(lonely, tenant)
    nodes = _node(lonely_db)
    other = next(nodes)
    try:
        _address_rule(lonely, tenant, mine, stage="rcpt", code=451, times=3)
        codes = []
        deadline = time.monotonic() + 30
        while not codes or codes[-1] != 451:  # until the other node has loaded it
            assert time.monotonic() < deadline, "the other node never applied the rule"
            codes.append(_rcpt(other, mine)[0])
        for i in range(8):
            codes.append(_rcpt(lonely if i % 2 else other, mine)[0])
        assert codes.count(451) == 3 and set(codes) == {250, 451}, codes
        with client(other, tenant.key) as api:
            (rule,) = api.get(f"/api/addresses/{mine}/chaos").json()
            events = api.get(f"/api/addresses/{mine}/chaos/events").json()
        assert (rule["timesLeft"], rule["fired"]) == (0, 3)
        deadline = time.monotonic() + 30  # each node writes its events within a second
        while len(events) < 3:
            assert time.monotonic() < deadline, events
            time.sleep(0.2)
            with client(other, tenant.key) as api:
                events = api.get(f"/api/addresses/{mine}/chaos/events").json()
        assert len(events) == 3
    finally:
        next(nodes, None)
