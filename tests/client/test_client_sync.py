"""The sync client against the real session server: every Mailsac endpoint it wraps."""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from datetime import UTC, datetime
from email.message import EmailMessage

import httpx
import pytest

from mailsac.client import (
    Address,
    BadRequestError,
    Client,
    ConnectionFailed,
    ForbiddenError,
    Message,
    NotFoundError,
    UnauthorizedError,
    WaitTimeout,
)
from tests.client.conftest import Tenant
from tests.helpers import ServerHandle, deliver, new_account, send_raw, unique_inbox

PDF = b"%PDF-1.4 fake but fine\n" * 20


def _send_rich(server: ServerHandle, to: str) -> None:
    msg = EmailMessage()
    msg["From"] = "Shop <orders@shop.example>"
    msg["To"] = to
    msg["Subject"] = "Your receipt"
    msg["Message-ID"] = f"<{uuid.uuid4().hex}@shop.example>"
    msg.set_content("Thanks! See https://shop.example/orders/42")
    msg.add_alternative('<p>Thanks! <a href="https://shop.example/orders/42">order</a>'
                        '<script>alert(1)</script></p>', subtype="html")
    msg.add_attachment(PDF, maintype="application", subtype="pdf", filename="receipt.pdf")
    raw = msg.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    assert send_raw(server, raw, [to]) == {}


def test_inbox_list_get_count_delete_purge(server: ServerHandle, admin_client: Client) -> None:
    email = unique_inbox()
    inbox = admin_client.inbox(email)
    deliver(server, email, subject="first")
    deliver(server, email, subject="second", sender="Bob <bob@example.org>")
    listed = inbox.messages()
    assert [m.subject for m in listed] == ["second", "first"]  # newest first
    newest = listed[0]
    assert isinstance(newest, Message)
    assert newest.sender == "bob@example.org" and newest.from_[0].name == "Bob"
    assert [a.address for a in newest.to] == [email] and newest.inbox == email
    assert newest.received.tzinfo is not None and newest.received <= datetime.now(UTC)
    assert newest.json["_id"] == newest.id and newest.size > 0
    assert inbox.count() == 2
    assert inbox.get(newest.id).subject == "second"
    assert admin_client.message(email, newest.id).id == newest.id
    assert [m.subject for m in inbox.messages(limit=1)] == ["second"]
    assert [m.subject for m in inbox.messages(until=newest.received)] == ["first"]
    newest.delete()
    assert [m.subject for m in inbox.messages()] == ["first"]
    inbox.purge()
    assert inbox.count() == 0 and inbox.messages() == []


def test_bodies_headers_and_attachments(server: ServerHandle, admin_client: Client) -> None:
    email = unique_inbox()
    _send_rich(server, email)
    msg = admin_client.inbox(email).wait(subject="receipt", timeout=30)
    assert "https://shop.example/orders/42" in msg.text
    assert "<script>" in msg.html  # as sent
    assert "<script>" not in msg.sanitized_html() and "order" in msg.sanitized_html()
    assert msg.link_urls == ["https://shop.example/orders/42"]
    raw = msg.raw()
    assert raw.startswith(b"Received:") and b"Subject: Your receipt" in raw
    headers = msg.headers()
    assert headers["subject"] == ["Your receipt"] and len(headers["received"]) >= 1
    ordered = msg.headers_ordered()
    assert ("Subject", "Your receipt") in ordered
    md5 = hashlib.md5(PDF).hexdigest()
    assert msg.attachment_checksums == [md5]
    (attachment,) = msg.attachments()
    assert attachment.file_name == "receipt.pdf" and attachment.content_type == "application/pdf"
    assert attachment.checksum == md5 and attachment.length == len(PDF)
    assert msg.attachment(md5) == PDF
    assert msg.attachment("receipt.pdf") == PDF


