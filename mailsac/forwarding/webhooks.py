"""Sends recorded webhook and Slack deliveries; retries with exponential backoff.

Deliveries are rows written together with their message (see :mod:`mailsac.delivery`),
so they survive restarts. This dispatcher claims due rows (leasing them, so a crash
mid-send only delays a retry), POSTs them through one shared ``httpx.AsyncClient`` with
timeouts and a concurrency cap, and records each outcome. A slow or dead receiver costs a
bounded number of background tasks, never SMTP intake time.

Webhook requests carry ``X-Mailsac-Signature: sha256=<hex>``, the HMAC-SHA256 of the exact
body with the address's ``webhookSecret``, plus ``X-Mailsac-Delivery`` (the delivery id,
stable across retries, for de-duplication) and ``X-Mailsac-Attempt``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from mailsac import __version__
from mailsac.storage import webhooks as store
from mailsac.storage.db import connect

log = logging.getLogger(__name__)


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    base_delay: float = 2.0
    max_delay: float = 3600.0
    timeout: float = 10.0

    def delay(self, attempts: int) -> float:
        """Seconds before attempt ``attempts + 1`` (2 s, 4 s, 8 s, … capped)."""
        return float(min(self.base_delay * 2 ** (attempts - 1), self.max_delay))


class WebhookDispatcher:
    """Background sender of pending webhook/Slack deliveries."""

    def __init__(
        self, engine: AsyncEngine, secret_for: Callable[[str], str | None], *,
        policy: RetryPolicy | None = None, concurrency: int = 8,
        clock: Callable[[], float] = time.time, transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._engine = engine
        self._secret_for = secret_for
        self.policy = policy or RetryPolicy()
        self._clock = clock
        self._slots = asyncio.Semaphore(concurrency)
        self._concurrency = concurrency
        self._wake = asyncio.Event()
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(self.policy.timeout), transport=transport,
            follow_redirects=False, headers={"User-Agent": f"mailsac-webhook/{__version__}"})
        self._inflight: set[asyncio.Task[None]] = set()
        self.outcomes = {"delivered": 0, "retry": 0, "failed": 0}

    def wake(self) -> None:
        self._wake.set()

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    async def run(self) -> None:
        while True:
            try:
                claimed = await self._claim()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("could not claim webhook deliveries: %s", exc)
                claimed = 0
            if claimed:
                continue
            self._wake.clear()
            idle = await self._idle_wait()
            try:
                await asyncio.wait_for(self._wake.wait(), idle)
            except TimeoutError:
                pass

    async def _idle_wait(self) -> float:
        try:
            async with connect(self._engine) as conn:
                due = await store.next_due(conn)
        except Exception:
            return 5.0
        if due is None:
            return 5.0
        return min(5.0, max(0.05, (due - self._now()).total_seconds()))

    async def _claim(self) -> int:
        free = self._concurrency - len(self._inflight)
        if free <= 0:
            await asyncio.wait(self._inflight, return_when=asyncio.FIRST_COMPLETED)
            return 1
        lease = self._now() + timedelta(seconds=self.policy.timeout * 3 + 5)
        async with connect(self._engine, write=True) as conn:
            batch = await store.claim_due(conn, self._now(), free, lease)
        for delivery in batch:
            task = asyncio.create_task(self._send(delivery))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
        return len(batch)

    async def _send(self, delivery: store.Delivery) -> None:
        async with self._slots:
            body = json.dumps(delivery.payload, separators=(",", ":")).encode()
            headers = {"Content-Type": "application/json"}
            attempt = delivery.attempts + 1
            code: int | None = None
            error: str | None = None
            if delivery.kind == "webhook":
                secret = self._secret_for(delivery.address)
                if secret:
                    headers["X-Mailsac-Signature"] = signature(secret, body)
                headers["X-Mailsac-Delivery"] = str(delivery.id)
                headers["X-Mailsac-Attempt"] = str(attempt)
            try:
                response = await self._client.post(delivery.url, content=body, headers=headers)
                code = response.status_code
                if not 200 <= code < 300:
                    error = f"receiver answered HTTP {code}"
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"[:500]
            await self._record(delivery, attempt, code, error)

    async def _record(self, delivery: store.Delivery, attempt: int, code: int | None,
                      error: str | None) -> None:
        if error is None:
            status, when = "delivered", self._now()
        elif attempt >= self.policy.max_attempts:
            status, when = "failed", self._now()
            log.warning("webhook %d to %s failed for good: %s", delivery.id, delivery.url, error)
        else:
            status = "pending"
            when = self._now() + timedelta(seconds=self.policy.delay(attempt))
        self.outcomes["retry" if status == "pending" else status] += 1
        try:
            async with connect(self._engine, write=True) as conn:
                await store.record_attempt(conn, delivery.id, status=status, attempts=attempt,
                                           next_attempt_at=when, code=code, error=error)
        except Exception as exc:  # the lease expires and the delivery is retried
            log.warning("could not record webhook attempt %d: %s", delivery.id, exc)

    async def close(self) -> None:
        for task in list(self._inflight):
            task.cancel()
        await asyncio.gather(*self._inflight, return_exceptions=True)
        await self._client.aclose()
