"""The SMTP flood: C sessions on raw asyncio streams, PIPELINING when the server offers it.

With ``starttls`` every session upgrades to TLS (STARTTLS, then EHLO again) before its
first message, so ``per_session=1`` measures what a handshake per connection costs.

Raw streams cost far less client CPU per message than a full SMTP library: a transaction
is one write of ``MAIL``/``RCPT``/``DATA`` (pipelined), three reply lines, one write of the
message and one reply. Sessions reconnect every ``per_session`` messages (servers cap the
commands per session) and after a ``421``. Nothing is retried: every message ends as
accepted (``250``) or as a failure counted by reply code or exception.

The flood runs in child processes (:class:`FloodProcess`) so that the parent's HTTP probe
measures the server, not a busy client loop; each child reports its own CPU time, which
is how the report shows whether the client was the bottleneck.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import importlib
import multiprocessing
import ssl
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from mailsac.bench.workload import OutMessage, Workload

MAX_CONNECT_FAILURES = 50  # consecutive; then the flood is aborted (server is gone)


class Counter(Protocol):
    value: int


@dataclass
class LocalCounter:
    value: int = 0


class ReplyError(Exception):
    """The server closed the connection or sent something that is not an SMTP reply."""


@dataclass(frozen=True)
class FloodConfig:
    host: str
    port: int
    sessions: int
    workload: Workload
    per_session: int = 100
    reply_timeout: float = 120.0
    max_seconds: float = 900.0
    shard: int = 0
    shards: int = 1
    helo: str = "loadgen.bench.test"
    starttls: bool = False  # upgrade every session with STARTTLS (any certificate)


@dataclass
class FloodResult:
    accepted: list[int] = field(default_factory=list)
    accepted_bytes: int = 0
    attempted: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    started: float = 0.0  # time.time() of the first connection attempt
    finished: float = 0.0
    client_cpu: float = 0.0  # seconds of CPU the client process(es) used
    connections: int = 0
    latencies_ms: list[float] = field(default_factory=list)  # MAIL → final reply
    aborted: str | None = None

    @property
    def seconds(self) -> float:
        return max(1e-9, self.finished - self.started)

    def fail(self, reason: str) -> None:
        self.failures[reason] = self.failures.get(reason, 0) + 1

    @classmethod
    def merge(cls, parts: list[FloodResult]) -> FloodResult:
        out = cls(started=min(p.started for p in parts), finished=max(p.finished for p in parts))
        for p in parts:
            out.accepted += p.accepted
            out.accepted_bytes += p.accepted_bytes
            out.attempted += p.attempted
            for reason, n in p.failures.items():
                out.failures[reason] = out.failures.get(reason, 0) + n
            out.client_cpu += p.client_cpu
            out.connections += p.connections
            out.latencies_ms += p.latencies_ms
            out.aborted = out.aborted or p.aborted
        out.accepted.sort()
        return out


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 timeout: float) -> None:
        self.reader, self.writer, self.timeout = reader, writer, timeout
        self.pipelining = False

    async def reply(self) -> int:
        """Read one (possibly multi-line) reply; return its code."""
        while True:
            line = await self.reader.readline()
            if len(line) < 4 or not line[:3].isdigit():
                raise ReplyError("connection closed" if not line else f"bad reply {line[:40]!r}")
            if line[3:4] != b"-":
                return int(line[:3])

    async def greet(self, helo: str, starttls: bool = False) -> None:
        async with asyncio.timeout(self.timeout):
            if (code := await self.reply()) != 220:
                raise ReplyError(f"greeting {code}")
            await self.ehlo(helo)
            if starttls:
                self.writer.write(b"STARTTLS\r\n")
                if (code := await self.reply()) != 220:
                    raise ReplyError(f"STARTTLS refused: {code}")
                await self.writer.start_tls(_unverified())
                await self.ehlo(helo)  # RFC 3207: start over

    async def ehlo(self, helo: str) -> None:
        self.writer.write(f"EHLO {helo}\r\n".encode())
        self.pipelining = False
        while True:
            line = await self.reader.readline()
            if len(line) < 4:
                raise ReplyError("connection closed during EHLO")
            if line[4:14].upper() == b"PIPELINING":
                self.pipelining = True
            if line[3:4] != b"-":
                break
        if not line.startswith(b"250"):
            raise ReplyError(f"EHLO refused: {line[:40]!r}")

    async def send(self, msg: OutMessage) -> int:
        """One transaction; return the deciding reply code (250 = accepted)."""
        mail = f"MAIL FROM:<{msg.mail_from}> SIZE={msg.size}\r\n".encode()
        rcpt = f"RCPT TO:<{msg.rcpt}>\r\n".encode()
        write = self.writer.write
        async with asyncio.timeout(self.timeout):
            if self.pipelining:
                write(mail + rcpt + b"DATA\r\n")
                codes = [await self.reply(), await self.reply(), await self.reply()]
            else:
                codes = []
                for command in (mail, rcpt, b"DATA\r\n"):
                    write(command)
                    codes.append(await self.reply())
                    if codes[-1] >= 400:
                        break
            if codes[-1] == 354 and codes[0] == 250 and codes[1] == 250:
                write(msg.header)
                write(msg.body)
                write(b".\r\n")
                await self.writer.drain()
                return await self.reply()
            if codes[-1] == 354:  # DATA accepted despite a failed MAIL/RCPT: end it empty
                write(b".\r\n")
                await self.reply()
            deciding = next(c for c in codes if c != 250)
            if deciding != 421:
                write(b"RSET\r\n")
                await self.reply()
            return deciding

    async def quit(self) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2.0):
                self.writer.write(b"QUIT\r\n")
                await self.reply()

    def close(self) -> None:
        self.writer.close()


@functools.cache
def _unverified() -> ssl.SSLContext:
    """The load generator measures, it does not authenticate: any certificate will do.
    One context per process (building one loads the system CAs: ~25 ms)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class _Flood:
    def __init__(self, config: FloodConfig, counter: Counter) -> None:
        self.config = config
        self.counter = counter
        self.result = FloodResult()
        self._indices = iter(range(config.shard, config.workload.count, config.shards))
        self._deadline = time.monotonic() + config.max_seconds
        self._connect_failures = 0

    def _next(self) -> int | None:
        if self.result.aborted is not None:
            return None
        if time.monotonic() > self._deadline:
            self.result.aborted = f"time limit of {self.config.max_seconds:.0f} s reached"
            return None
        index = next(self._indices, None)
        if index is not None:
            self.result.attempted += 1
        return index

    def _record(self, index: int, msg: OutMessage | None, outcome: int | str,
                started: float) -> None:
        self.counter.value += 1
        if outcome == 250 and msg is not None:
            self.result.accepted.append(index)
            self.result.accepted_bytes += msg.size
            self.result.latencies_ms.append((time.perf_counter() - started) * 1000)
        else:
            self.result.fail(str(outcome))

    async def _open(self) -> _Connection:
        c = self.config
        async with asyncio.timeout(c.reply_timeout):
            reader, writer = await asyncio.open_connection(c.host, c.port)
        conn = _Connection(reader, writer, c.reply_timeout)
        try:
            await conn.greet(c.helo, c.starttls)
        except BaseException:
            conn.close()
            raise
        self.result.connections += 1
        return conn

    async def session(self) -> None:
        pending = self._next()
        while pending is not None:
            try:
                conn = await self._open()
            except (OSError, TimeoutError, ReplyError) as exc:
                self._record(pending, None, f"connect: {type(exc).__name__}", 0.0)
                self._connect_failures += 1
                if self._connect_failures > MAX_CONNECT_FAILURES:
                    self.result.aborted = f"cannot connect: {exc}"
                await asyncio.sleep(0.05)
                pending = self._next()
                continue
            self._connect_failures = 0
            try:
                done, code = 0, 0
                while pending is not None:
                    msg = self.config.workload.message(pending)
                    started = time.perf_counter()
                    code = await conn.send(msg)
                    self._record(pending, msg, code, started)
                    pending, done = None, done + 1
                    if code == 421 or done >= self.config.per_session:
                        break
                    pending = self._next()
                if code != 421:
                    await conn.quit()
            except (OSError, TimeoutError, ReplyError) as exc:
                if pending is not None:
                    self._record(pending, None, f"error: {type(exc).__name__}", 0.0)
                    pending = None
            finally:
                conn.close()
            pending = self._next()


