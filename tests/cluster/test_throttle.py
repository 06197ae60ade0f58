"""Cross-node protection: throttle limits hold for the cluster, deny-lists reach every node.

Three real ``mailsac serve`` nodes share the session's PostgreSQL. Counts are shared only
within one ``MAILSAC_CLUSTER`` name (every other server of the session has its own), and the
deny-list is shared by every node on the database, so the deny-list tests list only unique
127.x.y.z source addresses and unique sender domains, and remove them again.
"""

from __future__ import annotations

import random
import re
import smtplib
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from mailsac.storage.db import asyncpg_dsn
from mailsac.throttle import Counter, Limiter, default_limits
from mailsac.throttle.shared import STALE_SYNCS, SharedCounts
from mailsac.throttle_sync import ThrottleSync
from tests.helpers import (
    ServerHandle,
    client,
    make_message,
    start_private_server,
    stop_private_server,
    unique_inbox,
)

LIMIT = 30
# A 10-minute window: counts must not age out while a slow machine runs the test.
NODE_ENV = {"MAILSAC_LIMITS": f"sender_org={LIMIT},sender_org.window_seconds=600",
            "MAILSAC_THROTTLE_SYNC_INTERVAL": "0.2"}


def _start_nodes(database_url: str, envs: list[dict[str, str]]) -> list[ServerHandle]:
    with ThreadPoolExecutor(len(envs)) as pool:
        futures = [pool.submit(start_private_server, database_url, env, "mailsac-cluster-")
                   for env in envs]
        nodes = []
        for future in futures:
            try:
                nodes.append(future.result())
            except Exception:
                for node in nodes:
                    stop_private_server(node)
                raise
    return nodes


@pytest.fixture(scope="module")
def trio(database_url: str) -> Iterator[list[ServerHandle]]:
    """Three nodes of one cluster with a sender_org limit of 30 per minute."""
    env = {**NODE_ENV, "MAILSAC_CLUSTER": f"thr-{uuid.uuid4().hex[:10]}"}
    nodes = _start_nodes(database_url, [env] * 3)
    yield nodes
    for node in nodes:
        stop_private_server(node)


def _send(node: ServerHandle, sender: str, source: str = "127.0.0.1") -> tuple[int, str]:
    """One message over a new connection: the final reply (or the first refusal)."""
    to = unique_inbox()
    try:
        with smtplib.SMTP("127.0.0.1", node.smtp_port, timeout=30,
                          source_address=(source, 0)) as smtp:
            for code, text in (smtp.ehlo(), smtp.mail(sender), smtp.rcpt(to)):
                if code >= 300:
                    return code, text.decode()
            code, text = smtp.data(make_message(to, sender=sender))
            return code, text.decode()
    except smtplib.SMTPConnectError as exc:
        error = exc.smtp_error
        return exc.smtp_code, error.decode() if isinstance(error, bytes) else error
    except smtplib.SMTPServerDisconnected:
        return 421, "disconnected"


def _metric(node: ServerHandle, name: str, labels: str = "") -> float:
    text = httpx.get(f"{node.http_url}/metrics", timeout=30).text
    match = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.M)
    assert match is not None, f"{name}{labels} missing from /metrics"
    return float(match.group(1))


def _remote(node: ServerHandle) -> float:
    return _metric(node, "mailsac_throttle_shared_remote", '{limit="sender_org"}')


