"""Behind a load balancer: PROXY protocol v1/v2 on SMTP, SMTPS and POP3, and
X-Forwarded-For on HTTP, honoured only from MAILSAC_TRUSTED_PROXIES.

Two private servers on the session database: ``trusted`` believes every loopback peer is
a load balancer (so every SMTP/POP3 connection to it must start with a PROXY header), and
``untrusted`` trusts only 10.0.0.0/8, so loopback clients are ordinary clients. The client
addresses the headers claim are random, so deny-list entries (shared by every server of
the session through the database) cannot touch another test.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import ipaddress
import json
import random
import socket
import ssl
import struct
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import websockets

from tests.helpers import (
    ServerHandle,
    client,
    make_message,
    new_account,
    start_private_server,
    stop_private_server,
    unique_inbox,
)

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def _client_ip() -> str:
    """A random documentation-range (198.18.0.0/15) address no other test uses."""
    return f"198.{random.randint(18, 19)}.{random.randint(0, 255)}.{random.randint(1, 254)}"


def v1(ip: str, port: int = 40000) -> bytes:
    family = "TCP6" if ":" in ip else "TCP4"
    dst = "::1" if ":" in ip else "127.0.0.1"
    return f"PROXY {family} {ip} {dst} {port} 25\r\n".encode()


def v2(ip: str | None, port: int = 40000, tlvs: bytes = b"") -> bytes:
    """A v2 PROXY header for ``ip`` (TCP4/TCP6); ``None``: the LOCAL command."""
    if ip is None:
        return V2_SIGNATURE + b"\x20\x00\x00\x00"
    address = ipaddress.ip_address(ip)
    dst = ipaddress.ip_address("::1" if address.version == 6 else "127.0.0.1")
    payload = address.packed + dst.packed + struct.pack("!HH", port, 25) + tlvs
    family = 0x21 if address.version == 6 else 0x11
    return V2_SIGNATURE + bytes([0x21, family]) + struct.pack("!H", len(payload)) + payload


class Smtp:
    """A raw SMTP client over a socket that may have sent a PROXY header first."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.file = sock.makefile("rb")

    @classmethod
    def connect(cls, port: int, header: bytes = b"") -> Smtp:
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        if header:
            sock.sendall(header)
        return cls(sock)

    def reply(self) -> str:
        """One (possibly multi-line) reply; "" once the server has closed."""
        lines = []
        while True:
            raw = self.file.readline()
            if not raw:
                return "\n".join(lines)
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            lines.append(line)
            if len(line) < 4 or line[3] != "-":
                return "\n".join(lines)

    def cmd(self, line: str) -> str:
        self.sock.sendall(line.encode() + b"\r\n")
        return self.reply()

    def deliver(self, inbox: str) -> str:
        """EHLO … DATA for one message to ``inbox``; the reply to the final dot."""
        assert self.cmd("EHLO client.example").startswith("250")
        assert self.cmd("MAIL FROM:<sender@example.org>").startswith("250")
        assert self.cmd(f"RCPT TO:<{inbox}>").startswith("250")
        assert self.cmd("DATA").startswith("354")
        self.sock.sendall(make_message(inbox, subject="proxied") + b".\r\n")
        return self.reply()

    def closed(self) -> bool:
        return self.file.readline() == b""

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def _stored(server: ServerHandle, inbox: str) -> tuple[str, str]:
    """The ``ip`` field and the raw text of the only message in ``inbox``."""
    with client(server, server.key) as api:
        listed = api.get(f"/api/addresses/{inbox}/messages").json()
        assert len(listed) == 1, listed
        raw = api.get(f"/api/raw/{inbox}/{listed[0]['_id']}").text
    return str(listed[0]["ip"]), raw


def _pop3_port(server: ServerHandle) -> int:
    return int(json.loads((server.data_dir / "ready.json").read_text())["pop3_port"])


@pytest.fixture(scope="module")
def trusted(database_url: str) -> Iterator[ServerHandle]:
    handle = start_private_server(database_url, {
        "MAILSAC_TRUSTED_PROXIES": "127.0.0.0/8", "MAILSAC_PROXY_TIMEOUT": "1",
        "MAILSAC_SMTPS_PORT": "0", "MAILSAC_TLS_RELOAD_INTERVAL": "0",
        "MAILSAC_POP3_PLAINTEXT_LOOPBACK": "true", "MAILSAC_MAX_STREAMS_PER_IP": "1"},
        prefix="mailsac-test-proxy-")
    yield handle
    stop_private_server(handle)


