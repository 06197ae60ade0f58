"""The open-loop probe: a stall delays every request scheduled during it, and each is timed
from its scheduled moment (a closed-loop probe would count the stall once)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest

from mailsac.bench.open_loop import Endpoint, OpenLoopProbe
from mailsac.bench.stats import LatencyStats

BODY = b'{"ok": true}'


class _StallingServer:
    """A loopback HTTP/1.1 keep-alive server on its own loop; ``stall()`` blocks that loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self.requests = 0
        started = threading.Event()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while True:
                    head = await reader.readuntil(b"\r\n\r\n")
                    self.requests += 1
                    status = b"404 Not Found" if b"/missing" in head else b"200 OK"
                    writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: "
                                 + str(len(BODY)).encode() + b"\r\n\r\n" + BODY)
            except (asyncio.IncompleteReadError, ConnectionError):
                writer.close()

        async def main() -> None:
            server = await asyncio.start_server(handle, "127.0.0.1", 0)
            self.port = server.sockets[0].getsockname()[1]
            started.set()
            await asyncio.Event().wait()

        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(main(),),
                                       daemon=True)
        self.thread.start()
        started.wait(10)

    def stall(self, seconds: float) -> None:
        self.loop.call_soon_threadsafe(time.sleep, seconds)


@pytest.fixture
def server() -> Iterator[_StallingServer]:
    yield _StallingServer()


def test_a_stall_delays_every_request_scheduled_during_it(server: _StallingServer) -> None:
    url = f"http://127.0.0.1:{server.port}"
    probe = OpenLoopProbe(url, "k", [Endpoint("list", ("/a",)), Endpoint("get", ("/b",))],
                          rate=20)

    async def run() -> dict[str, LatencyStats]:
        async def stall_later() -> None:
            await asyncio.sleep(1.0)
            server.stall(0.6)

        stalling = asyncio.create_task(stall_later())
        stats = await probe.run(requests=60)
        await stalling
        return stats

    stats = asyncio.run(run())
    for name in ("list", "get"):
        s = stats[name]
        assert s.count == 60 and s.errors == 0
        # 0.6 s at 20/s: about 12 requests per endpoint were due during the stall, each
        # timed from its own scheduled moment, so they spread from ~600 ms down to ~0.
        assert s.max >= 400
        assert s.p90 >= 100  # a closed loop would show about 0 here
    assert server.requests == 120


def test_error_statuses_are_counted_with_their_reason(server: _StallingServer) -> None:
    url = f"http://127.0.0.1:{server.port}"
    probe = OpenLoopProbe(url, "k", [Endpoint("list", ("/a",)),
                                     Endpoint("get", ("/missing",))], rate=50)
    stats = asyncio.run(probe.run(requests=10))
    assert stats["list"].count == 10 and stats["list"].errors == 0
    assert stats["get"].count == 0 and stats["get"].errors == 10
    assert probe.error_reasons == {"HTTP 404": 10}
