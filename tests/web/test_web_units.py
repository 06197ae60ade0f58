"""In-process checks of the viewer's building blocks: sessions, CSRF, origins, the event
stream's clean-up and filtering, the keyless reading rule, and the body renderings."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from starlette.requests import Request
from starlette.types import Message

from mailsac.api.limits import HttpLimits
from mailsac.errors import Forbidden, Unauthorized
from mailsac.events import MessageDeleted, MessageStored
from mailsac.forwarding.hub import MessageHub
from mailsac.mime import parse_message
from mailsac.storage import MessageRecord
from mailsac.web.events import EventStream
from mailsac.web.render import has_remote_images, html_with_remote_images, human_size
from mailsac.web.security import SessionTable, csrf_ok, local_path, same_origin
from mailsac.web.viewer import ANONYMOUS, LatestOnly, Viewer, list_inbox, open_message

INBOX = "a@x.test"


def _record(message_id: str = "m-0", inbox: str = INBOX, account_id: str | None = None,
            minutes: int = 0) -> MessageRecord:
    return MessageRecord(
        id=message_id, inbox=inbox, original_inbox=inbox, domain=inbox.split("@")[1],
        received=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=minutes), size=1,
        blob_key="k" * 32, subject="", from_addrs=[], to_addrs=[], cc_addrs=[], bcc_addrs=[],
        attachments=None, links=[], ip="", via="", mail_from="", message_id=None,
        folder="inbox", labels=[], read=False, rtls=False, saved_by=None, spam=None,
        account_id=account_id)


def test_csrf_tokens() -> None:
    sessions = SessionTable()
    sid = sessions.create("k_x", "127.0.0.1", HttpLimits())
    session = sessions.get(sid)
    assert session is not None
    assert csrf_ok(session, session.csrf)
    assert not csrf_ok(session, None) and not csrf_ok(session, "")
    assert not csrf_ok(session, session.csrf + "x") and not csrf_ok(None, session.csrf)


@pytest.mark.parametrize(("value", "expected"), [
    ("/inbox/a@x.test", "/inbox/a@x.test"), ("/", "/"), (None, "/"), ("", "/"),
    ("//evil.test/", "/"), ("https://evil.test/", "/"), ("/\\evil.test", "/"),
    ("javascript:alert(1)", "/"), ("/a\nb", "/"),
])
def test_local_path(value: str | None, expected: str) -> None:
    assert local_path(value) == expected


def _request(headers: dict[str, str]) -> Request:
    return Request({
        "type": "http", "method": "POST", "scheme": "http", "path": "/session",
        "server": ("127.0.0.1", 8080), "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in
                    {"host": "127.0.0.1:8080", **headers}.items()],
    })


@pytest.mark.parametrize(("headers", "allowed"), [
    ({}, True),
    ({"Sec-Fetch-Site": "same-origin", "Origin": "null"}, True),
    ({"Sec-Fetch-Site": "cross-site"}, False),
    ({"Sec-Fetch-Site": "same-site"}, False),
    ({"Origin": "http://127.0.0.1:8080"}, True),
    ({"Origin": "http://evil.test"}, False),
    ({"Origin": "null"}, False),
])
def test_same_origin(headers: dict[str, str], allowed: bool) -> None:
    assert same_origin(_request(headers)) is allowed


class _Asgi:
    """Collects what an ASGI response sends; ``receive`` answers from a queue."""

    def __init__(self) -> None:
        self.sent: list[Message] = []
        self.changed = asyncio.Event()
        self.incoming: asyncio.Queue[Message] = asyncio.Queue()

    async def send(self, message: Message) -> None:
        self.sent.append(message)
        self.changed.set()

    async def receive(self) -> Message:
        return await self.incoming.get()

    async def wait_for_body(self, count: int) -> None:
        while len(self.bodies()) < count:
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), 30)

    def bodies(self) -> list[bytes]:
        return [m["body"] for m in self.sent if m["type"] == "http.response.body"]


async def test_event_stream_filters_and_unsubscribes_when_the_client_leaves() -> None:
    hub = MessageHub()
    asgi = _Asgi()
    stream = EventStream(hub, INBOX, ANONYMOUS.account_id)
    task = asyncio.create_task(stream({"type": "http"}, asgi.receive, asgi.send))
    await asgi.wait_for_body(1)
    assert hub.subscriber_count == 1
    start = asgi.sent[0]
    assert start["status"] == 200
    assert all(name != b"content-length" for name, _ in start["headers"])
    hub.publish(MessageStored(_record("private-0", account_id="acme"), (INBOX,)))
    hub.publish(MessageStored(_record("catchall-0", inbox="*@x.test"), (INBOX, "*@x.test")))
    hub.publish(MessageStored(replace(_record("starred-0"), saved_by="acme"), (INBOX,)))
    hub.publish(MessageStored(_record("public-0"), (INBOX,)))
    hub.publish(MessageDeleted("public-0", INBOX))
    await asgi.wait_for_body(3)
    assert asgi.bodies()[1] == b'event: message\ndata: {"id": "public-0"}\n\n'
    assert asgi.bodies()[2].startswith(b"event: changed\n")
    await asgi.incoming.put({"type": "http.disconnect"})
    await asyncio.wait_for(task, 30)
    assert hub.subscriber_count == 0
    assert b"private-0" not in b"".join(asgi.bodies())


async def test_event_stream_ends_when_dropped_or_expired() -> None:
    hub = MessageHub()
    asgi = _Asgi()
    task = asyncio.create_task(
        EventStream(hub, INBOX, "acme")({"type": "http"}, asgi.receive, asgi.send))
    await asgi.wait_for_body(1)
    hub.publish(MessageStored(_record("private-0", account_id="acme"), (INBOX,)))
    await asgi.wait_for_body(2)
    assert b"private-0" in asgi.bodies()[1]  # the owner's stream sees its private mail
    for sub in list(hub._by_inbox[INBOX]):
        sub.close("too slow")
    await asyncio.wait_for(task, 30)
    assert asgi.sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}
    assert hub.subscriber_count == 0

    expired = _Asgi()
    await asyncio.wait_for(EventStream(hub, INBOX, "acme", lifetime=0)(
        {"type": "http"}, expired.receive, expired.send), 30)
    assert expired.sent[-1]["more_body"] is False and hub.subscriber_count == 0


class _Mailboxes:
    """Just enough of :class:`Mailboxes` for the viewer's rules, with its 403/401 checks."""

    def __init__(self, records: list[MessageRecord], owner: str | None = None) -> None:
        self.records = sorted(records, key=lambda r: r.received, reverse=True)
        self.owner = owner

    async def list_messages(self, key: Any, inbox: str, *, limit: int,
                            until: datetime | None = None) -> list[MessageRecord]:
        if self.owner is not None and self.owner != key.account_id:
            raise Forbidden("private")
        return [r for r in self.records if until is None or r.received < until][:limit]

    async def get(self, key: Any, inbox: str, message_id: str) -> MessageRecord:
        if self.owner is not None and self.owner != key.account_id:
            raise Unauthorized("private")
        return next(r for r in self.records if r.id == message_id)