def _wait_for(what: str, condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _wait_for_remote(node: ServerHandle, at_least: int) -> None:
    _wait_for("the other nodes' counts", lambda: _remote(node) >= at_least)


def _wait_for_syncs(node: ServerHandle, at_least: float) -> None:
    _wait_for("more syncs", lambda: _metric(
        node, "mailsac_throttle_sync_total", '{outcome="ok"}') >= at_least)


def test_a_sender_spread_over_the_cluster_is_limited_service_wide(
    trio: list[ServerHandle],
) -> None:
    sender = f"news@s{uuid.uuid4().hex[:12]}.example"
    first = [_send(trio[i % 3], sender) for i in range(27)]  # 9 per node, 27 in all
    assert [code for code, _ in first] == [250] * 27
    # Each node has counted 9 itself; wait until it also sees the other two nodes' 18.
    for node in trio:
        _wait_for_remote(node, 18)
    # Node 0 alone has seen 9 of 30 and would accept 21 more: the cluster allows 3.
    replies = [_send(trio[0], sender) for _ in range(6)]
    assert [code for code, _ in replies[:3]] == [250] * 3
    code, text = replies[3]
    assert code == 421 and text.startswith("4.7.0"), replies
    domain = sender.partition("@")[2]
    assert domain in text and f"limit {LIMIT}" in text and "try again in" in text
    assert [code for code, _ in replies[4:]] == [421, 421]
    # Every node now refuses the sender (the others learn of node 0's 3 within a sync).
    for node in trio[1:]:
        _wait_for_remote(node, 21)
        assert _send(node, sender)[0] == 421
    assert _send(trio[1], f"other@o{uuid.uuid4().hex[:12]}.example")[0] == 250
    assert all(_metric(node, "mailsac_throttle_shared_available") == 1 for node in trio)
    assert _metric(trio[0], "mailsac_throttle_sync_rows_total", '{direction="written"}') > 0


def test_nodes_of_different_clusters_do_not_share_counts(database_url: str) -> None:
    nodes = _start_nodes(database_url, [NODE_ENV] * 3)  # each gets a cluster of its own
    try:
        sender = f"news@d{uuid.uuid4().hex[:12]}.example"
        assert [_send(nodes[i % 3], sender)[0] for i in range(27)] == [250] * 27
        synced = [_metric(n, "mailsac_throttle_sync_total", '{outcome="ok"}') for n in nodes]
        for node, before in zip(nodes, synced, strict=True):
            _wait_for_syncs(node, before + 3)
        assert [_remote(node) for node in nodes] == [0, 0, 0]
        # Node 0 has seen 9 of its own 30: it takes the 9 that a cluster would refuse.
        assert [_send(nodes[0], sender)[0] for _ in range(9)] == [250] * 9
    finally:
        for node in nodes:
            stop_private_server(node)


def _unique_loopback() -> str:
    return f"127.{random.randint(100, 254)}.{random.randint(0, 255)}.{random.randint(1, 254)}"


def _open_session(node: ServerHandle, source: str) -> smtplib.SMTP:
    smtp = smtplib.SMTP("127.0.0.1", node.smtp_port, timeout=30, source_address=(source, 0))
    assert smtp.ehlo()[0] == 250
    return smtp


def _connect_code(node: ServerHandle, source: str) -> int:
    try:
        with smtplib.SMTP("127.0.0.1", node.smtp_port, timeout=30,
                          source_address=(source, 0)) as smtp:
            return 220 if smtp.noop()[0] == 250 else 0
    except smtplib.SMTPConnectError as exc:
        return exc.smtp_code


def test_deny_list_change_on_one_node_applies_at_the_next_command_on_another(
    trio: list[ServerHandle],
) -> None:
    node_a, node_c = trio[0], trio[2]
    source = _unique_loopback()
    domain = f"deny{uuid.uuid4().hex[:12]}.example"
    listed: list[str] = []
    with client(node_a, node_a.key) as admin_a:
        try:
            open_ip = _open_session(node_c, source)  # sessions opened before the change
            open_domain = _open_session(node_c, _unique_loopback())
            for value in (source, domain):
                added = admin_a.post("/api/admin/deny-list",
                                     json={"value": value, "reason": "cluster test"})
                assert added.status_code == 200, added.text
                listed.append(value)
            # Each change is its own NOTIFY: wait until node C has reloaded both.
            _wait_for("node C to refuse the address",
                      lambda: _connect_code(node_c, source) == 554)
            _wait_for("node C to refuse the domain", lambda: _send(
                node_c, f"x@{domain}", _unique_loopback())[0] == 554)
            code, text = open_ip.mail(f"ok@{uuid.uuid4().hex[:8]}.example")
            assert code == 554 and source.encode() in text and b"cluster test" in text
            open_ip.close()
            code, text = open_domain.mail(f"someone@mx.{domain}")
            assert code == 554 and domain.encode() in text and b"cluster test" in text
            open_domain.close()

            for value in listed:
                assert admin_a.delete(f"/api/admin/deny-list/{value}").status_code == 204
            listed.clear()
            _wait_for("node C to admit the address again",
                      lambda: _connect_code(node_c, source) == 220)
            _wait_for("node C to accept the domain again",
                      lambda: _send(node_c, f"x@{domain}", source)[0] == 250)
        finally:
            for value in listed:
                admin_a.delete(f"/api/admin/deny-list/{value}")


# -- the sync task against the session's real PostgreSQL ---------------------------------


def _node(database_url: str, cluster: str, name: str,
          clock: Callable[[], float] = time.monotonic) -> tuple[Limiter, ThrottleSync]:
    counter = Counter()
    limiter = Limiter(counter, default_limits({"sender_org": LIMIT}))
    shared = SharedCounts(counter, limiter.limits)
    limiter.shared = shared
    return limiter, ThrottleSync(shared, database_url, cluster, 1.0, node=name, clock=clock)


async def test_counts_travel_through_postgres_within_a_cluster_only(database_url: str) -> None:
    cluster = f"unit-{uuid.uuid4().hex[:10]}"
    limiter_a, sync_a = _node(database_url, cluster, "a")
    limiter_b, sync_b = _node(database_url, cluster, "b")
    limiter_x, sync_x = _node(database_url, f"{cluster}-other", "x")
    try:
        for _ in range(12):
            assert limiter_a.hit("sender_org", "heavy.example").allowed
        assert await sync_a.sync_once()
        assert await sync_b.sync_once() and await sync_x.sync_once()
        assert sync_a.stats.rows_written == 1 and sync_b.stats.rows_read >= 1
        assert limiter_b.check("sender_org", "heavy.example").count == 13
        assert limiter_x.check("sender_org", "heavy.example").count == 1
        assert sum(limiter_b.hit("sender_org", "heavy.example").allowed
                   for _ in range(40)) == LIMIT - 12
        # A node rewrites its bucket's whole count: nothing is counted twice.
        assert limiter_a.hit("sender_org", "heavy.example").allowed
        assert await sync_a.sync_once() and await sync_a.sync_once()
        assert await sync_b.sync_once()
        assert limiter_b.check("sender_org", "heavy.example").count == (LIMIT - 12) + 13 + 1
    finally:
        for sync in (sync_a, sync_b, sync_x):
            await sync._drop()


async def test_unreachable_database_falls_back_to_local_counts(database_url: str) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dead = f"postgresql://postgres@127.0.0.1:{port}/mailsac"
    now = [1000.0]
    cluster = f"unit-{uuid.uuid4().hex[:10]}"
    limiter_a, sync_a = _node(database_url, cluster, "a")
    limiter, sync = _node(database_url, cluster, "b", clock=lambda: now[0])
    try:
        for _ in range(LIMIT):
            limiter_a.hit("sender_org", "flaky.example")
        assert await sync_a.sync_once() and await sync.sync_once()
        assert not limiter.check("sender_org", "flaky.example").allowed  # the cluster's view
        await sync._drop()
        sync._dsn = dead  # the database goes away
        assert not await sync.sync_once()
        assert sync.stats.failed == 1 and sync.stats.available  # briefly: keep the view
        assert not limiter.check("sender_org", "flaky.example").allowed
        now[0] += STALE_SYNCS * 2
        assert not await sync.sync_once()
        assert not sync.stats.available  # stale: decide on local counts only
        assert sum(limiter.hit("sender_org", "flaky.example").allowed
                   for _ in range(LIMIT + 5)) == LIMIT
        sync._dsn = asyncpg_dsn(database_url)  # and comes back
        assert await sync.sync_once() and sync.stats.available
        assert limiter.check("sender_org", "flaky.example").count > LIMIT
    finally:
        await sync_a._drop()
        await sync._drop()
