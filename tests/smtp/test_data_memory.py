"""Bounded memory for in-flight DATA and bounded slot holding, against real servers.

RSS is read from /proc/<pid>/status of the server process (the analysis workers are
separate processes). Budgets are stated relative to the bytes the attack sends.
"""

from __future__ import annotations

import json
import shutil
import socket
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mailsac.smtp import replies
from tests.helpers import (
    Receiver,
    ServerHandle,
    client,
    new_account,
    start_server,
    stop_server,
    unique_inbox,
)
from tests.smtp.test_dialogs import Dialog

MIB = 1024 * 1024


def _rss_mib(server: ServerHandle) -> float:
    for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _temp_files(server: ServerHandle) -> list[Path]:
    return list((server.data_dir / "blobs").glob("*/*/*.tmp"))


def _open_data(server: ServerHandle, to: str | None = None) -> Dialog:
    """A session that has been answered 354 to DATA."""
    dialog = Dialog(server.smtp_port)
    assert dialog.reply()[0] == 220
    for line, code in (("EHLO c.test", 250), ("MAIL FROM:<a@example.org>", 250),
                       (f"RCPT TO:<{to or unique_inbox()}>", 250), ("DATA", 354)):
        got = dialog.cmd(line)
        assert got[0] == code, got
    return dialog


def _healthz(http: httpx.Client) -> float:
    started = time.perf_counter()
    assert http.get("/healthz").status_code == 200
    return time.perf_counter() - started


