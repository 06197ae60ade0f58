"""Fair scheduling of webhook sends: per-account and per-host limits, circuit breakers.

The dispatcher hands every claimed delivery to :class:`Lanes` as a :class:`Job`. Jobs wait
in one bounded queue per account; :meth:`Lanes.take` starts them round-robin across
accounts while the global, per-account and per-destination-host in-flight limits allow.
So a tenant whose receiver never answers fills only its own lane (``per_account`` slots);
other accounts' deliveries keep flowing.

A :class:`Breaker` per destination host counts consecutive transport failures (connect
failures, timeouts). After ``failures`` of them the host is skipped for ``cooldown``
seconds: its jobs are handed back to be rescheduled without using up an attempt. After
the cool-down one probe is let through (half-open); success closes the breaker, failure
opens it again. HTTP answers of any status count as success here: the host is alive.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class FairnessLimits:
    """Concurrency limits and breaker parameters (see the module docstring)."""

    total: int = 32
    per_account: int = 4
    per_host: int = 8
    held_per_account: int = 16
    breaker_failures: int = 5
    breaker_cooldown: float = 60.0
    max_breakers: int = 10_000

    @property
    def lane_size(self) -> int:
        """Deliveries one account may have in memory (waiting plus in flight)."""
        return max(self.held_per_account, 2 * self.per_account)

    @property
    def max_held(self) -> int:
        """Deliveries kept in memory at most, all accounts together."""
        return max(self.total * 4, self.lane_size * 8)


@dataclass(slots=True)
class Job:
    """One delivery attempt waiting for, or holding, a slot."""

    id: int
    account: str
    host: str
    item: Any


@dataclass(slots=True)
class _HostState:
    failures: int = 0
    open_until: float = 0.0


@dataclass
class Breaker:
    """Per-host circuit breakers; only hosts that are failing are remembered (bounded)."""

    failures: int
    cooldown: float
    max_hosts: int = 10_000
    _hosts: dict[str, _HostState] = field(default_factory=dict)

    def open_until(self, host: str, now: float) -> float | None:
        """When the host is being skipped, the time it may be tried again; else None."""
        state = self._hosts.get(host)
        if state is None or state.open_until <= now:
            return None
        return state.open_until

    def half_open(self, host: str) -> bool:
        """True after a cool-down: only one probe may be in flight."""
        state = self._hosts.get(host)
        return state is not None and state.failures >= self.failures

    def record(self, host: str, ok: bool, now: float) -> None:
        if ok:
            self._hosts.pop(host, None)
            return
        state = self._hosts.pop(host, None) or _HostState()
        state.failures += 1
        if state.failures >= self.failures:
            state.open_until = now + self.cooldown
        self._hosts[host] = state  # re-inserted: the dict stays in recency order
        while len(self._hosts) > self.max_hosts:
            del self._hosts[next(iter(self._hosts))]


class Lanes:
    """Bounded per-account queues plus in-flight accounting (single event loop only)."""

    def __init__(self, limits: FairnessLimits) -> None:
        self.limits = limits
        self.breaker = Breaker(limits.breaker_failures, limits.breaker_cooldown,
                               limits.max_breakers)
        self._queues: dict[str, deque[Job]] = {}
        self._order: deque[str] = deque()  # accounts with waiting jobs, round-robin
        self._ids: set[int] = set()
        self.inflight = 0
        self._by_account: Counter[str] = Counter()
        self._by_host: Counter[str] = Counter()

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._ids

    @property
    def held(self) -> int:
        return len(self._ids)

    @property
    def room(self) -> int:
        return max(0, self.limits.max_held - len(self._ids))

    def add(self, job: Job) -> bool:
        """Queue ``job``; False when its account's queue (or the whole) is full."""
        queue = self._queues.get(job.account)
        waiting = len(queue) if queue is not None else 0
        if (waiting + self._by_account[job.account] >= self.limits.lane_size
                or self.room <= 0):
            return False
        if queue is None:
            queue = self._queues[job.account] = deque()
            self._order.append(job.account)
        queue.append(job)
        self._ids.add(job.id)
        return True

    def _host_free(self, host: str) -> bool:
        busy = self._by_host[host]
        limit = 1 if self.breaker.half_open(host) else self.limits.per_host
        return busy < limit

    def take(self, now: float) -> tuple[list[Job], list[tuple[Job, float]]]:
        """Jobs to start now, and jobs to reschedule (host breaker open) with their time."""
        start: list[Job] = []
        skipped: list[tuple[Job, float]] = []
        progress = True
        while progress and self.inflight < self.limits.total and self._order:
            progress = False
            for _ in range(len(self._order)):
                if self.inflight >= self.limits.total:
                    break
                account = self._order[0]
                self._order.rotate(-1)
                job = self._pick(account, now, skipped)
                if job is not None:
                    start.append(job)
                    progress = True
            self._drop_empty()
        return start, skipped

    def _pick(self, account: str, now: float, skipped: list[tuple[Job, float]]) -> Job | None:
        if self._by_account[account] >= self.limits.per_account:
            return None
        queue = self._queues[account]
        for job in list(queue):  # bounded by held_per_account
            until = self.breaker.open_until(job.host, now)
            if until is not None:
                queue.remove(job)
                self._ids.discard(job.id)
                skipped.append((job, until))
            elif self._host_free(job.host):
                queue.remove(job)
                self.inflight += 1
                self._by_account[account] += 1
                self._by_host[job.host] += 1
                return job
        return None

    def _drop_empty(self) -> None:
        for account in [a for a in self._order if not self._queues[a]]:
            self._order.remove(account)
            del self._queues[account]

    def done(self, job: Job, ok: bool | None, now: float) -> None:
        """A started job finished; ``ok`` None means "says nothing about the host"."""
        self.inflight -= 1
        self._ids.discard(job.id)
        for counter, key in ((self._by_account, job.account), (self._by_host, job.host)):
            counter[key] -= 1
            if counter[key] <= 0:
                del counter[key]
        if ok is not None:
            self.breaker.record(job.host, ok, now)
