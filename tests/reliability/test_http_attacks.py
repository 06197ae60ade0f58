"""HTTP abuse against a real server: huge and endless request bodies, half-open connection
floods, slow headers, and too many long-lived streams or viewer sessions from one client.

The server under attack has small caps (below) so that the attacks are cheap to mount; the
client sockets bind to other loopback addresses (127.0.0.2, ...) to act as bystanders.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import smtplib
import socket
import statistics
import tempfile
import time
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path

import httpx
import pytest
import websockets

from tests.helpers import (
    ServerHandle,
    client,
    log_failures,
    metric,
    new_account,
    start_server,
    stop_server,
    unique_inbox,
)

MAX_BODY = 256 * 1024
PER_IP = 40
HEADER_TIMEOUT = 2.0
STREAMS_PER_IP = 3
STREAMS_PER_KEY = 4
SESSIONS_PER_IP = 3
BYSTANDER = "127.0.0.2"
TOO_LARGE = HTTPStatus(413).phrase


@pytest.fixture(scope="module")
def target(database_url: str) -> Iterator[ServerHandle]:
    data_dir = Path(tempfile.mkdtemp(prefix="mailsac-http-attacks-"))
    handle = start_server(data_dir, {
        "DATABASE_URL": database_url,
        "MAILSAC_HTTP_MAX_BODY": str(MAX_BODY),
        "MAILSAC_HTTP_MAX_CONNECTIONS_PER_IP": str(PER_IP),
        "MAILSAC_HTTP_HEADER_TIMEOUT": str(HEADER_TIMEOUT),
        "MAILSAC_HTTP_BODY_TIMEOUT": "3",
        "MAILSAC_MAX_STREAMS_PER_IP": str(STREAMS_PER_IP),
        "MAILSAC_MAX_STREAMS_PER_KEY": str(STREAMS_PER_KEY),
        "MAILSAC_WEB_SESSIONS_PER_IP": str(SESSIONS_PER_IP),
    })
    yield handle
    errors = log_failures(handle.log(), levels=())  # tracebacks only
    assert stop_server(handle) == 0, handle.log()
    assert not errors, handle.log()[-5000:]
    shutil.rmtree(data_dir, ignore_errors=True)


def _port(server: ServerHandle) -> int:
    return int(server.http_url.rsplit(":", 1)[1])


def _connect(server: ServerHandle, source: str = "127.0.0.1", timeout: float = 10.0
             ) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", _port(server)))
    return sock


def _read_response(sock: socket.socket, limit: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one response with Content-Length (read until EOF else)."""
    data = b""
    deadline = time.monotonic() + limit
    while b"\r\n\r\n" not in data:
        assert time.monotonic() < deadline, data
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    length = int(headers.get("content-length", "-1"))
    while length < 0 or len(body) < length:
        assert time.monotonic() < deadline, body
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body


def _rss_kib(server: ServerHandle) -> int:
    text = Path(f"/proc/{server.proc.pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", text, re.MULTILINE)
    assert match is not None
    return int(match.group(1))


def _assert_error_json(body: bytes, status_phrase: str) -> dict[str, str]:
    payload = json.loads(body)
    assert set(payload) == {"message", "error"} and payload["error"] == status_phrase, payload
    return dict(payload)


# ---------------------------------------------------------------------------------------
# Finding 4: request bodies


def test_huge_content_length_is_refused_before_reading(target: ServerHandle) -> None:
    before = _rss_kib(target)
    for path in ("/api/spam-checks", "/session", "/api/validations/addresses"):
        with _connect(target) as sock:
            sock.sendall(f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json"
                         f"\r\nContent-Length: 1500000000\r\n\r\n".encode() + b"{" * 65536)
            status, headers, body = _read_response(sock)
            assert status == 413, (path, body)
            assert headers.get("connection") == "close"
            assert "larger than the limit" in _assert_error_json(body, TOO_LARGE)["message"]
    assert _rss_kib(target) - before < 20 * 1024  # nothing near the announced 1.5 GB


