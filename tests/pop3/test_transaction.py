"""STAT, LIST, UIDL, TOP, RETR, DELE, RSET and QUIT against what the HTTP API serves."""

from __future__ import annotations

import poplib
import uuid
from collections.abc import Callable
from email.message import EmailMessage

import pytest

from tests.helpers import ServerHandle, client, deliver, send_raw, unique_inbox
from tests.pop3.conftest import Dialog

Connect = Callable[[], poplib.POP3]


def login(pop: Connect, inbox: str, key: str) -> poplib.POP3:
    session = pop()
    session.user(inbox)
    session.pass_(key)
    return session


def api_ids(server: ServerHandle, inbox: str) -> list[str]:
    """The inbox's message ids, oldest first."""
    with client(server, server.key) as api:
        listed = api.get(f"/api/addresses/{inbox}/messages", params={"limit": 100})
        assert listed.status_code == 200, listed.text
        return [m["_id"] for m in reversed(listed.json())]


def api_raw(server: ServerHandle, inbox: str, message_id: str) -> bytes:
    with client(server, server.key) as api:
        got = api.get(f"/api/raw/{inbox}/{message_id}")
        assert got.status_code == 200, got.text
        return got.content


def joined(lines: list[bytes]) -> bytes:
    return b"".join(line + b"\r\n" for line in lines)


def rich_message(to: str) -> bytes:
    """8-bit UTF-8 text, an HTML part, a binary attachment and lines starting with dots."""
    msg = EmailMessage()
    msg["From"] = "Zoë <zoe@example.org>"
    msg["To"] = to
    msg["Subject"] = "Grüße ✓"
    msg["Message-ID"] = f"<{uuid.uuid4().hex}@example.org>"
    msg.set_content("Grüße aus Köln ✓\n.leading dot\n..two dots\n.\nend\n", cte="8bit")
    msg.add_alternative("<p>Grüße ✓</p>\n", subtype="html", cte="8bit")
    msg.add_attachment(bytes(range(256)) * 40, maintype="application",
                       subtype="octet-stream", filename="blob.bin")
    return msg.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def test_stat_list_uidl_match_the_api(server: ServerHandle, pop: Connect) -> None:
    inbox = unique_inbox()
    for i in range(3):
        deliver(server, inbox, subject=f"m{i}")
    ids = api_ids(server, inbox)
    with client(server, server.key) as api:
        sizes = {m["_id"]: m["size"] for m in api.get(f"/api/addresses/{inbox}/messages").json()}
    session = login(pop, inbox, server.key)
    count, octets = session.stat()
    assert count == 3 and octets == sum(sizes.values())
    resp, listing, _ = session.list()
    assert resp.startswith(b"+OK 3 messages")
    assert listing == [f"{n} {sizes[i]}".encode() for n, i in enumerate(ids, start=1)]
    assert session.list(2) == f"+OK 2 {sizes[ids[1]]}".encode()
    _, uids, _ = session.uidl()
    assert uids == [f"{n} {i}".encode() for n, i in enumerate(ids, start=1)]  # oldest is 1
    assert session.uidl(3) == f"+OK 3 {ids[2]}".encode()
    with pytest.raises(poplib.error_proto, match="no such message"):
        session.list(4)


def test_retr_is_byte_exact_with_attachments_and_8bit(server: ServerHandle, pop: Connect) -> None:
    inbox = unique_inbox()
    sent = rich_message(inbox)
    assert send_raw(server, sent, [inbox]) == {}
    (message_id,) = api_ids(server, inbox)
    raw = api_raw(server, inbox, message_id)
    assert raw.endswith(sent) and raw.startswith(b"Received: ")  # our trace header first
    session = login(pop, inbox, server.key)
    resp, lines, octets = session.retr(1)
    assert resp == f"+OK {len(raw)} octets".encode()
    assert joined(lines) == raw
    assert octets >= len(raw)  # poplib counts the stuffing dots it removed


def test_dot_stuffing_on_the_wire(server: ServerHandle, dialog: Callable[[], Dialog]) -> None:
    inbox = unique_inbox()
    sent = (b"From: a@example.org\r\nTo: " + inbox.encode() + b"\r\nSubject: dots\r\n\r\n"
            b".starts with a dot\r\n..two\r\n.\r\nnot a dot.\r\n")
    assert send_raw(server, sent, [inbox]) == {}
    d = dialog()
    d.cmd(f"USER {inbox}")
    d.cmd(f"PASS {server.key}")
    assert d.cmd("RETR 1").startswith("+OK")
    body = d.block()
    assert body[-4:] == [b"..starts with a dot\r\n", b"...two\r\n", b"..\r\n", b"not a dot.\r\n"]
    unstuffed = b"".join(line[1:] if line.startswith(b".") else line for line in body)
    (message_id,) = api_ids(server, inbox)
    assert unstuffed == api_raw(server, inbox, message_id)


