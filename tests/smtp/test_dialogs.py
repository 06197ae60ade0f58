"""Scripted SMTP dialogs over a real socket: (line sent, reply code expected)."""

from __future__ import annotations

import smtplib
import socket

import httpx
import pytest

from mailsac.smtp import replies
from tests.helpers import ServerHandle, make_message, unique_inbox


class Dialog:
    """A line-oriented SMTP client that returns each complete (multi-line) reply."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=15)
        self.file = self.sock.makefile("rb")

    def reply(self) -> tuple[int, str]:
        lines = []
        while True:
            line = self.file.readline()
            if not line:
                raise ConnectionError("server closed the connection")
            lines.append(line.decode("utf-8", "replace").rstrip("\r\n"))
            if len(line) < 4 or line[3:4] != b"-":
                break
        return int(lines[-1][:3]), "\n".join(lines)

    def send(self, data: bytes | str) -> None:
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def cmd(self, line: str | bytes) -> tuple[int, str]:
        self.send(line if isinstance(line, bytes) else line.encode() + b"\r\n")
        return self.reply()

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def play(server: ServerHandle, script: list[tuple[str | bytes, int]]) -> list[str]:
    dialog = Dialog(server.smtp_port)
    try:
        code, banner = dialog.reply()
        assert code == 220, banner
        texts = []
        for line, expected in script:
            code, text = dialog.cmd(line)
            assert code == expected, f"{line!r}: expected {expected}, got {text!r}"
            texts.append(text)
        return texts
    finally:
        dialog.close()


def test_ehlo_advertises_extensions(server: ServerHandle) -> None:
    (ehlo,) = play(server, [("EHLO client.test", 250)])
    for ext in ("SIZE 2621440", "8BITMIME", "SMTPUTF8", "PIPELINING", "ENHANCEDSTATUSCODES"):
        assert ext in ehlo


def test_happy_path_codes(server: ServerHandle) -> None:
    to = unique_inbox()
    texts = play(server, [
        ("EHLO client.test", 250),
        ("MAIL FROM:<a@example.org>", 250),
        (f"RCPT TO:<{to}>", 250),
        ("DATA", 354),
        (b"Subject: hi\r\n\r\nbody\r\n.\r\n", 250),
        ("QUIT", 221),
    ])
    assert texts[4].startswith("250 2.0.0 OK: message stored as ")


@pytest.mark.parametrize(
    ("script", "reply"),
    [
        ([("MAIL FROM:<a@example.org>", 250), ("DATA", 553)], replies.S553_NO_RECIPIENTS),
        ([("MAIL FROM:<a@example.org>", 250), ("RCPT TO:<not an address>", 553)],
         replies.S553_BAD_RECIPIENT),
        ([("MAIL FROM:<a@example.org>", 250), ("RCPT TO:<user@nodot>", 553)],
         replies.S553_BAD_RECIPIENT),
        ([("MAIL FROM:<a@example.org>", 250), ("RCPT TO:<bad>", 553), ("DATA", 553)],
         replies.S553_NO_RECIPIENTS),
        ([("MAIL FROM:<bad..sender@x.test>", 501)], replies.S501_BAD_SENDER),
    ],
)
def test_rejections_use_the_reply_table(
    server: ServerHandle, script: list[tuple[str, int]], reply: replies.Reply
) -> None:
    texts = play(server, [("EHLO client.test", 250), *script])
    assert texts[-1].startswith(f"{reply.code} {reply.enhanced} ")
    assert "Error: (" not in texts[-1]  # never aiosmtpd's default exception text


def test_null_sender_is_accepted_for_bounces(server: ServerHandle) -> None:
    to = unique_inbox()
    play(server, [
        ("EHLO client.test", 250), ("MAIL FROM:<>", 250), (f"RCPT TO:<{to}>", 250),
        ("DATA", 354), (b"Subject: bounce\r\n\r\nundeliverable\r\n.\r\n", 250),
    ])


def test_message_over_the_size_limit_gets_552(server: ServerHandle, api: httpx.Client) -> None:
    to = unique_inbox()
    big = b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 2700  # about 2.7 MB
    texts = play(server, [
        ("EHLO client.test", 250), ("MAIL FROM:<a@example.org>", 250),
        (f"RCPT TO:<{to}>", 250), ("DATA", 354), (big + b".\r\n", 552),
        # The session stays usable after the rejection.
        ("MAIL FROM:<a@example.org>", 250), (f"RCPT TO:<{to}>", 250), ("DATA", 354),
        (b"Subject: small\r\n\r\nok\r\n.\r\n", 250),
    ])
    assert "maximum size of 2621440 bytes" in texts[4]
    listed = api.get(f"/api/addresses/{to}/messages").json()
    assert [m["subject"] for m in listed] == ["small"]


def test_declared_size_over_limit_is_refused_at_mail_from(server: ServerHandle) -> None:
    play(server, [("EHLO client.test", 250), ("MAIL FROM:<a@example.org> SIZE=99999999", 552)])


def test_dot_stuffing_and_empty_lines_survive_byte_exact(
    server: ServerHandle, api: httpx.Client
) -> None:
    to = unique_inbox()
    body = b"Subject: dots\r\n\r\n.leading dot\r\n..two dots\r\n\r\n.\r\n"
    stuffed = body.replace(b"\r\n.", b"\r\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    play(server, [
        ("EHLO client.test", 250), ("MAIL FROM:<a@example.org>", 250),
        (f"RCPT TO:<{to}>", 250), ("DATA", 354), (stuffed + b".\r\n", 250),
    ])
    (message,) = api.get(f"/api/addresses/{to}/messages").json()
    raw = api.get(f"/api/raw/{to}/{message['_id']}").content
    assert raw.endswith(b"\r\n" + body)
    assert raw.startswith(b"Received: from client.test ([127.0.0.1])")


def test_pipelined_commands_after_data_are_answered(
    server: ServerHandle, api: httpx.Client
) -> None:
    to = unique_inbox()
    dialog = Dialog(server.smtp_port)
    try:
        assert dialog.reply()[0] == 220
        dialog.send(f"EHLO c.test\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<{to}>\r\nDATA\r\n")
        assert [dialog.reply()[0] for _ in range(4)] == [250, 250, 250, 354]
        # End of data, a second transaction and QUIT in one packet (RFC 2920).
        dialog.send(
            f"Subject: one\r\n\r\n1\r\n.\r\nMAIL FROM:<b@example.org>\r\nRCPT TO:<{to}>\r\n"
            "DATA\r\n"
        )
        assert [dialog.reply()[0] for _ in range(4)] == [250, 250, 250, 354]
        dialog.send("Subject: two\r\n\r\n2\r\n.\r\nQUIT\r\n")
        assert [dialog.reply()[0] for _ in range(2)] == [250, 221]
    finally:
        dialog.close()
    subjects = [m["subject"] for m in api.get(f"/api/addresses/{to}/messages").json()]
    assert subjects == ["two", "one"]


def test_pipelined_replies_keep_their_order_around_a_rejection(server: ServerHandle) -> None:
    """2xx replies to pipelined commands may be sent together (RFC 2920 §3.2), but never
    out of order, and a rejection in the middle flushes what was held before it."""
    to = unique_inbox()
    dialog = Dialog(server.smtp_port)
    try:
        assert dialog.reply()[0] == 220
        assert dialog.cmd("EHLO c.test")[0] == 250
        dialog.send(f"MAIL FROM:<a@example.org>\r\nRCPT TO:<bad>\r\nRCPT TO:<{to}>\r\n"
                    "NOOP\r\nDATA\r\n")
        assert [dialog.reply()[0] for _ in range(5)] == [250, 553, 250, 250, 354]
        assert dialog.cmd(b"Subject: x\r\n\r\nx\r\n.\r\n")[0] == 250
    finally:
        dialog.close()


def test_an_address_the_header_parser_chokes_on_is_malformed(server: ServerHandle) -> None:
    texts = play(server, [("EHLO client.test", 250), ("MAIL FROM:<", 553),
                          ("MAIL FROM:<a@example.org>", 250), ('RCPT TO:<"', 553),
                          ("RCPT TO:<a@[", 553)])
    assert all("malformed address" in texts[i] for i in (1, 3, 4))


def test_a_reply_is_not_held_for_an_incomplete_next_command(server: ServerHandle) -> None:
    dialog = Dialog(server.smtp_port)
    try:
        assert dialog.reply()[0] == 220
        dialog.send("EHLO c.test\r\nNO")  # the second line has not arrived yet
        assert dialog.reply()[0] == 250
        dialog.send("OP\r\n")
        assert dialog.reply()[0] == 250
    finally:
        dialog.close()


def test_multiple_recipients_land_once_in_each_inbox(
    server: ServerHandle, api: httpx.Client
) -> None:
    first, second = unique_inbox(), unique_inbox("other.test")
    local, domain = first.split("@")
    tagged = f"{local}+tag@{domain}"
    raw = make_message(first, subject="multi")
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as smtp:
        assert smtp.sendmail("a@example.org", [first, tagged, second], raw) == {}
    one = api.get(f"/api/addresses/{first}/messages").json()
    two = api.get(f"/api/addresses/{second}/messages").json()
    assert len(one) == 1 and len(two) == 1
    assert one[0]["_id"] != two[0]["_id"]
    assert one[0]["originalInbox"] == first
    assert two[0]["inbox"] == second


def test_session_survives_garbage_commands(server: ServerHandle) -> None:
    play(server, [
        ("EHLO client.test", 250),
        ("FOO bar", 500),
        (b"\xff\xfe\r\n", 500),
        ("RCPT TO:<x@y.test>", 503),
        ("MAIL FROM:<a@example.org>", 250),
        ("MAIL FROM:<a@example.org>", 503),
        ("NOOP", 250),
        ("RSET", 250),
        ("QUIT", 221),
    ])
