"""Open-loop API latency probe: requests fired on a fixed schedule, timed from it.

A closed-loop probe (send, wait for the answer, send the next) hides stalls: while the
server is stuck for 200 ms the probe sends nothing, so the stall counts once instead of
for every request that should have been made meanwhile (coordinated omission). Here each
endpoint gets ``rate`` requests per second at fixed moments; a request whose answer is
still outstanding when the next one is due does not delay it (it goes out on another
connection), and every latency is measured from the *scheduled* moment. A stall of
200 ms therefore shows up as the 2 (at 10/s) requests it delayed, each with its full wait.

The probe speaks HTTP/1.1 over keep-alive sockets itself rather than through httpx:
httpx spends 0.3–0.8 ms of client CPU per request, which at the ~1 ms this probe must
resolve would be measured as server latency. The requests are fixed GETs with a key
header; responses are read by ``Content-Length`` (the API never sends chunked bodies to
these two endpoints; a chunked or closed response is read to the end and counted as an
error, so it cannot go unnoticed).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

from mailsac.bench.stats import LatencyStats

MAX_CONNECTIONS = 64  # a probe that needs more than this is measuring a dead server
# uvicorn closes a keep-alive connection after 5 idle seconds; one idle longer than this
# is not reused (its request would fail for the probe's reason, not the server's)
MAX_IDLE = 3.0
HEAD_LIMIT = 64 * 1024


@dataclass(frozen=True)
class Endpoint:
    """One probed kind of request: its name and the paths it cycles through."""

    name: str
    paths: tuple[str, ...]


def probe_endpoints(targets: Sequence[tuple[str, str]], seed: int = 0) -> list[Endpoint]:
    """list-inbox and get-message over ``(inbox, message id)`` targets."""
    rnd = random.Random(seed)
    order = list(targets)
    rnd.shuffle(order)
    lists = tuple(f"/api/addresses/{quote(inbox, safe='@')}/messages" for inbox, _ in order)
    gets = tuple(f"/api/addresses/{quote(inbox, safe='@')}/messages/{quote(mid, safe='')}"
                 for inbox, mid in order)
    return [Endpoint("list", lists), Endpoint("get", gets)]


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.idle_since = time.monotonic()

    async def get(self, request: bytes) -> int:
        """Send one request, read the whole response; its status code."""
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        if len(head) > HEAD_LIMIT:
            raise ValueError("response head too large")
        status = int(head[9:12])
        length = -1
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length < 0:
            raise ValueError("response without Content-Length")
        await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        self.writer.close()


class _Pool:
    """Idle keep-alive connections; a new one when all are busy (up to a bound)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.idle: list[_Connection] = []
        self.open = 0

    async def take(self) -> _Connection:
        while self.idle:
            conn = self.idle.pop()
            if time.monotonic() - conn.idle_since < MAX_IDLE:
                return conn
            self.open -= 1
            conn.close()
        if self.open >= MAX_CONNECTIONS:
            raise RuntimeError("the probe ran out of connections: the server stopped answering")
        self.open += 1
        try:
            reader, writer = await asyncio.open_connection(self.host, self.port)
        except BaseException:
            self.open -= 1
            raise
        return _Connection(reader, writer)

    def give(self, conn: _Connection, healthy: bool) -> None:
        if healthy:
            conn.idle_since = time.monotonic()
            self.idle.append(conn)
        else:
            self.open -= 1
            conn.close()

    def close(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()


@dataclass
class _Samples:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    reasons: Counter[str] = field(default_factory=Counter)  # why requests failed


async def _until(moment: float) -> None:
    """Sleep until ``moment`` (perf_counter). epoll rounds its timeout up to whole
    milliseconds, so the last 2 ms are spent yielding to the loop instead: otherwise
    the probe's own timer would add up to a millisecond to every latency it reports."""
    delay = moment - time.perf_counter() - 0.002
    if delay > 0:
        await asyncio.sleep(delay)
    while time.perf_counter() < moment:
        await asyncio.sleep(0)


class OpenLoopProbe:
    """Fires each endpoint ``rate`` times per second; latency from the scheduled time."""

    def __init__(self, url: str, key: str, endpoints: Sequence[Endpoint],
                 rate: float = 10.0) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.key = key
        self.endpoints = list(endpoints)
        self.rate = rate
        self._pool = _Pool(self.host, self.port)
        self._samples = _Samples({e.name: [] for e in endpoints}, {e.name: 0 for e in endpoints})

    def _request(self, path: str) -> bytes:
        return (f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                f"Mailsac-Key: {self.key}\r\nAccept: application/json\r\n\r\n").encode()

    async def _one(self, name: str, path: str, scheduled: float) -> None:
        conn = None
        healthy = False
        try:
            conn = await self._pool.take()
            status = await conn.get(self._request(path))
            healthy = True
            if status == 200:
                self._samples.latencies[name].append((time.perf_counter() - scheduled) * 1000)
            else:
                self._samples.errors[name] += 1
                self._samples.reasons[f"HTTP {status}"] += 1
        except (OSError, ValueError, RuntimeError, asyncio.IncompleteReadError) as exc:
            self._samples.errors[name] += 1
            self._samples.reasons[type(exc).__name__] += 1
        finally:
            if conn is not None:
                self._pool.give(conn, healthy)

    async def run(self, *, requests: int | None = None, stop: asyncio.Event | None = None,
                  max_seconds: float = 600.0) -> dict[str, LatencyStats]:
        """Until each endpoint made ``requests`` requests, or ``stop`` is set."""
        period = 1.0 / self.rate
        # The endpoints are spread over the period so their requests do not coincide.
        offsets = [i * period / len(self.endpoints) for i in range(len(self.endpoints))]
        start = time.perf_counter() + 0.05
        pending: set[asyncio.Task[None]] = set()
        tick = 0
        try:
            while True:
                if requests is not None and tick >= requests:
                    break
                if stop is not None and stop.is_set():
                    break
                if tick * period > max_seconds:
                    break
                for endpoint, offset in zip(self.endpoints, offsets, strict=True):
                    scheduled = start + tick * period + offset
                    await _until(scheduled)
                    path = endpoint.paths[tick % len(endpoint.paths)]
                    task = asyncio.create_task(self._one(endpoint.name, path, scheduled))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                tick += 1
            if pending:
                await asyncio.wait(pending, timeout=60)
        finally:
            for task in pending:
                task.cancel()
            self._pool.close()
        return {e.name: LatencyStats.of(self._samples.latencies[e.name],
                                        self._samples.errors[e.name]) for e in self.endpoints}

    @property
    def error_reasons(self) -> dict[str, int]:
        """How many requests failed, by HTTP status or exception name."""
        return dict(self._samples.reasons)
