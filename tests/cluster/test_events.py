"""Cross-node real-time: mail stored by one node reaches WebSocket, long-poll and SSE
subscribers of the others, and deletions propagate the same way (LISTEN/NOTIFY)."""

from __future__ import annotations

import asyncio
import json
import queue
import threading
import time
from collections.abc import Callable
from urllib.parse import quote

import asyncpg
import httpx
import websockets

from mailsac.storage.db import asyncpg_dsn
from mailsac.storage.notify import CHANNEL, MAX_PAYLOAD, parse
from tests.cluster.conftest import StartCluster
from tests.helpers import (
    ADMIN_KEY,
    ServerHandle,
    client,
    deliver,
    metric,
    new_account,
    unique_inbox,
)

PATIENCE = 60.0  # generous: a loaded machine is slow, never wrong


def _until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + PATIENCE
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _ws_url(node: ServerHandle, key: str, address: str) -> str:
    return (node.http_url.replace("http://", "ws://")
            + f"/incoming-messages?key={key}&addresses={quote(address, safe='@')}")


async def _listen(node: ServerHandle, key: str, address: str) -> websockets.ClientConnection:
    """A WebSocket on ``node`` once its directory knows the address (a NOTIFY away)."""
    deadline = time.monotonic() + PATIENCE
    while True:
        ws = await websockets.connect(_ws_url(node, key, address))
        hello = json.loads(await ws.recv())
        if hello["status"] == 200:
            return ws
        await ws.close()
        assert time.monotonic() < deadline, f"WebSocket refused: {hello}"
        await asyncio.sleep(0.1)


def test_mail_to_a_reaches_a_websocket_on_c_and_a_long_poll_on_b(
        cluster: StartCluster, shared_store: dict[str, str]) -> None:
    a, b, c = cluster(3, shared_store)
    _, key = new_account(a)
    address = unique_inbox()
    with client(a, key) as api:
        assert api.post(f"/api/addresses/{address}", json={"enablews": True}).status_code == 200
    waited: dict[str, httpx.Response] = {}

    def long_poll() -> None:
        with client(b, key) as api_b:
            waited["answer"] = api_b.get(f"/api/addresses/{address}/messages/wait",
                                         params={"timeout": PATIENCE})

    async def scenario() -> dict[str, object]:
        ws = await _listen(c, key, address)
        try:
            poller = threading.Thread(target=long_poll)
            poller.start()
            # The waiter has subscribed on B (and found nothing yet): only B's hub can
            # now tell it, and only the notification from A's commit can tell B's hub.
            await asyncio.to_thread(_until, lambda: metric(b, "mailsac_hub_subscribers") >= 1,
                                    "the long-poll waiter on B")
            await asyncio.to_thread(deliver, a, address, subject="across nodes")
            frame: dict[str, object] = json.loads(await asyncio.wait_for(ws.recv(), PATIENCE))
            await asyncio.to_thread(poller.join, PATIENCE)
            return frame
        finally:
            await ws.close()

    frame = asyncio.run(scenario())
    email = frame["email"]
    assert isinstance(email, dict)
    assert email["subject"] == "across nodes" and email["inbox"] == address
    assert "Subject: across nodes" in email["raw"]  # C read the body A stored
    answer = waited["answer"]
    assert answer.status_code == 200 and answer.json()["subject"] == "across nodes"
    for node in (b, c):
        assert metric(node, "mailsac_cluster_events_published_total") >= 1
    assert metric(a, "mailsac_cluster_events_published_total") == 0  # its own: skipped


class _Sse:
    """Reads ``GET /inbox/{inbox}/events`` of a node in a thread, line by line."""

    def __init__(self, node: ServerHandle, inbox: str) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.ready = threading.Event()
        self._client = httpx.Client(base_url=node.http_url, timeout=PATIENCE * 2)
        self._thread = threading.Thread(target=self._read, args=(inbox,), daemon=True)
        self._thread.start()
        assert self.ready.wait(PATIENCE), "the event stream did not open"

    def _read(self, inbox: str) -> None:
        try:
            with self._client.stream("GET", f"/inbox/{inbox}/events") as events:
                assert events.status_code == 200
                for line in events.iter_lines():
                    if line.startswith("retry:"):
                        self.ready.set()  # subscribed: nothing can be missed from now
                    self.lines.put(line)
        except httpx.HTTPError:
            return

    def next_event(self) -> tuple[str, str]:
        """The next (event, data) pair, skipping keep-alive comments."""
        event = ""
        deadline = time.monotonic() + PATIENCE
        while True:
            line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            if line.startswith("event:"):
                event = line.partition(":")[2].strip()
            elif line.startswith("data:") and event:
                return event, line.partition(":")[2].strip()

    def close(self) -> None:
        self._client.close()


def test_sse_hears_mail_stored_and_deleted_through_other_nodes(
        cluster: StartCluster) -> None:
    a, b = cluster(2)
    inbox = unique_inbox()
    stream = _Sse(a, inbox)
    try:
        deliver(b, inbox, subject="via B")
        event, data = stream.next_event()
        assert event == "message"
        message_id = json.loads(data)["id"]
        with client(b, ADMIN_KEY) as api_b:
            gone = api_b.delete(f"/api/addresses/{inbox}/messages/{message_id}")
            assert gone.status_code == 200
        assert stream.next_event()[0] == "changed"
    finally:
        stream.close()


def test_one_statement_is_announced_in_payloads_below_the_limit(database_url: str) -> None:
    """Many rows in one statement: every id announced once, each payload < 8000 bytes."""
    inbox = unique_inbox()

    async def scenario() -> tuple[list[str], int]:
        payloads: list[str] = []
        listener = await asyncpg.connect(asyncpg_dsn(database_url))
        writer = await asyncpg.connect(asyncpg_dsn(database_url))
        try:
            await listener.add_listener(CHANNEL, lambda *args: payloads.append(args[3]))
            await writer.execute(
                "INSERT INTO messages (id, inbox, original_inbox, domain, received, size, "
                "blob_key) SELECT 'bulk-' || i || '-' || $1, $1, $1, 'example.test', now(), 1, "
                "'nonexistent' FROM generate_series(1, 3000) AS i", inbox)
            await writer.execute("DELETE FROM messages WHERE inbox = $1", inbox)
            deadline = time.monotonic() + PATIENCE
            while time.monotonic() < deadline:
                changes = [c for p in payloads if (c := parse(p)) is not None
                           and any(item.inbox == inbox for item in c.items)]
                if sum(len(c.items) for c in changes) >= 6000:
                    break
                await asyncio.sleep(0.05)
            return payloads, max(len(p.encode()) for p in payloads)
        finally:
            await listener.close()
            await writer.close()

    payloads, longest = asyncio.run(scenario())
    changes = [c for p in payloads if (c := parse(p)) is not None]
    mine = [c for c in changes if any(item.inbox == inbox for item in c.items)]
    stored = [item.id for c in mine if c.stored for item in c.items]
    deleted = [item.id for c in mine if not c.stored for item in c.items]
    assert len(stored) == len(set(stored)) == 3000
    assert sorted(deleted) == sorted(stored)
    assert len(mine) > 2  # it was split
    assert longest < MAX_PAYLOAD
    assert all(c.node == "" for c in mine)  # a connection without a node id
