"""Jobs run once across the cluster: retention takes a cluster lock, and each webhook is
delivered once even when the node sending it dies mid-request."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

import asyncpg
import psutil

from mailsac.storage.db import asyncpg_dsn
from mailsac.storage.joblock import retention_key
from tests.cluster.conftest import StartCluster
from tests.helpers import (
    ReceiverServer,
    ServerHandle,
    client,
    database_of_its_own,
    make_message,
    metric,
    new_account,
    send_raw,
    unique_inbox,
)

PATIENCE = 60.0


def _until(check: Callable[[], bool], what: str, patience: float = PATIENCE) -> None:
    deadline = time.monotonic() + patience
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _passes(nodes: list[ServerHandle], outcome: str) -> list[float]:
    return [metric(n, "mailsac_retention_passes_total", f'{{outcome="{outcome}"}}')
            for n in nodes]


def test_retention_runs_on_one_node_at_a_time(cluster: StartCluster,
                                              database_url: str) -> None:
    name = f"jobs-{uuid.uuid4().hex[:8]}"
    nodes = cluster(3, {"MAILSAC_RETENTION_INTERVAL": "0.2", "MAILSAC_CLUSTER": name})
    lock = retention_key(name)
    _until(lambda: sum(_passes(nodes, "run")) >= 3, "retention passes")

    async def holding_the_lock() -> tuple[list[float], list[float], list[float], list[float]]:
        conn = await asyncpg.connect(asyncpg_dsn(database_url))
        try:
            # What a node does for a pass: while anyone holds it, no node may run one.
            await conn.execute("SELECT pg_advisory_lock($1, $2)", *lock)
            run_before = await asyncio.to_thread(_passes, nodes, "run")
            skipped_before = await asyncio.to_thread(_passes, nodes, "skipped")
            await asyncio.to_thread(_until, lambda: all(
                now >= before + 3 for now, before
                in zip(_passes(nodes, "skipped"), skipped_before, strict=True)),
                "every node to skip passes")
            run_after = await asyncio.to_thread(_passes, nodes, "run")
            holders = await conn.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND classid = $1 AND objid = $2", *lock)
            await conn.execute("SELECT pg_advisory_unlock($1, $2)", *lock)
            return run_before, run_after, skipped_before, [float(holders)]
        finally:
            await conn.close()

    run_before, run_after, _, holders = asyncio.run(holding_the_lock())
    assert run_after == run_before  # nobody ran a pass while the lock was taken
    assert holders == [1.0]  # only the test held it
    released = sum(run_after)
    _until(lambda: sum(_passes(nodes, "run")) > released, "a pass after the release")


@dataclass
class _Request:
    delivery: str
    attempt: str
    port: int
    answer: threading.Event = field(default_factory=threading.Event)


class _HookReceiver:
    """A local webhook receiver that records each request's delivery id and client port;
    a request is answered (200) only once ``answer`` is set (at once when ``hold`` is
    False), so a test can see which node is mid-delivery."""

    def __init__(self, hold: bool) -> None:
        self.requests: list[_Request] = []
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                request = _Request(self.headers["X-Mailsac-Delivery"],
                                   self.headers["X-Mailsac-Attempt"], self.client_address[1])
                if not hold:
                    request.answer.set()
                with receiver.arrived:
                    receiver.requests.append(request)
                    receiver.arrived.notify_all()
                request.answer.wait(PATIENCE * 2)
                try:
                    self.send_response(200)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the sender died meanwhile

            def log_message(self, *args: object) -> None:
                return

        self.server = ReceiverServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int) -> list[_Request]:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.requests) >= count, PATIENCE), \
                f"{len(self.requests)} of {count} webhook requests arrived"
            return list(self.requests)

    def close(self) -> None:
        for request in self.requests:
            request.answer.set()
        self.server.shutdown()
        self.server.server_close()


def _webhook_address(node: ServerHandle, url: str) -> tuple[str, str]:
    _, key = new_account(node)
    address = unique_inbox()
    with client(node, key) as api:
        assert api.post(f"/api/addresses/{address}", json={"webhook": url}).status_code == 200
    return key, address


def _deliveries(node: ServerHandle, key: str, address: str) -> list[dict[str, object]]:
    with client(node, key) as api:
        found: list[dict[str, object]] = api.get(
            f"/api/addresses/{address}/webhook-deliveries").json()
        return found


def test_each_webhook_is_delivered_once_across_three_nodes(
        cluster: StartCluster, database_url: str) -> None:
    # On a database of its own: only these three nodes may claim the deliveries.
    nodes = cluster(3, {"DATABASE_URL": database_of_its_own(database_url, "mailsac_once")})
    receiver = _HookReceiver(hold=False)
    try:
        key, address = _webhook_address(nodes[0], receiver.url)
        for node in nodes:  # every node's directory knows the webhook before mail comes
            _until(lambda node=node: _reserved(node, key, address), "the directory reload")
        count = 30
        for i in range(count):
            node = nodes[i % 3]
            assert send_raw(node, make_message(address, subject=f"hook {i}"), [address]) == {}
        receiver.wait_for(count)
        _until(lambda: sum(d["status"] == "delivered"
                           for d in _deliveries(nodes[1], key, address)) == count,
               "every delivery recorded as delivered")
        deliveries = _deliveries(nodes[2], key, address)
        ids = [r.delivery for r in receiver.requests]
    finally:
        receiver.close()
    assert len(ids) == len(set(ids)) == count  # each exactly once
    assert all(d["attempts"] == 1 for d in deliveries)
    assert {str(d["id"]) for d in deliveries} == set(ids)


def _reserved(node: ServerHandle, key: str, address: str) -> bool:
    with client(node, key) as api:
        return api.get(f"/api/addresses/{address}").status_code == 200


def _owner(port: int, nodes: list[ServerHandle]) -> ServerHandle | None:
    """The node whose process holds the client end of a connection from ``port``.

    Looks several times: Linux reads ``/proc/net/tcp`` in chunks, and a socket opened or
    closed meanwhile (three busy nodes) can make one read skip a live entry."""
    deadline = time.monotonic() + 5
    while True:
        for node in nodes:
            if node.proc.poll() is not None:
                continue
            connections = psutil.Process(node.proc.pid).net_connections(kind="tcp")
            if any(c.laddr and c.laddr.port == port for c in connections):
                return node
        if time.monotonic() > deadline:
            return None
        time.sleep(0.05)


def test_a_delivery_claimed_by_a_killed_node_is_sent_by_another(
        cluster: StartCluster, database_url: str) -> None:
    # Lease = timeout x (lane rounds: 16 // 8 + 1 = 3) + 5 s = 35 s; a 10 s timeout leaves
    # the node plenty of time to be found and killed while its request is still open.
    nodes = cluster(3, {"MAILSAC_WEBHOOK_TIMEOUT": "10", "MAILSAC_WEBHOOK_PER_ACCOUNT": "8",
                        "DATABASE_URL": database_of_its_own(database_url, "mailsac_lease")})
    receiver = _HookReceiver(hold=True)
    try:
        key, address = _webhook_address(nodes[0], receiver.url)
        for node in nodes:
            _until(lambda node=node: _reserved(node, key, address), "the directory reload")
        assert send_raw(nodes[0], make_message(address, subject="lease"), [address]) == {}
        (first,) = receiver.wait_for(1)
        sender = _owner(first.port, nodes)
        assert sender is not None, "no node holds the webhook connection"
        sender.proc.send_signal(signal.SIGKILL)
        sender.proc.wait(30)
        first.answer.set()  # too late: nobody is listening for the answer
        second = receiver.wait_for(2)[1]
        retried_by = _owner(second.port, nodes)
        second.answer.set()
        survivor = next(n for n in nodes if n is not sender)
        _until(lambda: [d["status"] for d in _deliveries(survivor, key, address)]
               == ["delivered"], "the retried delivery recorded")
        requests = list(receiver.requests)
    finally:
        receiver.close()
    assert second.delivery == first.delivery  # the same delivery, not a new one
    assert retried_by is not None, f"no live node sent the retry; requests: {requests}"
    assert retried_by is not sender
    assert len(requests) == 2