async def test_keyless_viewer_may_open_only_the_newest_message() -> None:
    mailboxes: Any = _Mailboxes([_record(f"m{i}-0", minutes=i) for i in range(3)])
    anonymous = Viewer(ANONYMOUS)
    listing = await list_inbox(mailboxes, anonymous, INBOX, public_mode="latest")
    assert [r.id for r in listing.records] == ["m2-0", "m1-0", "m0-0"]
    assert listing.openable == {"m2-0"} and listing.latest_only
    older = await list_inbox(mailboxes, anonymous, INBOX, public_mode="latest", limit=1,
                             until=listing.records[0].received)
    assert [r.id for r in older.records] == ["m1-0"] and older.openable == {"m2-0"}
    assert older.older_until == older.records[0].received
    assert (await open_message(mailboxes, anonymous, INBOX, "m2-0", public_mode="latest")).id
    with pytest.raises(LatestOnly):
        await open_message(mailboxes, anonymous, INBOX, "m1-0", public_mode="latest")
    full = await list_inbox(mailboxes, anonymous, INBOX, public_mode="full")
    assert len(full.openable) == 3 and not full.latest_only
    assert await open_message(mailboxes, anonymous, INBOX, "m0-0", public_mode="full")
    signed = Viewer(replace(ANONYMOUS, account_id="acme"), "sid", "csrf")
    assert len((await list_inbox(mailboxes, signed, INBOX, public_mode="latest")).openable) == 3

    private: Any = _Mailboxes([_record()], owner="acme")
    with pytest.raises(Forbidden):
        await list_inbox(private, anonymous, INBOX, public_mode="full")
    with pytest.raises(Unauthorized):
        await open_message(private, anonymous, INBOX, "m-0", public_mode="full")


def test_remote_images_variant_keeps_images_only() -> None:
    raw = (b"Content-Type: text/html\r\nSubject: x\r\n\r\n"
           b"<p onclick='x()'>Hi<script>alert(1)</script>"
           b"<img src='https://t.example/p.png'><img src='cid:nothing'>"
           b"<a href='javascript:alert(1)'>j</a>"
           b"<div style='background:url(https://t.example/b.png);color:red'>b</div></p>")
    parsed = parse_message(raw)
    assert has_remote_images(parsed)
    out = html_with_remote_images(parsed)
    assert 'src="https://t.example/p.png"' in out
    for gone in ("script", "onclick", "javascript:", "url(", "cid:"):
        assert gone not in out, gone
    assert not has_remote_images(parse_message(b"Content-Type: text/plain\r\n\r\nhttp://x/"))


def test_human_size() -> None:
    assert human_size(512) == "512 bytes"
    assert human_size(2048) == "2.0 KB"
    assert human_size(5 * 1024 * 1024) == "5.0 MB"


async def test_event_stream_ends_when_the_session_ends() -> None:
    hub = MessageHub()
    asgi = _Asgi()
    signed_in = [True]
    task = asyncio.create_task(EventStream(hub, INBOX, "acme", alive=lambda: signed_in[0])(
        {"type": "http"}, asgi.receive, asgi.send))
    await asgi.wait_for_body(1)
    signed_in[0] = False
    hub.publish(MessageStored(_record("private-0", account_id="acme"), (INBOX,)))
    await asyncio.wait_for(task, 30)
    assert b"private-0" not in b"".join(asgi.bodies())
    assert hub.subscriber_count == 0