def test_endless_chunked_body_stops_at_the_cap(target: ServerHandle) -> None:
    before = _rss_kib(target)
    chunk = b"x" * 65536
    frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    for path in ("/api/spam-checks", "/session"):
        with _connect(target) as sock:
            sock.sendall(f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json"
                         "\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
            sent = 0
            with contextlib.suppress(OSError):  # the server closes once it has answered
                sock.settimeout(2.0)
                while sent < 64 * 1024 * 1024:  # far past the cap: it must stop reading
                    sock.sendall(frame)
                    sent += len(chunk)
            sock.settimeout(10.0)
            status, _, body = _read_response(sock)
            assert status == 413, (path, body)
            _assert_error_json(body, TOO_LARGE)
            assert sent < 32 * 1024 * 1024, sent  # refused long before the end
    assert _rss_kib(target) - before < 20 * 1024


def test_bodies_under_the_cap_still_work(target: ServerHandle) -> None:
    with client(target, target.key) as api:
        got = api.post("/api/spam-checks", json={"to": "a@b.test", "from": "c@d.test",
                                                  "subject": "hi", "text": "x" * 100_000})
        assert got.status_code == 200, got.text
    with client(target, None) as anon:  # no key anywhere: 401, not 413, for a small body
        assert anon.post("/api/spam-checks", json={"text": "x"}).status_code == 401


def test_deeply_nested_json_is_a_clear_400(target: ServerHandle) -> None:
    """'[' * 200k overflows the decoder's recursion: a 400 with a reason, no 500, no
    traceback in the log (and no key needed to try it)."""
    with client(target, None) as anon:
        got = anon.post("/api/validations/addresses", content=b"[" * 200_000,
                        headers={"Content-Type": "application/json"})
    assert got.status_code == 400, got.text
    assert got.json() == {"message": "the request body is nested too deeply",
                          "error": "Bad Request"}
    assert "RecursionError" not in target.log()


def test_stalled_body_gets_408(target: ServerHandle) -> None:
    with _connect(target) as sock:
        sock.sendall(b"POST /api/spam-checks HTTP/1.1\r\nHost: t\r\nContent-Type: "
                     b"application/json\r\nContent-Length: 100\r\n\r\n{")
        started = time.monotonic()
        status, _, body = _read_response(sock, limit=15)
        assert status == 408, body
        assert time.monotonic() - started >= 2.5
        _assert_error_json(body, "Request Timeout")


# ---------------------------------------------------------------------------------------
# Finding 5: connections


def _healthz_seconds(url: str) -> float:
    transport = httpx.HTTPTransport(local_address=BYSTANDER)
    with httpx.Client(transport=transport, timeout=30) as bystander:
        started = time.perf_counter()
        assert bystander.get(url + "/healthz").status_code == 200
        return time.perf_counter() - started


def _smtp_seconds(server: ServerHandle) -> float:
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=30,
                      source_address=(BYSTANDER, 0)) as smtp:
        assert smtp.ehlo()[0] == 250
    return time.perf_counter() - started


def test_half_open_flood_does_not_starve_others(target: ServerHandle) -> None:
    idle_http = statistics.median(_healthz_seconds(target.http_url) for _ in range(5))
    idle_smtp = statistics.median(_smtp_seconds(target) for _ in range(5))
    flood: list[socket.socket] = []
    try:
        for _ in range(PER_IP * 8):  # 320 sockets that never send a byte
            flood.append(_connect(target))
        http_during = max(_healthz_seconds(target.http_url) for _ in range(3))
        smtp_during = max(_smtp_seconds(target) for _ in range(3))
        # The connections over the per-IP cap were answered 503 and closed at once.
        status, headers, body = _read_response(flood[-1])
        assert status == 503 and headers.get("connection") == "close"
        assert "too many open connections" in _assert_error_json(
            body, "Service Unavailable")["message"]
        assert flood[-1].recv(1) == b""
    finally:
        for sock in flood:
            sock.close()
    assert http_during < max(2.0, 20 * idle_http), (http_during, idle_http)
    assert smtp_during < max(2.0, 20 * idle_smtp), (smtp_during, idle_smtp)