def _body(size: int) -> bytes:
    line = b"y" * 998 + b"\r\n"
    return b"Subject: held\r\n\r\n" + line * (size // len(line))


@pytest.fixture(scope="module")
def roomy(database_url: str) -> Iterator[ServerHandle]:
    data_dir = Path(tempfile.mkdtemp(prefix="mailsac-datamem-"))
    handle = start_server(data_dir, {
        "DATABASE_URL": database_url, "MAILSAC_MAX_CONNECTIONS_PER_IP": "500",
        "MAILSAC_MAX_CONNECTIONS_PER_NETWORK": "500",
        "MAILSAC_MAX_CONNECTIONS_PER_SUPERNET": "500",
        "MAILSAC_WEBHOOK_ALLOW_PRIVATE": "true"})  # the webhook receiver is on loopback
    yield handle
    assert stop_server(handle) == 0, handle.log()
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.mark.slow
def test_sessions_withholding_the_final_dot_do_not_grow_memory(roomy: ServerHandle) -> None:
    """60 sessions each send 2.4 MB and never the final dot. Before the fix each held its
    bytes in memory (~+150 MiB here); now each holds at most ~0.3 MiB."""
    sessions, size = 60, 2_400_000
    body = _body(size)
    with httpx.Client(base_url=roomy.http_url, timeout=30) as http:
        idle = statistics.median(_healthz(http) for _ in range(7))
        before = _rss_mib(roomy)
        held: list[Dialog] = []
        slowest = 0.0
        try:
            for i in range(sessions):
                dialog = _open_data(roomy)
                held.append(dialog)
                dialog.send(body)
                if i % 10 == 9:
                    slowest = max(slowest, _healthz(http))
            # Everything sent has arrived once the server answers a command behind it.
            probe = _open_data(roomy)
            probe.send(b"Subject: probe\r\n\r\nx\r\n.\r\n")
            assert probe.reply()[0] == 250
            probe.close()
            grown = _rss_mib(roomy) - before
            sent = sessions * size / MIB
            assert grown < 0.3 * sent, f"RSS grew {grown:.0f} MiB for {sent:.0f} MiB withheld"
            deadline = time.monotonic() + 30  # sessions' last bytes may still be spooling
            while len(_temp_files(roomy)) < sessions and time.monotonic() < deadline:
                time.sleep(0.1)
            assert len(_temp_files(roomy)) >= sessions  # the bytes are on disk instead
            slowest = max(slowest, _healthz(http))
            assert slowest < max(2.0, 20 * idle)
        finally:
            for dialog in held:
                dialog.close()
    deadline = time.monotonic() + 30
    while _temp_files(roomy) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _temp_files(roomy) == []  # disconnects mid-DATA leave no temp file


def test_disconnect_mid_data_removes_the_temp_file(roomy: ServerHandle) -> None:
    dialog = _open_data(roomy)
    dialog.send(_body(1_000_000))
    deadline = time.monotonic() + 10
    while not _temp_files(roomy) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _temp_files(roomy), "a 1 MB message should be spooled to a temp file"
    dialog.close()
    deadline = time.monotonic() + 10
    while _temp_files(roomy) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _temp_files(roomy) == []


def test_spooled_message_is_stored_byte_exact(roomy: ServerHandle) -> None:
    to = unique_inbox()
    content = b"Subject: spooled\r\nReply-To: r@reply.test\r\n\r\n" + (
        b".dot line\r\n" + b"z" * 900 + b"\r\n") * 1500
    stuffed = content.replace(b"\r\n.", b"\r\n..")
    dialog = _open_data(roomy, to)
    try:
        for i in range(0, len(stuffed), 7001):  # odd-sized pieces: dots split across reads
            dialog.send(stuffed[i:i + 7001])
        code, text = dialog.cmd(b".\r\n")
        assert code == 250, text
    finally:
        dialog.close()
    with httpx.Client(base_url=roomy.http_url, headers={"Mailsac-Key": roomy.key},
                      timeout=30) as api:
        (message,) = api.get(f"/api/addresses/{to}/messages").json()
        raw = api.get(f"/api/raw/{to}/{message['_id']}").content
        assert message["size"] == len(raw)
    assert raw.startswith(b"Received: from c.test ([127.0.0.1])")
    assert raw.endswith(b"\r\n" + content)


def test_spooled_message_reaches_webhook_and_forward_copy(roomy: ServerHandle) -> None:
    """Large mail is not in memory: webhook payloads and forwarded copies read the blob."""
    receiver = Receiver()
    _, key = new_account(roomy)
    address, target = unique_inbox(), unique_inbox()
    content = b"Subject: big hook\r\n\r\n" + (b"w" * 998 + b"\r\n") * 600  # 600 KB
    try:
        with client(roomy, key) as api:
            assert api.post(f"/api/addresses/{address}", json={
                "webhook": receiver.url + "/hook", "forward": target}).status_code == 200
            dialog = _open_data(roomy, address)
            try:
                assert dialog.cmd(content + b".\r\n")[0] == 250
            finally:
                dialog.close()
            (_, _, body), = receiver.wait_for(1)
            (message,) = api.get(f"/api/addresses/{address}/messages").json()
            stored = api.get(f"/api/raw/{address}/{message['_id']}").content
            (copy,) = api.get(f"/api/addresses/{target}/messages").json()
            copied = api.get(f"/api/raw/{target}/{copy['_id']}").content
    finally:
        receiver.close()
    assert stored.endswith(b"\r\n" + content)
    assert json.loads(body)["raw"].encode() == stored
    assert copied.endswith(f"X-Mailsac-Forwarded-From: {address}\r\n".encode() + content)
    assert copied.startswith(b"Received: ") and copy["size"] == len(copied)


@pytest.fixture(scope="module")
def tight(database_url: str) -> Iterator[ServerHandle]:
    data_dir = Path(tempfile.mkdtemp(prefix="mailsac-datamem-tight-"))
    handle = start_server(data_dir, {"DATABASE_URL": database_url,
                                     "MAILSAC_DATA_MEMORY_BUDGET": "262144"})
    yield handle
    assert stop_server(handle) == 0, handle.log()
    shutil.rmtree(data_dir, ignore_errors=True)


def test_data_over_the_memory_budget_gets_451(tight: ServerHandle) -> None:
    first = _open_data(tight)  # holds most of the 256 KiB budget while it is in DATA
    second = Dialog(tight.smtp_port)
    try:
        first.send(b"Subject: first\r\n\r\n" + b"x" * 100_000)
        assert second.reply()[0] == 220
        for line in ("EHLO c.test", "MAIL FROM:<a@example.org>", f"RCPT TO:<{unique_inbox()}>"):
            assert second.cmd(line)[0] == 250
        code, text = second.cmd("DATA")
        reply = replies.S451_DATA_MEMORY
        assert text.startswith(f"{reply.code} {reply.enhanced} "), text
        assert "try again" in text
        # The session goes on; once the first message is in, DATA works again.
        assert first.cmd(b"\r\n.\r\n")[0] == 250
        assert second.cmd("DATA")[0] == 354
        big = _body(1_000_000)  # larger than the whole budget: streamed to disk
        assert second.cmd(big + b".\r\n")[0] == 250
        assert second.cmd("RSET")[0] == 250
    finally:
        first.close()
        second.close()


@pytest.fixture(scope="module")
def short(database_url: str) -> Iterator[ServerHandle]:
    data_dir = Path(tempfile.mkdtemp(prefix="mailsac-datamem-short-"))
    handle = start_server(data_dir, {
        "DATABASE_URL": database_url, "MAILSAC_MAX_CONNECTIONS": "4",
        "MAILSAC_PRESSURE_TIMEOUT": "1.5", "MAILSAC_SMTP_MAX_SESSION_SECONDS": "6",
        "MAILSAC_SMTP_PRESSURE_SESSION_SECONDS": "6"})
    yield handle
    assert stop_server(handle) == 0, handle.log()
    shutil.rmtree(data_dir, ignore_errors=True)


def _noop_until_closed(dialog: Dialog, limit: float) -> tuple[float, str]:
    """NOOP every 0.5 s; return (seconds until the server closed, its last reply)."""
    started = time.monotonic()
    last = ""
    while time.monotonic() - started < limit:
        try:
            code, last = dialog.cmd("NOOP")
        except (ConnectionError, OSError):
            return time.monotonic() - started, last
        if code != 250:
            return time.monotonic() - started, last
        time.sleep(0.5)
    return time.monotonic() - started, last


@pytest.mark.slow
def test_a_session_has_an_absolute_lifetime(short: ServerHandle) -> None:
    connected = time.monotonic()  # the server's clock starts at the connection
    dialog = Dialog(short.smtp_port)
    try:
        assert dialog.reply()[0] == 220
        assert dialog.cmd("EHLO c.test")[0] == 250
        _, last = _noop_until_closed(dialog, limit=20)
        lived = time.monotonic() - connected
    finally:
        dialog.close()
    assert 5.0 <= lived < 15, lived  # NOOPs kept it (no pressure) until the lifetime
    assert last.startswith("421 4.4.2") and "lifetime" in last, last


@pytest.mark.slow
def test_noop_does_not_keep_a_session_alive_under_pressure(short: ServerHandle) -> None:
    dialog = Dialog(short.smtp_port)
    others: list[socket.socket] = []
    try:
        assert dialog.reply()[0] == 220
        assert dialog.cmd("EHLO c.test")[0] == 250
        lived, _ = _noop_until_closed(dialog, limit=2.5)
        assert lived >= 2.5  # 1 of 4 slots: no pressure, NOOPs are fine
        for _ in range(2):  # 3 of 4 slots in use: pressure
            sock = socket.create_connection(("127.0.0.1", short.smtp_port), timeout=10)
            sock.makefile("rb").readline()
            others.append(sock)
        lived, last = _noop_until_closed(dialog, limit=10)
        assert lived < 10, lived  # the idle clock ran on through the NOOPs (1.5 s, not 20)
    finally:
        dialog.close()
        for sock in others:
            sock.close()