def test_large_message_round_trip(server: ServerHandle, pop: Connect) -> None:
    inbox = unique_inbox()
    body = b"".join(b".%06d line of a big message %s\r\n" % (i, b"x" * (i % 90))
                    for i in range(20_000))
    sent = b"From: a@example.org\r\nTo: " + inbox.encode() + b"\r\nSubject: big\r\n\r\n" + body
    assert len(sent) > 1_000_000
    assert send_raw(server, sent, [inbox]) == {}
    (message_id,) = api_ids(server, inbox)
    session = login(pop, inbox, server.key)
    _, lines, _ = session.retr(1)
    assert joined(lines) == api_raw(server, inbox, message_id)


def test_top(server: ServerHandle, pop: Connect) -> None:
    inbox = unique_inbox()
    deliver(server, inbox, body="line one\n.line two\nline three\n")
    (message_id,) = api_ids(server, inbox)
    raw = api_raw(server, inbox, message_id)
    head, _, body = raw.partition(b"\r\n\r\n")
    session = login(pop, inbox, server.key)
    _, lines, _ = session.top(1, 0)
    assert joined(lines) == head + b"\r\n\r\n"
    _, lines, _ = session.top(1, 2)
    assert joined(lines) == head + b"\r\n\r\n" + b"line one\r\n.line two\r\n"
    _, lines, _ = session.top(1, 10_000)
    assert joined(lines) == raw
    with pytest.raises(poplib.error_proto):
        session.top(1, -1)


def test_dele_then_quit_deletes_through_the_api_path(server: ServerHandle, pop: Connect) -> None:
    inbox = unique_inbox()
    deliver(server, inbox, subject="keep")
    deliver(server, inbox, subject="delete me")
    first, second = api_ids(server, inbox)
    session = login(pop, inbox, server.key)
    assert session.dele(2) == b"+OK message 2 deleted"
    with pytest.raises(poplib.error_proto, match="already deleted"):
        session.retr(2)
    assert session.stat()[0] == 1
    assert api_ids(server, inbox) == [first, second]  # nothing happens before QUIT
    assert session.quit().startswith(b"+OK")
    assert api_ids(server, inbox) == [first]
    with client(server, server.key) as api:
        assert api.get(f"/api/addresses/{inbox}/messages/{second}").status_code == 404


def test_rset_undeletes(server: ServerHandle, pop: Connect) -> None:
    inbox = unique_inbox()
    deliver(server, inbox)
    ids = api_ids(server, inbox)
    session = login(pop, inbox, server.key)
    session.dele(1)
    assert session.stat()[0] == 0
    assert session.rset().startswith(b"+OK maildrop has 1 messages")
    session.quit()
    assert api_ids(server, inbox) == ids


def test_no_deletion_without_quit(server: ServerHandle, dialog: Callable[[], Dialog]) -> None:
    inbox = unique_inbox()
    deliver(server, inbox)
    ids = api_ids(server, inbox)
    d = dialog()
    d.cmd(f"USER {inbox}")
    d.cmd(f"PASS {server.key}")
    assert d.cmd("DELE 1").startswith("+OK")
    assert d.cmd("NOOP") == "+OK"  # the DELE has been processed
    d.close()  # RFC 1939 §6: no QUIT, no UPDATE state, so nothing is ever deleted
    assert api_ids(server, inbox) == ids


def test_snapshot_is_stable_during_a_session(server: ServerHandle, pop: Connect) -> None:
    inbox = unique_inbox()
    deliver(server, inbox, subject="first")
    session = login(pop, inbox, server.key)
    _, before, _ = session.uidl()
    deliver(server, inbox, subject="second")
    assert session.stat()[0] == 1
    assert session.uidl()[1] == before
    with pytest.raises(poplib.error_proto):
        session.retr(2)
    session.quit()
    later = login(pop, inbox, server.key)
    ids = api_ids(server, inbox)
    assert later.uidl()[1] == [f"1 {ids[0]}".encode(), f"2 {ids[1]}".encode()]
    assert b"Subject: second" in joined(later.retr(2)[1])


def test_message_deleted_elsewhere_mid_session(server: ServerHandle, pop: Connect) -> None:
    inbox = unique_inbox()
    deliver(server, inbox)
    (message_id,) = api_ids(server, inbox)
    session = login(pop, inbox, server.key)
    with client(server, server.key) as api:
        assert api.delete(f"/api/addresses/{inbox}/messages/{message_id}").status_code == 200
    with pytest.raises(poplib.error_proto, match="no longer available"):
        session.retr(1)
    session.dele(1)
    assert session.quit().startswith(b"+OK")  # already gone counts as deleted