def _closed_after(sock: socket.socket, trickle: bytes, limit: float) -> float:
    """Send ``trickle`` a byte every 0.3 s until the server closes; seconds it took."""
    started = time.monotonic()
    sock.settimeout(0.3)
    for byte in trickle:
        if time.monotonic() - started > limit:
            break
        try:
            sock.sendall(bytes([byte]))
            if sock.recv(65536) == b"":
                return time.monotonic() - started
        except TimeoutError:
            continue
        except OSError:
            return time.monotonic() - started
    raise AssertionError(f"still open after {limit} s")


def test_slow_headers_are_cut_off(target: ServerHandle) -> None:
    # A request that never completes its headers, trickled so the connection never idles.
    with _connect(target) as sock:
        took = _closed_after(sock, b"GET /healthz HTTP/1.1\r\nX-Slow: " + b"a" * 200, 15)
        assert HEADER_TIMEOUT - 0.5 <= took < HEADER_TIMEOUT + 5  # clocks start apart
    # The same between keep-alive requests: one full request, then a never-ending one.
    with _connect(target) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        status, _, _ = _read_response(sock)
        assert status == 200
        took = _closed_after(sock, b"GET /healthz HTTP/1.1\r\nX-Slow: " + b"a" * 200, 15)
        assert HEADER_TIMEOUT - 0.5 <= took < HEADER_TIMEOUT + 5  # clocks start apart


def test_endless_headers_get_431_and_do_not_grow_memory(target: ServerHandle) -> None:
    # Headers sent as fast as the socket takes them, never ending: the slow-header deadline
    # is seconds away, so only the head-size bound (64 KiB) stops this.
    before = _rss_kib(target)
    oversized = metric(target, "mailsac_http_oversized_heads_total")
    with _connect(target) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
        sent, refused = 0, False
        line = b"X-Filler: " + b"a" * 1000 + b"\r\n"
        with contextlib.suppress(OSError):
            while sent < 64 * 1024 * 1024:
                sock.sendall(line * 64)
                sent += len(line) * 64
        with contextlib.suppress(OSError):
            status, _, body = _read_response(sock)
            refused = status == 431
            _assert_error_json(body, HTTPStatus(431).phrase)
        assert refused or sent < 64 * 1024 * 1024, "the server kept reading headers"
    # (socket buffers on both sides may hold a few MiB before the close is noticed)
    assert sent < 16 * 1024 * 1024, f"{sent} bytes of headers were accepted"
    assert metric(target, "mailsac_http_oversized_heads_total") == oversized + 1
    assert _rss_kib(target) - before < 32 * 1024
    # A normal request with ordinary headers still works.
    with _connect(target) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + b"b" * 8000
                     + b"\r\n\r\n")
        assert _read_response(sock)[0] == 200


# ---------------------------------------------------------------------------------------
# Streams per IP and per key


async def _wait_from(server: ServerHandle, key: str, source: str, timeout: float) -> int:
    transport = httpx.AsyncHTTPTransport(local_address=source)
    async with httpx.AsyncClient(base_url=server.http_url, transport=transport,
                                 headers={"Mailsac-Key": key}, timeout=90) as http:
        got = await http.get(f"/api/addresses/{unique_inbox()}/messages/wait",
                             params={"timeout": timeout})
        if got.status_code == 429:
            assert got.headers["retry-after"]
            _assert_error_json(got.content, "Too Many Requests")
        return got.status_code


