"""``bench --cluster N``: cross-node notification latency over N nodes on one database.

Spawns N local ``mailsac serve`` nodes sharing the first one's embedded PostgreSQL and
blob directory, reserves a WebSocket-enabled address, opens its feed on the *last* node
(C) and on the first (A, the local path for comparison), and sends probe messages to A
over SMTP one at a time. Latency is from A's ``250`` (sent right after the metadata
commit) to the frame on each WebSocket: p50/p99, idle and while a background flood of
other mail keeps A's writer batching.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
import uuid
from email.message import EmailMessage
from typing import Any
from urllib.parse import quote

import aiosmtplib
import httpx
import websockets

from mailsac.bench.spawn import SpawnedServer
from mailsac.bench.stats import percentile


def probe_message(to: str, subject: str, body: str = "probe") -> bytes:
    """A small plain-text message with a unique Message-ID (the benches' probes)."""
    msg = EmailMessage()
    msg["From"] = "bench@example.org"
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{uuid.uuid4().hex}@example.org>"
    msg.set_content(body)
    return msg.as_bytes()


async def _send(port: int, to: str, data: bytes) -> None:
    await aiosmtplib.send(data, sender="bench@example.org", recipients=[to],
                          hostname="127.0.0.1", port=port, timeout=60,
                          start_tls=False)


async def _flood(port: int, stop: asyncio.Event, sessions: int, sent: list[int]) -> None:
    async def one_session() -> None:
        while not stop.is_set():
            to = f"flood{secrets.token_hex(3)}@bench.test"
            try:
                await _send(port, to, probe_message(to, "flood", "x" * 2000))
                sent[0] += 1
            except (aiosmtplib.SMTPException, OSError):
                await asyncio.sleep(0.1)

    await asyncio.gather(*(one_session() for _ in range(sessions)))


async def _feed(node: SpawnedServer, key: str, address: str) -> Any:
    url = (node.http_url.replace("http://", "ws://")
           + f"/incoming-messages?key={key}&addresses={quote(address, safe='@')}")
    deadline = time.monotonic() + 60
    while True:  # the node's directory learns the address a NOTIFY later
        ws = await websockets.connect(url, max_size=None)
        if json.loads(await ws.recv())["status"] == 200:
            return ws
        await ws.close()
        if time.monotonic() > deadline:
            raise RuntimeError("the WebSocket feed was refused")
        await asyncio.sleep(0.1)


async def _probe(a: SpawnedServer, feeds: dict[str, Any], address: str,
                 count: int) -> dict[str, list[float]]:
    latencies: dict[str, list[float]] = {name: [] for name in feeds}
    for i in range(count):
        subject = f"probe-{i}-{secrets.token_hex(4)}"
        await _send(a.smtp_port, address, probe_message(address, subject))
        acked = time.perf_counter()
        for name, ws in feeds.items():
            while True:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 60))
                if frame.get("email", {}).get("subject") == subject:
                    latencies[name].append((time.perf_counter() - acked) * 1000)
                    break
    return latencies


def _summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"n": len(ordered), "p50_ms": round(percentile(ordered, 50), 2),
            "p99_ms": round(percentile(ordered, 99), 2), "max_ms": round(ordered[-1], 2)}


async def run_cluster(nodes: int = 3, probes: int = 200, flood_sessions: int = 8,
                      keep: bool = False, server_env: dict[str, str] | None = None
                      ) -> dict[str, Any]:
    """Start ``nodes`` nodes (with ``server_env`` added to each one's environment),
    measure, stop them; return the report."""
    env = dict(server_env or {})
    first = SpawnedServer(keep=keep, extra_env=env)
    servers = [first]
    try:
        await asyncio.to_thread(first.start)
        url = first.database_url()
        if url is None:
            raise RuntimeError("the first node's embedded PostgreSQL is not running")
        shared = {**env, "DATABASE_URL": url,
                  "MAILSAC_BLOB_DIR": str(first.data_dir / "blobs")}
        others = [SpawnedServer(keep=keep, key=first.key, extra_env=shared)
                  for _ in range(nodes - 1)]
        servers += others
        await asyncio.gather(*(asyncio.to_thread(s.start) for s in others))
        async with httpx.AsyncClient(base_url=first.http_url, timeout=30,
                                     headers={"Mailsac-Key": first.key}) as api:
            account = f"bench-{secrets.token_hex(4)}"
            made = await api.post("/api/admin/accounts", json={"id": account})
            made.raise_for_status()
            key = (await api.post(f"/api/admin/accounts/{account}/keys",
                                  json={"name": "bench"})).json()["key"]
        address = f"probe{secrets.token_hex(4)}@bench.test"
        async with httpx.AsyncClient(base_url=first.http_url, timeout=30,
                                     headers={"Mailsac-Key": key}) as api:
            (await api.post(f"/api/addresses/{address}", json={"enablews": True})
             ).raise_for_status()
        feeds = {"same_node": await _feed(first, key, address),
                 "cross_node": await _feed(servers[-1], key, address)}
        try:
            idle = await _probe(first, feeds, address, probes)
            stop, sent = asyncio.Event(), [0]
            flood = asyncio.create_task(_flood(first.smtp_port, stop, flood_sessions, sent))
            started = time.perf_counter()
            busy = await _probe(first, feeds, address, probes)
            elapsed = time.perf_counter() - started
            stop.set()
            await flood
        finally:
            for ws in feeds.values():
                with contextlib.suppress(Exception):
                    await ws.close()
        return {"nodes": nodes, "probes": probes,
                "idle": {name: _summary(v) for name, v in idle.items()},
                "flood": {name: _summary(v) for name, v in busy.items()},
                "flood_msgs_per_s": round(sent[0] / elapsed, 1)}
    finally:
        for server in reversed(servers):  # the first node owns the database: last
            await asyncio.to_thread(server.stop)