@pytest.fixture(scope="module")
def untrusted(database_url: str) -> Iterator[ServerHandle]:
    handle = start_private_server(database_url, {
        "MAILSAC_TRUSTED_PROXIES": "10.0.0.0/8", "MAILSAC_MAX_STREAMS_PER_IP": "1"},
        prefix="mailsac-test-proxy-")
    yield handle
    stop_private_server(handle)


@pytest.fixture()
def deny(trusted: ServerHandle) -> Iterator[list[str]]:
    """Deny-list entries the test adds (removed afterwards, whatever happened)."""
    added: list[str] = []
    yield added
    with client(trusted, trusted.key) as admin:
        for value in added:
            admin.delete(f"/api/admin/deny-list/{value}")


# ---------------------------------------------------------------------------------------
# SMTP


@pytest.mark.parametrize("version", [1, 2])
def test_smtp_header_names_the_client(trusted: ServerHandle, version: int) -> None:
    ip, inbox = _client_ip(), unique_inbox()
    header = v1(ip) if version == 1 else v2(ip, tlvs=b"\x05\x00\x04abcd")  # a TLV, skipped
    session = Smtp.connect(trusted.smtp_port, header)
    try:
        assert session.reply().startswith("220")
        assert session.deliver(inbox).startswith("250")
    finally:
        session.close()
    stored_ip, raw = _stored(trusted, inbox)
    assert stored_ip == ip
    assert raw.startswith(f"Received: from client.example ([{ip}])")
    assert "127.0.0.1]" not in raw.split("\r\n\r\n")[0]


def test_smtp_ipv6_client(trusted: ServerHandle) -> None:
    ip, inbox = f"2001:db8::{random.randint(1, 0xffff):x}", unique_inbox()
    session = Smtp.connect(trusted.smtp_port, v2(ip))
    try:
        assert session.reply().startswith("220")
        assert session.deliver(inbox).startswith("250")
    finally:
        session.close()
    assert _stored(trusted, inbox)[0] == ip


def test_deny_list_sees_the_proxied_client(trusted: ServerHandle, deny: list[str]) -> None:
    ip, other = _client_ip(), _client_ip()
    with client(trusted, trusted.key) as admin:
        added = admin.post("/api/admin/deny-list", json={"value": ip, "reason": "proxy test"})
        assert added.status_code == 200, added.text
        deny.append(ip)
    for header in (v1(ip), v2(ip)):
        refused = Smtp.connect(trusted.smtp_port, header)
        try:
            banner = refused.reply()
            assert banner.startswith("554 5.7.1") and "proxy test" in banner, banner
        finally:
            refused.close()
    # the balancer itself (127.0.0.1) and other clients behind it are unaffected
    fine = Smtp.connect(trusted.smtp_port, v2(other))
    try:
        assert fine.reply().startswith("220")
    finally:
        fine.close()


def test_v2_local_uses_the_balancer_address(trusted: ServerHandle) -> None:
    inbox = unique_inbox()
    session = Smtp.connect(trusted.smtp_port, v2(None))  # e.g. HAProxy's own health check
    try:
        assert session.reply().startswith("220")
        assert session.deliver(inbox).startswith("250")
    finally:
        session.close()
    stored_ip, raw = _stored(trusted, inbox)
    assert stored_ip == "127.0.0.1" and "([127.0.0.1])" in raw


@pytest.mark.parametrize("first", [
    b"EHLO no-header.example\r\n",  # the balancer was not told to send-proxy
    b"PROXY TCP4 198.18.0.1 127.0.0.1 1\r\n",  # a field missing
    b"PROXY " + b"9" * 300,  # longer than any header
    V2_SIGNATURE + b"\x21\x11\xff\xff",  # v2 longer than we accept
    b"PROXY TCP4 198.1",  # then silence: refused at MAILSAC_PROXY_TIMEOUT
])
def test_bad_or_missing_header_closes_the_connection(trusted: ServerHandle,
                                                     first: bytes) -> None:
    session = Smtp.connect(trusted.smtp_port, first)
    try:
        reply = session.reply()
        assert reply.startswith("421 4.7.0") and "PROXY" in reply, reply
        assert session.closed()
    finally:
        session.close()
    assert "refused: " in trusted.log()


