"""``python -m mailsac.bench.waiters``: what 1,000 concurrent matching waits cost the server.

Each run spawns a fresh local server (:class:`mailsac.bench.spawn.SpawnedServer`) and
measures, from /proc, the server process's CPU per incoming message:

* ``base``: no waiter at all;
* ``idle``: ``--waiters`` waits on other inboxes (the hub must not even look at them);
* ``shared``: ``--waiters`` waits on the *same* inbox whose subject criterion every
  message passes and whose ``contains`` term (one distinct term per waiter) no message
  has — the worst case: every message wakes every waiter, each searches the body;

then one message containing every term answers all the shared waits: the latency from
the SMTP ``250`` of that message to each wait's answer (median, p95, max), and the
server's RSS without waiters and with both groups open (2 x ``--waiters``). Reports
medians of ``--runs`` runs and the ratios against ``base``, as JSON on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import smtplib
import statistics
import sys
import time
import uuid
from typing import Any
from urllib.parse import urlencode

import httpx

from mailsac.bench.cluster import probe_message
from mailsac.bench.spawn import Sampler, SpawnedServer, cpu_seconds, rss_bytes
from mailsac.bench.stats import percentile


def _send(port: int, to: str, count: int, body: str) -> float:
    """Send ``count`` messages over one session; the monotonic time of the last ``250``."""
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as smtp:
        for i in range(count):
            smtp.sendmail("bench@load.test", [to], probe_message(to, f"bench {i}", body))
        return time.monotonic()  # before QUIT: waits may be answered during it


async def _long_poll(port: int, key: str, path: str, params: dict[str, str]) -> tuple[int, float]:
    """One wait over a plain connection (a pooled client's bookkeeping for thousands of
    connections would be what gets measured): (status, monotonic time the answer ended)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path}?{urlencode(params)} HTTP/1.1\r\nHost: bench\r\n"
                     f"Mailsac-Key: {key}\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        answer = await reader.read(-1)  # until the server closes: the whole answer
        return int(answer.split(b" ", 2)[1]), time.monotonic()
    finally:
        writer.close()


