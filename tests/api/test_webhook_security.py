"""Webhook security against a real server: the SSRF guard (default settings), per-account
fairness against a tarpit receiver, and secrets kept out of the server log."""

from __future__ import annotations

import asyncio
import shutil
import socket
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import websockets

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

REFUSED = "refused: destination not allowed"


@pytest.fixture(scope="module")
def guarded(database_url: str) -> Iterator[ServerHandle]:
    """A server with the default egress policy (private destinations refused)."""
    data_dir = Path(tempfile.mkdtemp(prefix="mailsac-test-egress-"))
    # On a database of its own: on the shared one, another server of the session (which
    # allows private destinations) could claim and send this server's deliveries.
    handle = start_server(data_dir, {"DATABASE_URL": database_of_its_own(database_url),
                                     "MAILSAC_WEBHOOK_ALLOW_PRIVATE": "false"})
    yield handle
    assert stop_server(handle) == 0, handle.log()
    shutil.rmtree(data_dir, ignore_errors=True)


def _wait(predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


_HELD: list[socket.socket] = []


def _closed_port() -> int:
    """A loopback port that refuses connections for the rest of the session: the socket
    stays bound (never listening), so no other socket can take the port meanwhile."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    _HELD.append(probe)
    return int(probe.getsockname()[1])


class Tarpit:
    """A local receiver that accepts connections and never answers (bounded)."""

    def __init__(self, limit: int = 64) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(limit)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.held: list[socket.socket] = []
        self.limit = limit
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while len(self.held) < self.limit:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


def test_webhooks_to_loopback_are_refused_before_any_connection(guarded: ServerHandle) -> None:
    receiver = Receiver()
    port = receiver.url.rsplit(":", 1)[1]
    targets = [receiver.url + "/direct", f"http://localhost:{port}/name",
               f"http://[::ffff:127.0.0.1]:{port}/mapped", f"http://2130706433:{port}/decimal",
               f"http://127.0.0.1:{_closed_port()}/closed"]
    _, key = new_account(guarded)
    addresses = [unique_inbox() for _ in targets]
    try:
        with client(guarded, key) as api:
            for address, url in zip(addresses, targets, strict=True):
                assert api.post(f"/api/addresses/{address}", json={"webhook": url}).is_success
            slack = unique_inbox()
            api.post(f"/api/addresses/{slack}",
                     json={"webhookSlack": receiver.url + "/services/T0/B0/slack"})
            for address in [*addresses, slack]:
                deliver(guarded, address, subject="probe")

            def history(address: str) -> list[dict[str, object]]:
                return list(api.get(f"/api/addresses/{address}/webhook-deliveries").json())

            assert _wait(lambda: all(
                history(a) and history(a)[0]["status"] == "failed" for a in [*addresses, slack]))
            rows = [history(a)[0] for a in [*addresses, slack]]
        # The open port and the closed one look exactly alike: nothing to scan with.
        assert {(r["lastError"], r["lastStatusCode"], r["attempts"]) for r in rows} == {
            (REFUSED, None, 1)}
        time.sleep(0.3)
        assert receiver.requests == []  # no connection ever reached the receiver
        assert "127.0.0.1" not in {str(r["lastError"]) for r in rows}
    finally:
        receiver.close()


def _latency(server: ServerHandle, receiver: Receiver, address: str) -> float:
    seen = len(receiver.requests)
    started = time.monotonic()
    deliver(server, address, subject="timed")
    receiver.wait_for(seen + 1, timeout=60)
    assert len(receiver.requests) > seen
    return time.monotonic() - started


@pytest.mark.slow
def test_a_tarpit_receiver_does_not_delay_other_accounts(server: ServerHandle) -> None:
    """The session server allows private targets (the receivers are on 127.0.0.1)."""
    tarpit, fast = Tarpit(), Receiver()
    _, key_a = new_account(server, "tarpit")
    _, key_b = new_account(server, "fast")
    slow_box, fast_box = unique_inbox(), unique_inbox()
    try:
        with client(server, key_a) as api_a, client(server, key_b) as api_b:
            api_a.post(f"/api/addresses/{slow_box}", json={"webhook": tarpit.url + "/t"})
            api_b.post(f"/api/addresses/{fast_box}", json={"webhook": fast.url + "/f"})
            idle = statistics.median(_latency(server, fast, fast_box) for _ in range(3))
            for n in range(16):  # more than the old global pool of 8 senders
                deliver(server, slow_box, subject=f"tarpit {n}")
            assert _wait(lambda: len(tarpit.held) >= 4, 20)
            during = [_latency(server, fast, fast_box) for _ in range(3)]
            bound = max(5.0, 5 * idle)  # blocked behind the tarpit would be its 10 s timeout
            assert max(during) < bound, (during, idle)
            stuck = api_a.get(f"/api/addresses/{slow_box}/webhook-deliveries").json()
            assert not any(d["status"] == "delivered" for d in stuck)
            assert len(tarpit.held) <= 4  # per-account limit: the tarpit holds only A's slots
    finally:
        tarpit.close()
        fast.close()


def test_keys_and_webhook_secrets_stay_out_of_the_log(guarded: ServerHandle,
                                                      server: ServerHandle) -> None:
    secret_path = f"services/T0/B0/{uuid.uuid4().hex}"
    receiver = Receiver()
    try:
        for handle in (guarded, server):
            _, key = new_account(handle, "logs")
            address = unique_inbox()
            with client(handle, key) as api:
                api.post(f"/api/addresses/{address}", json={
                    "enablews": True, "webhookSlack": f"{receiver.url}/{secret_path}",
                    "webhook": f"http://user:pw-{secret_path[-8:]}@127.0.0.1:1/h?token=tok42"})
                ws = (handle.http_url.replace("http://", "ws://")
                      + f"/incoming-messages?key={key}&addresses={quote(address, safe='@')}")

                async def scenario(url: str = ws) -> None:
                    async with websockets.connect(url) as sock:
                        await sock.recv()

                asyncio.run(scenario())
                deliver(handle, address, subject="log me")
                api.get(f"/api/addresses/{address}/messages", params={"_mailsacKey": key})
                assert _wait(lambda a=api, x=address: all(
                    d["status"] != "pending" or d["attempts"] >= 1
                    for d in a.get(f"/api/addresses/{x}/webhook-deliveries").json()))
            time.sleep(0.5)
            log = handle.log()
            assert "WebSocket" in log  # the line exists; only the key is masked
            for secret in (key, secret_path, secret_path[-8:], "tok42"):
                assert secret not in log, secret
        assert receiver.wait_for(1, 10)  # the allow-private server did post to Slack
    finally:
        receiver.close()


def test_breaker_pauses_a_dead_host_without_using_up_attempts(database_url: str) -> None:
    # A database of its own: every node on a database dispatches its webhooks (one
    # service), so the session's other servers, without this breaker, would send them too.
    url = database_of_its_own(database_url, "mailsac_breaker")
    data_dir = Path(tempfile.mkdtemp(prefix="mailsac-test-breaker-"))
    handle = start_server(data_dir, {
        "DATABASE_URL": url, "MAILSAC_WEBHOOK_BREAKER_FAILURES": "2",
        "MAILSAC_WEBHOOK_BREAKER_COOLDOWN": "60", "MAILSAC_WEBHOOK_PER_ACCOUNT": "1"})
    try:
        _, key = new_account(handle, "breaker")
        address = unique_inbox()
        with client(handle, key) as api:
            api.post(f"/api/addresses/{address}",
                     json={"webhook": f"http://127.0.0.1:{_closed_port()}/dead"})
            for n in range(6):
                deliver(handle, address, subject=f"dead {n}")

            def rows() -> list[dict[str, object]]:
                return list(api.get(f"/api/addresses/{address}/webhook-deliveries").json())

            # Without a breaker each delivery would retry every 0.2, 0.4, 0.8 s ... here.
            assert _wait(lambda: len(rows()) == 6 and sum(
                int(str(r["attempts"])) for r in rows()) >= 2, 20)
            time.sleep(3.0)
            final = rows()
        attempts = sum(int(str(r["attempts"])) for r in final)
        assert attempts <= 4, [(r["attempts"], r["lastError"], r["status"]) for r in final]
        assert all(r["status"] == "pending" for r in final)
        untouched = [r for r in final if r["attempts"] == 0]
        assert len(untouched) >= 2  # rescheduled after the cool-down, no attempt spent
        assert {r["lastError"] for r in final if r["attempts"]} == {"connect failed"}
    finally:
        assert stop_server(handle) == 0, handle.log()
        shutil.rmtree(data_dir, ignore_errors=True)