def test_untrusted_peer_header_is_just_a_bad_command(untrusted: ServerHandle) -> None:
    inbox = unique_inbox()
    session = Smtp.connect(untrusted.smtp_port)  # no header needed: banner at once
    try:
        assert session.reply().startswith("220")
        reply = session.cmd(v1("198.18.0.9").decode().rstrip("\r\n"))
        assert reply.startswith("500") and "PROXY" in reply, reply
        assert session.deliver(inbox).startswith("250")
    finally:
        session.close()
    stored_ip, raw = _stored(untrusted, inbox)
    assert stored_ip == "127.0.0.1" and "198.18.0.9" not in raw


# ---------------------------------------------------------------------------------------
# SMTPS: the PROXY header comes before the TLS handshake


def _tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the generated self-signed certificate
    return context


def _client_hello(header: bytes, raw_sock: socket.socket) -> Any:
    """Send ``header`` and the TLS ClientHello in one segment (the server reads both at
    once and must hand the ClientHello to its TLS layer), then finish the handshake."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = _tls().wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    hello = outgoing.read()
    raw_sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    raw_sock.sendall(header + hello)
    # Hand the socket over to a regular TLS socket for the rest: peek at the reply
    # (ServerHello …) by finishing the handshake on the memory BIOs first.
    while True:
        data = raw_sock.recv(65536)
        assert data, "server closed during the handshake"
        incoming.write(data)
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            raw_sock.sendall(outgoing.read())
    raw_sock.sendall(outgoing.read())
    return _BioSocket(raw_sock, tls, incoming, outgoing)


class _BioSocket:
    """Just enough of a socket (makefile("rb"), sendall, close) over an SSLObject."""

    def __init__(self, sock: socket.socket, tls: ssl.SSLObject, incoming: ssl.MemoryBIO,
                 outgoing: ssl.MemoryBIO) -> None:
        self.sock, self.tls, self.incoming, self.outgoing = sock, tls, incoming, outgoing

    def sendall(self, data: bytes) -> None:
        self.tls.write(data)
        self.sock.sendall(self.outgoing.read())

    def recv(self, size: int) -> bytes:
        while True:
            try:
                return self.tls.read(size)
            except ssl.SSLWantReadError:
                data = self.sock.recv(65536)
                if not data:
                    return b""
                self.incoming.write(data)

    def makefile(self, mode: str) -> Any:
        return io.BufferedReader(_Raw(self))

    def close(self) -> None:
        self.sock.close()


class _Raw(io.RawIOBase):
    def __init__(self, owner: _BioSocket) -> None:
        self.owner = owner

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.owner.recv(len(buffer))
        buffer[:len(data)] = data
        return len(data)


@pytest.mark.parametrize("together", [False, True])
def test_smtps_header_before_tls(trusted: ServerHandle, together: bool) -> None:
    ip, inbox = _client_ip(), unique_inbox()
    raw_sock = socket.create_connection(("127.0.0.1", trusted.smtps_port), timeout=30)
    if together:  # header and ClientHello in one segment, as HAProxy may send them
        sock: Any = _client_hello(v2(ip), raw_sock)
    else:
        raw_sock.sendall(v2(ip))
        sock = _tls().wrap_socket(raw_sock, server_hostname="localhost")
    session = Smtp(sock)
    try:
        assert session.reply().startswith("220")
        assert session.deliver(inbox).startswith("250")
    finally:
        session.close()
    stored_ip, raw = _stored(trusted, inbox)
    assert stored_ip == ip and f"([{ip}])" in raw


def test_smtps_without_header_gets_no_plaintext(trusted: ServerHandle) -> None:
    raw_sock = socket.create_connection(("127.0.0.1", trusted.smtps_port), timeout=30)
    try:
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            # the ClientHello is not a PROXY header: closed, nothing said in plaintext
            _tls().wrap_socket(raw_sock, server_hostname="localhost").recv(1)
    finally:
        raw_sock.close()


# ---------------------------------------------------------------------------------------
# POP3


class Pop3:
    def __init__(self, port: int, header: bytes) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.sendall(header)
        self.file = self.sock.makefile("rb")
        self.greeting = self.line()

    def line(self) -> str:
        return self.file.readline().decode("utf-8", "replace").rstrip("\r\n")

    def cmd(self, line: str) -> str:
        self.sock.sendall(line.encode() + b"\r\n")
        return self.line()

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def test_pop3_header_names_the_client(trusted: ServerHandle, deny: list[str]) -> None:
    port, ip = _pop3_port(trusted), _client_ip()
    # Plaintext logins are allowed to loopback clients only: the proxied client is not one…
    remote = Pop3(port, v2(ip))
    try:
        assert remote.greeting.startswith("+OK")
        assert remote.cmd("USER someone@example.test").startswith("-ERR [AUTH] plaintext")
    finally:
        remote.close()
    # …while a loopback client behind the same balancer is (v1, and v2 LOCAL).
    for header in (v1("127.0.0.9"), v2(None)):
        local = Pop3(port, header)
        try:
            assert local.greeting.startswith("+OK")
            assert local.cmd("USER someone@example.test").startswith("+OK")
        finally:
            local.close()
    with client(trusted, trusted.key) as admin:
        added = admin.post("/api/admin/deny-list", json={"value": ip, "reason": "pop3 proxy"})
        assert added.status_code == 200, added.text
        deny.append(ip)
    denied = Pop3(port, v1(ip))
    try:
        assert denied.greeting == (f"-ERR [SYS/PERM] connections from {ip} are refused: "
                                   "pop3 proxy")
    finally:
        denied.close()


@pytest.mark.parametrize("first", [b"USER x@example.test\r\n", b"PROXY TCP4 1.2.3.4\r\n",
                                   b"PROXY TCP4"])
def test_pop3_bad_header_closes(trusted: ServerHandle, first: bytes) -> None:
    session = Pop3(_pop3_port(trusted), first)
    try:
        assert session.greeting.startswith("-ERR") and "PROXY" in session.greeting
        assert session.file.readline() == b""
    finally:
        session.close()


# ---------------------------------------------------------------------------------------
# HTTP: X-Forwarded-For. Observable through the per-client-IP stream cap (1 here): two
# WebSocket feeds from one TCP peer are one client unless a trusted balancer says not.


def _feed(server: ServerHandle) -> tuple[str, str]:
    _, key = new_account(server, prefix="proxy")
    address = unique_inbox()
    with client(server, key) as api:
        assert api.post(f"/api/addresses/{address}", json={"enablews": True}).status_code == 200
    url = (server.http_url.replace("http://", "ws://")
           + f"/incoming-messages?key={key}&addresses={address}")
    return url, address


async def _statuses(url: str, forwarded: list[str]) -> list[int]:
    """Open one feed per X-Forwarded-For value, all at once; their first frames' status."""
    async with contextlib.AsyncExitStack() as stack:
        statuses = []
        for ip in forwarded:
            ws = await stack.enter_async_context(websockets.connect(
                url, additional_headers={"X-Forwarded-For": ip}))
            statuses.append(int(json.loads(await ws.recv())["status"]))
        return statuses