async def run_flood(config: FloodConfig, counter: Counter | None = None) -> FloodResult:
    """Send the workload's messages (this shard of them) over ``config.sessions`` sessions."""
    flood = _Flood(config, counter or LocalCounter())
    cpu = time.process_time()
    flood.result.started = time.time()
    await asyncio.gather(*(flood.session() for _ in range(max(1, config.sessions))))
    flood.result.finished = time.time()
    flood.result.client_cpu = time.process_time() - cpu
    return flood.result


def run_coroutine(coro: Coroutine[Any, Any, FloodResult], loop: str = "auto") -> FloodResult:
    """Run with uvloop when available (``loop="auto"``) or asked for, else asyncio's loop."""
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if loop in ("auto", "uvloop"):
        try:
            factory = importlib.import_module("uvloop").new_event_loop
        except ImportError:
            if loop == "uvloop":
                raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


def _worker(config: FloodConfig, counter: Any, go: Any, pipe: Any, loop: str) -> None:
    """Child process: build templates, say ready, wait for the start signal, flood, report."""
    config.workload.prepare()
    pipe.send("ready")
    go.wait()
    pipe.send(run_coroutine(run_flood(config, counter), loop))
    pipe.close()


class FloodProcess:
    """The flood in ``procs`` child processes (shards of the workload and of the sessions)."""

    def __init__(self, config: FloodConfig, procs: int = 1, loop: str = "auto") -> None:
        ctx = multiprocessing.get_context("spawn")
        procs = max(1, min(procs, config.sessions))
        self._go = ctx.Event()
        self._children: list[tuple[Any, Any, Any]] = []
        for shard in range(procs):
            sessions = config.sessions // procs + (1 if shard < config.sessions % procs else 0)
            part = dataclasses.replace(config, sessions=sessions, shard=shard, shards=procs)
            counter = ctx.RawValue("q", 0)
            receiver, sender = ctx.Pipe(duplex=False)
            process = ctx.Process(target=_worker, args=(part, counter, self._go, sender, loop),
                                  daemon=True, name=f"bench-flood-{shard}")
            self._children.append((process, counter, receiver))

    @property
    def progress(self) -> int:
        return sum(int(counter.value) for _, counter, _ in self._children)

    async def start(self, timeout: float = 120.0) -> None:
        """Start the children and wait until each has built its messages."""
        for process, _, _ in self._children:
            process.start()
        async with asyncio.timeout(timeout):
            for process, _, receiver in self._children:
                while not receiver.poll():
                    if not process.is_alive():
                        raise RuntimeError(f"{process.name} died (exit {process.exitcode})")
                    await asyncio.sleep(0.02)
                receiver.recv()

    def go(self) -> None:
        self._go.set()

    def done(self) -> bool:
        return all(receiver.poll() or not process.is_alive()
                   for process, _, receiver in self._children)

    async def result(self) -> FloodResult:
        while not self.done():
            await asyncio.sleep(0.05)
        parts: list[FloodResult] = []
        for process, _, receiver in self._children:
            if not receiver.poll():
                raise RuntimeError(f"{process.name} died (exit {process.exitcode})")
            parts.append(receiver.recv())
            process.join(5)
        return FloodResult.merge(parts)

    def kill(self) -> None:
        for process, _, _ in self._children:
            if process.is_alive():
                process.kill()
                process.join(5)
