"""HTTP side of the benchmark: API latency probes and the "every 250 is stored" check.

The probe is open-loop (:mod:`mailsac.bench.open_loop`): *list inbox* and *get message*
each fired ``PROBE_RATE`` times a second on a fixed schedule over a set of known targets,
every latency counted from the scheduled moment, so a stall cannot hide; at 10/s it adds
almost no load of its own. Verification
lists every inbox the flood used, once, with ``limit=1000``, and matches the unique token
each message carries in its Subject; a sample is also fetched raw and compared byte for
byte with what was sent.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from mailsac.bench.open_loop import OpenLoopProbe, probe_endpoints
from mailsac.bench.stats import LatencyStats
from mailsac.bench.workload import TOKEN_RE, Workload

LIST_LIMIT = 1000  # the API's maximum page
PROBE_RATE = 10.0  # requests per second per endpoint, as in the side-by-side table


@dataclass(frozen=True)
class ProbeTarget:
    inbox: str
    message_id: str


def api_client(url: str, key: str, timeout: float = 30.0) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
    return httpx.AsyncClient(base_url=url.rstrip("/"), headers={"Mailsac-Key": key},
                             timeout=timeout, limits=limits)


def _inbox_path(inbox: str) -> str:
    return f"/api/addresses/{quote(inbox, safe='@')}/messages"


async def list_inbox(client: httpx.AsyncClient, inbox: str,
                     limit: int | None = None) -> list[dict[str, Any]]:
    params = {"limit": str(limit)} if limit else None
    response = await client.get(_inbox_path(inbox), params=params)
    response.raise_for_status()
    data: list[dict[str, Any]] = response.json()
    return data


@dataclass
class ProbeResult:
    list: LatencyStats
    get: LatencyStats
    error_reasons: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"list": self.list.to_json(), "get": self.get.to_json()}
        if self.error_reasons:
            out["error_reasons"] = self.error_reasons
        return out


async def probe(url: str, key: str, targets: Sequence[ProbeTarget], *,
                requests: int | None = None, stop: asyncio.Event | None = None,
                rate: float = PROBE_RATE, max_seconds: float = 600.0, seed: int = 0
                ) -> ProbeResult:
    """Open-loop list/get probe (see :mod:`mailsac.bench.open_loop`): ``rate`` requests
    per second per endpoint until each made ``requests`` or ``stop`` is set."""
    if not targets:
        raise ValueError("the probe needs at least one target")
    endpoints = probe_endpoints([(t.inbox, t.message_id) for t in targets], seed)
    prober = OpenLoopProbe(url, key, endpoints, rate)
    stats = await prober.run(requests=requests, stop=stop, max_seconds=max_seconds)
    return ProbeResult(stats["list"], stats["get"], prober.error_reasons)


async def targets_of(client: httpx.AsyncClient, inboxes: Sequence[str]) -> list[ProbeTarget]:
    """Every message of ``inboxes`` as a probe target (newest page of each)."""
    found: list[ProbeTarget] = []
    for inbox in inboxes:
        found += [ProbeTarget(inbox, m["_id"]) for m in await list_inbox(client, inbox, 100)]
    return found


@dataclass
class Verification:
    expected: int = 0
    found: int = 0
    inboxes: int = 0
    list_calls: int = 0
    raw_checked: int = 0
    raw_mismatched: int = 0
    errors: int = 0
    seconds: float = 0.0
    missing_sample: list[str] = field(default_factory=list)

    @property
    def missing(self) -> int:
        return self.expected - self.found

    def to_json(self) -> dict[str, Any]:
        return {"expected": self.expected, "found": self.found, "loss": self.missing,
                "inboxes": self.inboxes, "list_calls": self.list_calls,
                "raw_checked": self.raw_checked, "raw_mismatched": self.raw_mismatched,
                "errors": self.errors, "seconds": round(self.seconds, 2),
                "missing_sample": self.missing_sample}


async def _tokens_in(client: httpx.AsyncClient, inbox: str, result: Verification
                     ) -> dict[str, str]:
    """token → message id for everything in ``inbox`` (pages of 1000, newest first)."""
    found: dict[str, str] = {}
    until: str | None = None
    while True:
        params = {"limit": str(LIST_LIMIT)}
        if until:
            params["until"] = until
        result.list_calls += 1
        response = await client.get(_inbox_path(inbox), params=params)
        response.raise_for_status()
        page: list[dict[str, Any]] = response.json()
        for message in page:
            match = TOKEN_RE.search(str(message.get("subject", "")))
            if match:
                found[match.group(1)] = str(message["_id"])
        if len(page) < LIST_LIMIT or page[-1]["received"] == until:
            return found
        until = str(page[-1]["received"])


async def verify(client: httpx.AsyncClient, workload: Workload, accepted: Sequence[int], *,
                 raw_sample: int = 0, concurrency: int = 8) -> Verification:
    """Check that every accepted message is listed (and ``raw_sample`` are byte-exact)."""
    started = time.monotonic()
    result = Verification(expected=len(accepted))
    grouped = workload.by_inbox(list(accepted))
    result.inboxes = len(grouped)
    ids: dict[int, str] = {}
    gate = asyncio.Semaphore(concurrency)

    async def check(inbox: str, indices: list[int]) -> None:
        async with gate:
            try:
                tokens = await _tokens_in(client, inbox, result)
            except httpx.HTTPError:
                result.errors += 1
                tokens = {}
        for i in indices:
            message_id = tokens.get(workload.token(i))
            if message_id is None:
                if len(result.missing_sample) < 10:
                    result.missing_sample.append(workload.token(i))
            else:
                ids[i] = message_id
                result.found += 1

    await asyncio.gather(*(check(inbox, idx) for inbox, idx in grouped.items()))
    sample = sorted(ids)[:: max(1, len(ids) // raw_sample)][:raw_sample] if raw_sample else []

    async def compare(i: int) -> None:
        async with gate:
            sent = workload.message(i)
            path = f"/api/raw/{quote(sent.rcpt, safe='@')}/{quote(ids[i], safe='')}"
            try:
                response = await client.get(path)
                response.raise_for_status()
                raw = response.content
            except httpx.HTTPError:
                result.errors += 1
                raw = b""
        result.raw_checked += 1
        expected = sent.raw
        got = raw[-len(expected):] if len(raw) >= len(expected) else raw
        if hashlib.sha256(got).digest() != hashlib.sha256(expected).digest():
            result.raw_mismatched += 1

    await asyncio.gather(*(compare(i) for i in sample))
    result.seconds = time.monotonic() - started
    return result