async def _status_while_held(server: ServerHandle, key: str, sources: list[str]) -> int:
    """Hold a long wait from each of ``sources[:-1]``; once all hold their slot (each is
    then a hub subscriber), the status of one more wait from ``sources[-1]``. Then the
    holders hang up."""
    before = await asyncio.to_thread(metric, server, "mailsac_hub_subscribers")
    holders = [asyncio.create_task(_wait_from(server, key, s, 60)) for s in sources[:-1]]
    try:
        deadline = time.monotonic() + 30
        while await asyncio.to_thread(metric, server, "mailsac_hub_subscribers") \
                < before + len(holders):
            assert time.monotonic() < deadline, "the holders never all held their wait"
            assert not any(h.done() for h in holders), [h.result() for h in holders
                                                         if h.done()]
            await asyncio.sleep(0.05)
        return await _wait_from(server, key, sources[-1], 0)
    finally:
        for holder in holders:
            holder.cancel()
        await asyncio.gather(*holders, return_exceptions=True)


async def _status_once_released(server: ServerHandle, key: str, source: str) -> int:
    """A wait's status once the slots of hung-up waits came free (asked again meanwhile)."""
    deadline = time.monotonic() + 10
    while (status := await _wait_from(server, key, source, 0)) == 429 \
            and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    return status


def test_long_poll_waits_are_capped_per_ip_and_per_key(target: ServerHandle) -> None:
    _, key = new_account(target)
    assert asyncio.run(_status_while_held(
        target, key, ["127.0.0.1"] * (STREAMS_PER_IP + 1))) == 429
    # Waits hung up by their client free their slots at once, not at their 60 s timeout.
    assert asyncio.run(_status_once_released(target, key, "127.0.0.1")) == 204
    sources = [f"127.0.0.{10 + i}" for i in range(STREAMS_PER_KEY + 1)]  # distinct IPs
    assert asyncio.run(_status_while_held(target, key, sources)) == 429
    assert asyncio.run(_status_once_released(target, key, sources[-1])) == 204


def test_anonymous_sse_streams_are_capped_per_ip(target: ServerHandle) -> None:
    inbox = unique_inbox()
    transport = httpx.HTTPTransport(local_address="127.0.0.3")
    with httpx.Client(base_url=target.http_url, transport=transport, timeout=10) as http:
        with contextlib.ExitStack() as streams:
            readers = []  # kept referenced: a collected iterator would close its stream
            for _ in range(STREAMS_PER_IP):
                held = streams.enter_context(http.stream("GET", f"/inbox/{inbox}/events"))
                assert held.status_code == 200
                readers.append(held.iter_bytes())
                assert next(readers[-1]).startswith(b"retry:")
            over = http.get(f"/inbox/{inbox}/events")
            assert over.status_code == 429
            assert "per client IP" in _assert_error_json(over.content,
                                                         "Too Many Requests")["message"]
        # Closed streams are released (the server notices the disconnect).
        deadline = time.monotonic() + 10
        while True:
            with http.stream("GET", f"/inbox/{inbox}/events") as again:
                if again.status_code == 200:
                    break
            assert time.monotonic() < deadline, "streams were never released"
            time.sleep(0.2)


def test_websocket_feeds_are_capped_per_ip(target: ServerHandle) -> None:
    _, key = new_account(target)
    address = unique_inbox()
    with client(target, key) as api:
        assert api.post(f"/api/addresses/{address}", json={"enablews": True}).status_code == 200
    url = target.http_url.replace("http://", "ws://") + f"/incoming-messages?key={key}" \
        f"&addresses={address}"

    async def scenario() -> tuple[dict[str, object], int | None]:
        async with contextlib.AsyncExitStack() as stack:
            for _ in range(STREAMS_PER_IP):
                ws = await stack.enter_async_context(websockets.connect(url))
                assert json.loads(await ws.recv())["status"] == 200
            async with websockets.connect(url) as over:
                frame = json.loads(await over.recv())
                with contextlib.suppress(websockets.ConnectionClosed):
                    await over.recv()
                return frame, over.close_code

    frame, code = asyncio.run(scenario())
    assert frame["status"] == 429 and "per client IP" in str(frame["msg"])
    assert code == 4429