async def _statuses_once_free(url: str, forwarded: list[str]) -> list[int]:
    """:func:`_statuses`, asked again while the first feed is refused: the server frees
    the slots of the previous round's closed feeds a moment after they close."""
    deadline = time.monotonic() + 10
    while (statuses := await _statuses(url, forwarded))[0] == 429 \
            and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    return statuses


def test_forwarded_for_from_a_trusted_balancer(trusted: ServerHandle) -> None:
    url, _ = _feed(trusted)
    one, two = _client_ip(), _client_ip()
    assert asyncio.run(_statuses(url, [one, two])) == [200, 200]  # two clients
    assert asyncio.run(_statuses_once_free(url, [one, one])) == [200, 429]  # one, twice
    # the chain's last untrusted hop is the client (a client-sent first entry is ignored)
    assert asyncio.run(_statuses_once_free(url, [f"{two}, {one}", f"{one}, {one}"])) \
        == [200, 429]


def test_forwarded_for_from_anyone_else_is_ignored(untrusted: ServerHandle) -> None:
    url, _ = _feed(untrusted)
    assert asyncio.run(_statuses(url, [_client_ip(), _client_ip()])) == [200, 429]
    with httpx.Client(base_url=untrusted.http_url, timeout=30) as anon:
        assert anon.get("/readyz", headers={"X-Forwarded-For": "198.18.0.1"}).json() == {
            "status": "ready"}