def test_message_flags(server: ServerHandle, tenant: Tenant) -> None:
    email = unique_inbox()
    deliver(server, email, subject="flag me")
    msg = tenant.client.inbox(email).wait(timeout=30)
    starred = msg.toggle_star()
    assert starred.saved_by == tenant.account
    assert [m.id for m in tenant.client.starred()] == [msg.id]
    assert msg.add_label("important") == ["important"]
    assert msg.add_label("a/b c") == ["important", "a/b c"]
    assert msg.remove_label("important") == ["a/b c"]
    assert msg.move("trash") == "trash"
    assert msg.mark_read() is True and msg.mark_read(False) is False
    assert msg.toggle_star().saved_by is None


def test_addresses_and_account(server: ServerHandle, tenant: Tenant) -> None:
    client = tenant.client
    email = unique_inbox()
    inbox = client.inbox(email)
    assert inbox.availability() == {"available": True, "email": email, "owned": False}
    reserved = inbox.reserve(info="signup tests", enablews=True)
    assert isinstance(reserved, Address)
    assert reserved.email == email and reserved.owner == tenant.account
    assert reserved.info == "signup tests" and reserved.enablews is True
    assert reserved.encrypted_inbox and reserved.encrypted_inbox.startswith("inbox-")
    updated = inbox.update(webhook="http://127.0.0.1:9/hook", info="")
    assert updated.webhook == "http://127.0.0.1:9/hook"
    assert inbox.info().webhook == "http://127.0.0.1:9/hook"
    assert inbox.webhook_deliveries() == []
    others = [unique_inbox(), unique_inbox()]
    assert sorted(a.email for a in client.reserve_many(others)) == sorted(others)
    assert sorted(a.email for a in client.addresses()) == sorted([email, *others])
    deliver(server, email, subject="private mail")
    assert [m.subject for m in client.inbox(email).messages()] == ["private mail"]
    me = client.me()
    assert me.id == tenant.account and me.capture_private is False
    assert client.set_capture_private(True).capture_private is True
    stats = client.stats()
    assert sorted(stats.addresses) == sorted([email, *others])
    assert stats.stored_messages >= 1
    released = inbox.release(delete_messages=True)
    assert released.email == email
    assert email not in [a.email for a in client.addresses()]


def test_domains_and_account_wide_mail(server: ServerHandle, admin_client: Client,
                                       tenant: Tenant) -> None:
    domain = f"client-{uuid.uuid4().hex[:8]}.test"
    added = admin_client.add_domain(domain, tenant.account, catch_all=False)
    assert added.name == domain and added.owner == tenant.account
    client = tenant.client
    assert [d.name for d in client.domains()] == [domain]
    deliver(server, f"ann@{domain}", subject="Welcome Ann")
    deliver(server, f"bob@{domain}", subject="Welcome Bob", sender="Shop <shop@example.org>")
    handle = client.domain(domain)
    assert {m.subject for m in handle.messages()} == {"Welcome Ann", "Welcome Bob"}
    assert {m.subject for m in client.account_messages()} >= {"Welcome Ann", "Welcome Bob"}
    assert [m.subject for m in client.filter(subject="bob")] == ["Welcome Bob"]
    assert [m.subject for m in client.filter(from_="shop@example.org")] == ["Welcome Bob"]
    assert [m.subject for m in client.search("ann@" + domain)] == ["Welcome Ann"]
    handle.purge()
    assert handle.messages() == []


def test_validations_health_and_admin(server: ServerHandle, admin_client: Client) -> None:
    valid = admin_client.validate("someone@example.test")
    assert valid.valid_format is True and valid.domain == "example.test"
    assert valid.local == "someone"
    assert admin_client.validate("not an address").valid_format is False
    both = admin_client.validate_many(["a@example.test", "nope"])
    assert [v.valid_format for v in both] == [True, False]
    assert admin_client.health()["status"] in ("ok", "degraded")
    account = f"cli-{uuid.uuid4().hex[:8]}"
    created = admin_client.create_account(account, private_address_credits=3)
    assert created["_id"] == account
    key = admin_client.create_key(account, "ci")
    with Client(server.http_url, key=key) as theirs:
        assert theirs.me().id == account