def test_websocket_drops_clients_that_send_big_frames(target: ServerHandle) -> None:
    _, key = new_account(target)
    address = unique_inbox()
    with client(target, key) as api:
        assert api.post(f"/api/addresses/{address}", json={"enablews": True}).status_code == 200
    url = target.http_url.replace("http://", "ws://") + f"/incoming-messages?key={key}" \
        f"&addresses={address}"

    async def scenario() -> int | None:
        async with websockets.connect(url) as ws:
            assert json.loads(await ws.recv())["status"] == 200
            await ws.send(b"x" * (1024 * 1024))  # the feed never needs client data
            with contextlib.suppress(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            return ws.close_code

    assert asyncio.run(scenario()) == 1009  # "message too big"


# ---------------------------------------------------------------------------------------
# Finding 18 (part): the viewer's key sessions


def _sign_in(server: ServerHandle, key: str, source: str) -> httpx.Response:
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(base_url=server.http_url, transport=transport, timeout=10) as http:
        return http.post("/session", data={"key": key, "next": "/"})


def test_session_flood_refuses_new_sessions_without_logging_others_out(
        target: ServerHandle) -> None:
    _, key = new_account(target)
    victim = _sign_in(target, key, "127.0.0.4")
    assert victim.status_code == 303
    cookie = victim.cookies["mailsac_viewer"]
    statuses = [_sign_in(target, key, "127.0.0.5").status_code
                for _ in range(SESSIONS_PER_IP + 2)]
    assert statuses == [303] * SESSIONS_PER_IP + [429, 429]
    refused = _sign_in(target, key, "127.0.0.5")
    assert refused.status_code == 429 and "Too many sessions" in refused.text
    with httpx.Client(base_url=target.http_url, timeout=10,
                      cookies={"mailsac_viewer": cookie}) as http:
        assert "Forget key" in http.get("/").text  # the victim is still signed in


def test_slow_clients_do_not_leak_slots(target: ServerHandle) -> None:
    """After every attack above, the per-IP slots are free again: a burst up to the cap works."""
    deadline = time.monotonic() + HEADER_TIMEOUT + 10
    while True:
        socks = []
        try:
            for _ in range(PER_IP - 2):
                socks.append(_connect(target))
            with socks[-1] as probe:
                probe.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
                status = _read_response(probe)[0]
        finally:
            for sock in socks:
                sock.close()
        if status == 200:
            return
        assert time.monotonic() < deadline, status
        time.sleep(0.5)



def test_session_table_expires_idle_sessions_and_refuses_when_full() -> None:
    from mailsac.api.limits import HttpLimits
    from mailsac.web.security import SessionRefused, SessionTable

    now = [0.0]
    table = SessionTable(clock=lambda: now[0])
    limits = HttpLimits(web_sessions=3, web_sessions_per_ip=2, web_session_idle=100)
    a = table.create("k_a", "10.0.0.1", limits)
    b = table.create("k_b", "10.0.0.2", limits)
    table.create("k_a", "10.0.0.1", limits)
    with pytest.raises(SessionRefused):  # the IP's share is used up
        table.create("k_a", "10.0.0.1", limits)
    assert len(table) == 3 and table.sessions_of("10.0.0.1") == 2
    with pytest.raises(SessionRefused):  # full: refused, nobody else is evicted
        table.create("k_c", "10.0.0.3", limits)
    assert table.get(a) is not None and table.get(b) is not None
    now[0] = 60.0
    assert table.get(a) is not None  # used: its idle clock restarts
    now[0] = 150.0  # b and the second 10.0.0.1 session are idle past 100 s
    c = table.create("k_c", "10.0.0.3", limits)  # expiring them made room
    assert table.get(b) is None and table.get(a) is not None and table.get(c) is not None
    assert len(table) == 2 and table.sessions_of("10.0.0.2") == 0
    table.drop(a)
    assert table.sessions_of("10.0.0.1") == 0