async def _subscribers(http: httpx.AsyncClient) -> int:
    text = (await http.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith("mailsac_hub_subscribers "):
            return int(float(line.split()[1]))
    return 0


async def _until_subscribed(http: httpx.AsyncClient, wanted: int) -> None:
    deadline = time.monotonic() + 120
    while await _subscribers(http) < wanted:
        if time.monotonic() > deadline:
            raise TimeoutError(f"waiters did not subscribe ({wanted} wanted)")
        await asyncio.sleep(0.1)


async def _until_quiet(pid: int, limit: float = 120.0) -> None:
    """Until the server uses under 5% of a core over half a second (its waiters have caught
    up with every event), or ``limit`` seconds pass."""
    deadline = time.monotonic() + limit
    before = cpu_seconds(pid)[0]
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        now = cpu_seconds(pid)[0]
        if now - before < 0.025:
            return
        before = now


async def _cpu_per_message(server: SpawnedServer, sampler: Sampler, to: str,
                           messages: int) -> float:
    """Server-process CPU milliseconds per message over a flood of ``messages``, counted
    until every waiter has dealt with every one of them."""
    body = "Hello, this is load. " * 40  # ~800 bytes of text, no wait's term in it
    await _until_quiet(server.pid)
    start = sampler.mark()
    await asyncio.to_thread(_send, server.smtp_port, to, messages, body)
    await _until_quiet(server.pid)
    end = sampler.mark()
    return 1000 * (end[1] - start[1]) / messages


async def _one_run(waiters: int, messages: int) -> dict[str, float]:
    room = str(2 * waiters + 100)  # both groups of waits open at once, from one IP and key
    server = SpawnedServer(extra_env={
        "MAILSAC_HTTP_MAX_CONNECTIONS_PER_IP": room, "MAILSAC_MAX_STREAMS_PER_IP": room,
        "MAILSAC_MAX_STREAMS_PER_KEY": room})
    await asyncio.to_thread(server.start)
    sampler = Sampler(server.pid)
    sampler.start()
    result: dict[str, float] = {}
    try:
        async with httpx.AsyncClient(base_url=server.http_url, timeout=30, limits=httpx.Limits(
                max_keepalive_connections=0)) as control:  # no stale keep-alive

            def poll(path: str, **params: str) -> asyncio.Task[tuple[int, float]]:
                return asyncio.create_task(
                    _long_poll(server.http_port, server.key, path, params))

            inbox = f"shared-{uuid.uuid4().hex[:8]}@bench.test"
            await asyncio.to_thread(_send, server.smtp_port, inbox, 20, "warm-up")
            before = await _subscribers(control)
            result["base_cpu_ms_per_msg"] = await _cpu_per_message(
                server, sampler, inbox, messages)
            rss_idle = rss_bytes(server.pid) or 0

            idle = [poll(f"/api/addresses/idle-{i}-{uuid.uuid4().hex[:6]}@bench.test"
                         "/messages/wait", timeout="300", contains=f"never-{i}")
                    for i in range(waiters)]
            await _until_subscribed(control, before + waiters)
            result["idle_cpu_ms_per_msg"] = await _cpu_per_message(
                server, sampler, inbox, messages)

            terms = [f"term{i:05d}x{uuid.uuid4().hex[:6]}" for i in range(waiters)]
            shared = [poll(f"/api/addresses/{inbox}/messages/wait", timeout="300",
                           subject="bench", contains=term) for term in terms]
            await _until_subscribed(control, before + 2 * waiters)
            result["rss_mib_without_waiters"] = rss_idle / 2**20
            result["rss_mib_with_waiters"] = (rss_bytes(server.pid) or 0) / 2**20
            result["shared_cpu_ms_per_msg"] = await _cpu_per_message(
                server, sampler, inbox, messages)

            await _until_quiet(server.pid)
            acked = await asyncio.to_thread(_send, server.smtp_port, inbox, 1, " ".join(terms))
            answers = await asyncio.gather(*shared)
            if {code for code, _ in answers} != {200}:
                raise RuntimeError(f"some waits were not answered with 200: {answers[:5]}")
            latencies = [1000 * (at - acked) for _, at in answers]
            result["answer_ms_min"] = min(latencies)
            result["answer_ms_median"] = statistics.median(latencies)
            result["answer_ms_p95"] = percentile(latencies, 95)
            result["answer_ms_max"] = max(latencies)
            for task in idle:
                task.cancel()
            await asyncio.gather(*idle, return_exceptions=True)
    finally:
        await sampler.stop()
        await asyncio.to_thread(server.stop)
    return result


def _summary(runs: list[dict[str, float]]) -> dict[str, Any]:
    medians = {name: round(statistics.median(r[name] for r in runs), 3) for name in runs[0]}
    base = medians["base_cpu_ms_per_msg"] or 1e-9
    return {
        "medians": medians,
        "ratios": {
            "idle_vs_base_cpu": round(medians["idle_cpu_ms_per_msg"] / base, 2),
            "shared_vs_base_cpu": round(medians["shared_cpu_ms_per_msg"] / base, 2),
            # Both groups (idle and shared) are open when the RSS "with" is taken.
            "rss_kib_per_waiter": round(
                1024 * (medians["rss_mib_with_waiters"] - medians["rss_mib_without_waiters"])
                / max(1, 2 * medians.get("waiters", 1)), 2),
        },
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mailsac.bench.waiters",
                                     description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--waiters", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=200, help="messages per CPU phase")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    runs = []
    for number in range(args.runs):
        run = asyncio.run(_one_run(args.waiters, args.messages))
        run["waiters"] = args.waiters
        print(f"run {number + 1}: {json.dumps(run)}", file=sys.stderr)
        runs.append(run)
    print(json.dumps(_summary(runs), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