def test_api_errors_become_typed_exceptions(server: ServerHandle, admin_client: Client,
                                            tenant: Tenant) -> None:
    email = unique_inbox()
    with pytest.raises(NotFoundError) as missing:
        admin_client.inbox(email).get("doesnotexist")
    assert missing.value.status == 404 and missing.value.message == "Message not found"
    assert missing.value.error == "Not Found"
    with Client(server.http_url, key="k_wrong") as wrong, pytest.raises(UnauthorizedError) as bad:
        wrong.me()
    assert bad.value.status == 401
    private = unique_inbox()
    tenant.client.inbox(private).reserve()
    _, other_key = new_account(server, "other")
    with Client(server.http_url, key=other_key) as other, \
            pytest.raises(ForbiddenError) as forbidden:
        other.inbox(private).messages()
    assert forbidden.value.status == 403
    with pytest.raises(BadRequestError) as too_many:
        admin_client.validate_many([f"a{i}@example.test" for i in range(51)])
    assert too_many.value.status == 400 and "50" in too_many.value.message
    with Client("http://127.0.0.1:9", key="k") as nowhere, pytest.raises(ConnectionFailed) as down:
        nowhere.me()
    assert "127.0.0.1:9" in str(down.value)


# -- waits (the criteria the server had before issue 19: subject, from, since) -----------


def test_wait_finds_mail_already_there_and_mail_still_coming(server: ServerHandle,
                                                             admin_client: Client) -> None:
    email = unique_inbox()
    inbox = admin_client.inbox(email)
    deliver(server, email, subject="already here")
    assert inbox.wait(subject="already", timeout=10).subject == "already here"
    sender = threading.Thread(target=lambda: (time.sleep(0.3),
                                              deliver(server, email, subject="noise"),
                                              deliver(server, email, subject="Code 1",
                                                      sender="Acme <no-reply@acme.test>")))
    sender.start()
    got = inbox.wait(subject="code", from_="acme", timeout=30)
    sender.join()
    assert got.subject == "Code 1" and got.sender == "no-reply@acme.test"


def test_expect_takes_since_before_the_action(server: ServerHandle,
                                              admin_client: Client) -> None:
    email = unique_inbox()
    inbox = admin_client.inbox(email)
    deliver(server, email, subject="Your code: old")
    with inbox.expect(subject="your code", timeout=30) as pending:
        deliver(server, email, subject="Your code: new")  # lands before the wait request
    assert pending.result().subject == "Your code: new"
    assert pending.since is not None
    # Explicit since: the same, without the context manager.
    since = datetime.now(UTC)
    deliver(server, email, subject="Your code: newest")
    assert inbox.wait(subject="your code", since=since, timeout=30).subject \
        == "Your code: newest"


def test_wait_timeout_lists_what_arrived(server: ServerHandle, admin_client: Client) -> None:
    email = unique_inbox()
    deliver(server, email, subject="Welcome aboard", sender="Shop <shop@example.org>")
    with pytest.raises(WaitTimeout) as timed_out:
        admin_client.inbox(email).wait(subject="password reset", timeout=0.5)
    text = str(timed_out.value)
    assert "no message matching subject contains 'password reset'" in text
    assert f"inbox {email}" in text
    assert "'Welcome aboard'" in text and "shop@example.org" in text
    assert "subject lacks 'password reset'" in text
    assert [m.subject for m in timed_out.value.arrived] == ["Welcome aboard"]
    assert isinstance(timed_out.value, TimeoutError)
    with pytest.raises(WaitTimeout) as empty:
        admin_client.inbox(unique_inbox()).wait(timeout=0.2)
    assert "is empty" in str(empty.value)


def test_client_shares_a_given_httpx_client(server: ServerHandle) -> None:
    seen: list[str] = []
    http = httpx.Client(base_url=server.http_url, timeout=30,
                        event_hooks={"request": [lambda r: seen.append(r.url.path)]})
    with Client(server.http_url, key=server.key, http=http) as client:
        assert client.me().id
    assert seen == ["/api/me"]
