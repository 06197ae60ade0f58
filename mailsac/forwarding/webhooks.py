"""Sends recorded webhook and Slack deliveries; retries with exponential backoff.

Deliveries are rows written together with their message (see :mod:`mailsac.delivery`),
so they survive restarts. This dispatcher claims due rows (leasing them, so a crash
mid-send only delays a retry), schedules them fairly (:mod:`mailsac.forwarding.fairness`:
per-account and per-host in-flight limits, a circuit breaker per host), checks each
destination with the SSRF guard (:mod:`mailsac.forwarding.egress`) and POSTs through a
transport pinned to the checked address (:mod:`mailsac.forwarding.pinned`). Every attempt
has a hard deadline; the receiver's answer body is never read. A slow or dead receiver
slows only its own account's deliveries, never SMTP intake or other tenants.

Outcomes are recorded as generic classes only (``refused: destination not allowed``,
``connect failed``, ``timeout``, ``protocol error``, ``http 503``), so the delivery history
cannot be used to probe which ports or hosts exist. Logs name the host, never the URL.

Webhook requests carry ``X-Mailsac-Signature: sha256=<hex>``, the HMAC-SHA256 of the exact
body with the address's ``webhookSecret``, plus ``X-Mailsac-Delivery`` (the delivery id,
stable across retries, for de-duplication) and ``X-Mailsac-Attempt``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from mailsac import __version__
from mailsac.errors import StorageUnavailable
from mailsac.forwarding.egress import DestinationRefused, EgressGuard, ResolveFailed
from mailsac.forwarding.fairness import FairnessLimits, Job, Lanes
from mailsac.forwarding.pinned import PinnedTransport, origin, pinned
from mailsac.storage import webhooks as store
from mailsac.storage.db import connect
from mailsac.storage.models import webhook_deliveries

log = logging.getLogger(__name__)

REFUSED = "refused: destination not allowed"
CONNECT_FAILED = "connect failed"
TIMEOUT = "timeout"
PROTOCOL_ERROR = "protocol error"
INVALID_URL = "invalid url"
DATABASE_UNAVAILABLE = "database unavailable"
ADDRESS_RELEASED = "address released"


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _encode(payload: str, secret: str | None) -> tuple[bytes, str | None]:
    body = payload.encode()
    return body, signature(secret, body) if secret else None


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    base_delay: float = 2.0
    max_delay: float = 3600.0
    timeout: float = 10.0

    def delay(self, attempts: int) -> float:
        """Seconds before attempt ``attempts + 1`` (2 s, 4 s, 8 s, … capped)."""
        return float(min(self.base_delay * 2 ** (attempts - 1), self.max_delay))


@dataclass(frozen=True, slots=True)
class _Outcome:
    code: int | None = None
    error: str | None = None
    host_ok: bool | None = None  # what the attempt says about the host (breaker input)
    final: bool = False  # give up now (the destination is refused or the URL invalid)


class WebhookDispatcher:
    """Background sender of pending webhook/Slack deliveries."""

    def __init__(
        self, engine: AsyncEngine, secret_for: Callable[[str], str | None], *,
        policy: RetryPolicy | None = None, limits: FairnessLimits | None = None,
        account_for: Callable[[str], str | None] | None = None,
        guard: EgressGuard | None = None, clock: Callable[[], float] = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._engine = engine
        self._secret_for = secret_for
        self._account_for = account_for or (lambda address: None)
        self.policy = policy or RetryPolicy()
        self._clock = clock
        self.lanes = Lanes(limits or FairnessLimits())
        self.guard = guard or EgressGuard()
        self._wake = asyncio.Event()
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(self.policy.timeout), follow_redirects=False,
            transport=transport or PinnedTransport(max_connections=self.lanes.limits.total),
            trust_env=False, headers={"User-Agent": f"mailsac-webhook/{__version__}"})
        self._inflight: set[asyncio.Task[None]] = set()
        self.outcomes = {"delivered": 0, "retry": 0, "failed": 0, "deferred": 0}

    def wake(self) -> None:
        self._wake.set()

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    async def run(self) -> None:
        while True:
            self._wake.clear()  # before claiming: a send finishing meanwhile is not missed
            claimed = 0
            try:
                claimed = await self._claim()
                await self._pump()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("could not claim webhook deliveries: %s", type(exc).__name__)
            if claimed:
                continue
            idle = await self._idle_wait()
            # Not asyncio.wait_for: on Python 3.11 it swallows a cancellation that arrives
            # as the wake-up does, and this loop would outlive the shutdown.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(idle):
                    await self._wake.wait()

    async def _idle_wait(self) -> float:
        if self.lanes.room <= 0:
            return 5.0  # a finishing send wakes us
        try:
            async with connect(self._engine) as conn:
                due = await store.next_due(conn)
        except Exception:
            return 5.0
        if due is None:
            return 5.0
        return min(5.0, max(0.05, (due - self._now()).total_seconds()))

    def _lease(self) -> timedelta:
        """Long enough for a full account lane to drain (then the row may be re-claimed:
        rows already held are recognised by id and skipped)."""
        limits = self.lanes.limits
        rounds = limits.lane_size // limits.per_account + 1
        return timedelta(seconds=self.policy.timeout * rounds + 5)

    async def _claim(self) -> int:
        room = min(self.lanes.room, 200)
        if room <= 0:
            return 0
        async with connect(self._engine, write=True) as conn:
            batch = await store.claim_due(conn, self._now(), room, self._now() + self._lease())
        overflow: list[int] = []
        for delivery in batch:
            if delivery.id in self.lanes:
                continue
            account = (getattr(delivery, "account_id", None)
                       or self._account_for(delivery.address) or "")
            try:
                host, port = origin(httpx.URL(delivery.url))
            except (httpx.InvalidURL, UnicodeError, ValueError):
                host, port = "", 0
            job = Job(delivery.id, account, f"{host}:{port}", delivery)
            if not self.lanes.add(job):
                overflow.append(delivery.id)
        if overflow:  # this account already has a full lane: back to the table for later
            delay = max(5.0, self.policy.timeout) * (1 + random.random())
            await self._defer(overflow, self._clock() + delay)
        # Rows deferred or already held were leased into the future, so claiming again at
        # once terminates; it reaches other accounts' rows behind a large backlog quickly.
        return len(batch)

    async def _defer(self, ids: list[int], until: float) -> None:
        """Reschedule without using up an attempt."""
        self.outcomes["deferred"] += len(ids)
        when = datetime.fromtimestamp(until, UTC)
        async with connect(self._engine, write=True) as conn:
            await conn.execute(
                update(webhook_deliveries)
                .where(webhook_deliveries.c.id.in_(ids), webhook_deliveries.c.status == "pending")
                .values(next_attempt_at=when))

    async def _pump(self) -> None:
        start, skipped = self.lanes.take(self._clock())
        for job in start:
            task = asyncio.create_task(self._run_job(job))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
        if skipped:  # the host's breaker is open: try again after its cool-down
            latest = max(until for _, until in skipped)
            await self._defer([job.id for job, _ in skipped],
                              latest + random.uniform(0, self.policy.timeout))

    async def _run_job(self, job: Job) -> None:
        delivery: store.Delivery = job.item
        attempt = delivery.attempts + 1
        outcome = _Outcome(error=PROTOCOL_ERROR)
        try:
            outcome = await self._attempt(delivery, attempt)
        except Exception as exc:  # a bug must not leak the slot or stop the dispatcher
            log.error("unexpected %s sending webhook %d", type(exc).__name__, delivery.id)
        finally:  # the slot is released even when cancelled
            self.lanes.done(job, outcome.host_ok, self._clock())
            self._wake.set()  # the run loop may start or claim more
        if outcome.error == DATABASE_UNAVAILABLE:
            # Our fault, not the receiver's: no attempt is spent; the row's lease runs out
            # and it is claimed again once the database answers.
            self.outcomes["deferred"] += 1
            return
        await self._record(delivery, job.host, attempt, outcome)

    async def _attempt(self, delivery: store.Delivery, attempt: int) -> _Outcome:
        if (delivery.account_id is not None
                and self._account_for(delivery.address) != delivery.account_id):
            # Released (and maybe reserved by another account) since the message came:
            # never send it signed with the new holder's secret, nor to the old URL.
            return _Outcome(error=ADDRESS_RELEASED, final=True)
        # The payload is read now, not when claimed: only sends in flight hold one.
        try:
            async with connect(self._engine) as conn:
                payload = await store.payload_text(conn, delivery.id)
        except StorageUnavailable:
            return _Outcome(error=DATABASE_UNAVAILABLE)
        if payload is None:  # dropped: the message is gone
            return _Outcome(error="message deleted", final=True)
        secret = self._secret_for(delivery.address) if delivery.kind == "webhook" else None
        # Encoding and signing grow with the message (up to its full raw source): off-loop.
        body, signed = await asyncio.to_thread(_encode, payload, secret)
        headers = {"Content-Type": "application/json"}
        if delivery.kind == "webhook":
            if signed:
                headers["X-Mailsac-Signature"] = signed
            headers["X-Mailsac-Delivery"] = str(delivery.id)
            headers["X-Mailsac-Attempt"] = str(attempt)
        try:
            url = httpx.URL(delivery.url)
            if url.scheme not in ("http", "https"):
                return _Outcome(error=INVALID_URL, final=True)
            host, port = origin(url)
        except (httpx.InvalidURL, UnicodeError, ValueError):
            return _Outcome(error=INVALID_URL, final=True)
        try:
            async with asyncio.timeout(self.policy.timeout):
                checked = await self.guard.check(host, port)
                with pinned(checked):
                    async with self._client.stream("POST", url, content=body,
                                                   headers=headers) as response:
                        code = response.status_code  # the body is never read
        except DestinationRefused:
            return _Outcome(error=REFUSED, final=True)
        except (ResolveFailed, httpx.ConnectError, httpx.ConnectTimeout, httpx.ProxyError):
            return _Outcome(error=CONNECT_FAILED, host_ok=False)
        except (TimeoutError, httpx.TimeoutException):
            return _Outcome(error=TIMEOUT, host_ok=False)
        except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError):
            return _Outcome(error=PROTOCOL_ERROR, host_ok=False)
        if 200 <= code < 300:
            return _Outcome(code=code, host_ok=True)
        return _Outcome(code=code, error=f"http {code}", host_ok=True)

    async def _record(self, delivery: store.Delivery, host: str, attempt: int,
                      outcome: _Outcome) -> None:
        if outcome.error is None:
            status, when = "delivered", self._now()
        elif outcome.final or attempt >= self.policy.max_attempts:
            status, when = "failed", self._now()
            log.warning("webhook %d to host %s failed for good: %s", delivery.id, host,
                        outcome.error)
        else:
            status = "pending"
            when = self._now() + timedelta(seconds=self.policy.delay(attempt))
        self.outcomes["retry" if status == "pending" else status] += 1
        try:
            async with connect(self._engine, write=True) as conn:
                await store.record_attempt(conn, delivery.id, status=status, attempts=attempt,
                                           next_attempt_at=when, code=outcome.code,
                                           error=outcome.error)
        except Exception as exc:  # the lease expires and the delivery is retried
            log.warning("could not record webhook attempt %d: %s", delivery.id,
                        type(exc).__name__)

    async def close(self) -> None:
        for task in list(self._inflight):
            task.cancel()
        await asyncio.gather(*self._inflight, return_exceptions=True)
        await self._client.aclose()
        self.guard.close()
