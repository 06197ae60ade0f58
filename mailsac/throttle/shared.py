"""Throttle counts shared between the nodes of one cluster: the pure merge logic (no I/O).

Each node keeps deciding on its own in-process :class:`~mailsac.throttle.counter.Counter`
(exact for what it saw itself) and adds an estimate of what the *other* nodes of its
cluster counted for the same key. The two halves meet in a table (see
:mod:`mailsac.storage.shared_throttle`); a background task (:mod:`mailsac.throttle_sync`)
calls :meth:`SharedCounts.outgoing` / :meth:`SharedCounts.merge` once per sync interval.

Time buckets. Every limit's window is cut into :data:`BUCKETS_PER_WINDOW` buckets of wall
clock time (5 s for a 60 s window). A node publishes, per key and bucket, how many events it
recorded in that bucket (an absolute count, so a retried write is harmless). A reader sums the
other nodes' buckets that overlap its sliding window, weighting the oldest, partly expired
bucket by the fraction still inside it (the usual sliding-window-counter estimate).

What is written (bounded). Only keys that changed since the last sync and are *shared*: their
local count reached :data:`SHARE_FRACTION` of the limit (5 %), or another node already
publishes them ("known heavy"). The first write of a key carries its whole local window count,
so nothing counted before it became heavy is lost. At most ``max_rows`` rows per sync, the
keys nearest their limit first; the rest stay pending for the next sync. A flood of distinct
light keys (one message each) therefore writes nothing.

Consistency given (``N`` nodes in a cluster, sync interval ``I``):

* Propagation delay: an event is visible to the other nodes at most about ``2 I`` after it
  happened (its node's next write, then each reader's next read), one interval on average.
* Overshoot: a sender spreading over the nodes gets at most about ``(N - 1) x rate x 2 I``
  events more than the limit (``rate`` = its accepted events per second per node), plus, if
  ``N > 1 / SHARE_FRACTION`` (20 nodes), up to ``N x 5 %`` of the limit hidden below the
  sharing threshold. A sender that stays at the limit is refused on every node once the
  counts have propagated. Never under-admits: counts are not double counted, except that a
  key's first write dates its older events to the current bucket (they then expire up to one
  window later than they should: conservative by at most ~5 % of the limit).
* Fail-open: if the database is slow or unavailable, remote estimates are dropped after
  :data:`STALE_SYNCS` failed intervals and each node limits on its own counts, i.e. a sender
  may get up to ``N`` times the limit until the database answers again.
* Clocks: buckets use wall-clock time; node clocks should agree to well under a bucket (NTP).
  Nodes of one cluster must use the same ``MAILSAC_LIMITS`` windows.

Not thread-safe (event loop only), like the counter.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from mailsac.throttle.counter import Counter, key_hash
from mailsac.throttle.limits import Limit

BUCKETS_PER_WINDOW = 12
SHARE_FRACTION = 0.05
STALE_SYNCS = 3
MAX_TALLY_KEYS = 100_000  # distinct keys tallied per limit and bucket (more: not shared)
MAX_SHARED_KEYS = 50_000  # keys remembered as shared per limit


def signed_hash(key: str) -> int:
    """The key's 64-bit counter hash as a signed integer (PostgreSQL ``bigint``)."""
    h = key_hash(key)
    return h - (1 << 64) if h >= 1 << 63 else h


@dataclass(frozen=True, slots=True)
class CountRow:
    """One node's count of one key in one time bucket (a row of the shared table).

    ``ends_at`` is when the bucket ends, ``expires_at`` when it has left the window (both
    wall-clock epoch seconds). ``key`` is only known to the writer (never stored).
    """

    namespace: str
    key_hash: int
    bucket: int
    count: int
    ends_at: float
    expires_at: float
    key: str = ""


@dataclass(frozen=True, slots=True)
class _Remote:
    total: int  # the other nodes' estimated events in the window, at the last merge
    buckets: tuple[tuple[float, int], ...]  # (bucket end, count), oldest first


@dataclass(slots=True)
class _State:
    """Per-limit sharing state."""

    limit: Limit
    width: float  # bucket width in seconds
    share_min: int  # local count from which a key is shared
    bucket: int  # the bucket the tallies belong to
    tally: dict[str, int] = field(default_factory=dict)  # events per key in ``bucket``
    sent: dict[str, int] = field(default_factory=dict)  # last written tally per key
    dirty: set[str] = field(default_factory=set)  # keys changed since the last write
    shared: dict[str, int] = field(default_factory=dict)  # key -> last bucket written
    remote: dict[int, _Remote] = field(default_factory=dict)
    remote_total: int = 0


class SharedCounts:
    """The node's view of the cluster's counts, per limit (see the module docstring).

    :meth:`record` and :meth:`remote` are on the decision path (a few dict operations);
    :meth:`outgoing`, :meth:`committed`, :meth:`merge` and :meth:`clear_remote` are called by
    the sync task. ``clock`` is wall-clock time (shared by all nodes).
    """

    def __init__(self, counter: Counter, limits: Iterable[Limit], *, max_rows: int = 500,
                 clock: Callable[[], float] = time.time,
                 share_fraction: float = SHARE_FRACTION) -> None:
        self.counter = counter
        self.clock = clock
        self.max_rows = max_rows
        self.untallied = 0
        """Events not tallied because a bucket already held MAX_TALLY_KEYS keys (metric)."""
        now = clock()
        self._states: dict[str, _State] = {}
        for limit in limits:
            width = limit.window_seconds / BUCKETS_PER_WINDOW
            self._states[limit.namespace] = _State(
                limit, width, max(1, math.ceil(share_fraction * limit.max_count)),
                math.floor(now / width))

    # -- decision path ------------------------------------------------------------------

    def record(self, namespace: str, key: str) -> None:
        """Tally one event this node admitted."""
        state = self._states.get(namespace)
        if state is None:
            return
        tally = state.tally
        count = tally.get(key)
        if count is None:
            if len(tally) >= MAX_TALLY_KEYS:
                self.untallied += 1
                return
            count = 0
        tally[key] = count + 1
        state.dirty.add(key)

    def remote(self, namespace: str, key: str) -> int:
        """The other nodes' events for ``key`` in the window (as of the last merge)."""
        state = self._states.get(namespace)
        if state is None or not state.remote:
            return 0
        found = state.remote.get(signed_hash(key))
        return 0 if found is None else found.total

    def retry_after(self, namespace: str, key: str, excess: int) -> float:
        """Seconds until the other nodes' share of ``key`` has dropped by ``excess`` events
        (exact to within one bucket width, rounded up; the local counts held constant)."""
        state = self._states[namespace]
        found = state.remote.get(signed_hash(key))
        window = state.limit.window_seconds
        if found is None:
            return window
        now = self.clock()
        target = found.total - excess
        for end, _ in found.buckets:
            at = end + window  # this bucket has fully left the window then
            if at > now and _estimate(found.buckets, at, window, state.width) <= target:
                return max(at - now, 0.001)
        return window

    # -- sync task ----------------------------------------------------------------------

    def outgoing(self) -> list[CountRow]:
        """The rows to write now (at most ``max_rows``), then move to a new bucket if due.

        Keys left out by the cap stay pending. Call :meth:`committed` once they are written.
        """
        now = self.clock()
        candidates: list[tuple[float, _State, str, int]] = []
        for namespace, state in self._states.items():
            for key in state.dirty:
                local = self.counter.count(namespace, key)
                if key in state.shared or local >= state.share_min \
                        or signed_hash(key) in state.remote:
                    candidates.append((local / state.limit.max_count, state, key, local))
            state.dirty.clear()
        chosen = heapq.nlargest(self.max_rows, candidates, key=lambda c: c[0])
        if len(chosen) < len(candidates):
            chosen_ids = {(id(state), key) for _, state, key, _ in chosen}
            for _, state, key, _ in candidates:
                if (id(state), key) not in chosen_ids:
                    state.dirty.add(key)  # next sync
        rows: list[CountRow] = []
        for _, state, key, local in chosen:
            if key not in state.shared:
                state.tally[key] = max(local, state.tally.get(key, 0))  # carry older events
            state.shared.pop(key, None)
            state.shared[key] = state.bucket  # most recent last
            end = (state.bucket + 1) * state.width
            rows.append(CountRow(state.limit.namespace, signed_hash(key), state.bucket,
                                 state.tally[key], end, end + state.limit.window_seconds,
                                 key))
        for state in self._states.values():
            current = math.floor(now / state.width)
            if current != state.bucket:
                self._roll(state, current)
        return rows

    def committed(self, rows: Iterable[CountRow]) -> None:
        """``rows`` (from :meth:`outgoing`) are in the table."""
        for row in rows:
            state = self._states.get(row.namespace)
            if state is not None and row.bucket == state.bucket:
                state.sent[row.key] = row.count

    def requeue(self, rows: Iterable[CountRow]) -> None:
        """``rows`` could not be written: try again at the next sync (same bucket only)."""
        for row in rows:
            state = self._states.get(row.namespace)
            if state is not None and row.bucket == state.bucket and row.key in state.tally:
                state.dirty.add(row.key)

    def _roll(self, state: _State, current: int) -> None:
        """Start bucket ``current``: pending, unwritten events move into it."""
        tally: dict[str, int] = {}
        for key in state.dirty:
            unsent = state.tally.get(key, 0) - state.sent.get(key, 0)
            if unsent > 0:
                tally[key] = unsent
        state.dirty = set(tally)
        state.tally, state.sent, state.bucket = tally, {}, current
        oldest = current - BUCKETS_PER_WINDOW - 1
        shared = state.shared
        while shared and (len(shared) > MAX_SHARED_KEYS or next(iter(shared.values())) < oldest):
            del shared[next(iter(shared))]

    def merge(self, rows: Iterable[CountRow]) -> None:
        """Replace the remote view with ``rows``: the other nodes' counts, summed per
        ``(namespace, key hash, bucket)`` (unknown namespaces are ignored)."""
        now = self.clock()
        grouped: dict[str, dict[int, list[tuple[float, int]]]] = {}
        for row in rows:
            if row.namespace in self._states and row.count > 0:
                grouped.setdefault(row.namespace, {}).setdefault(row.key_hash, []).append(
                    (row.ends_at, row.count))
        for namespace, state in self._states.items():
            window = state.limit.window_seconds
            remote: dict[int, _Remote] = {}
            total = 0
            for h, buckets in grouped.get(namespace, {}).items():
                buckets.sort()
                estimate = _estimate(buckets, now, window, state.width)
                if estimate > 0:
                    remote[h] = _Remote(estimate, tuple(buckets))
                    total += estimate
            state.remote, state.remote_total = remote, total

    def clear_remote(self) -> None:
        """Forget the other nodes' counts (fail-open when the database is unreachable)."""
        for state in self._states.values():
            state.remote, state.remote_total = {}, 0

    def remote_totals(self) -> dict[str, int]:
        """``{limit name: the other nodes' events in the window, all keys}`` (a metric)."""
        return {s.limit.name: s.remote_total for s in self._states.values()}


def _estimate(buckets: Iterable[tuple[float, int]], now: float, window: float,
              width: float) -> int:
    """Events of ``(bucket end, count)`` buckets inside the window ending at ``now``; a
    partly expired bucket counts for the fraction of it still inside (rounded)."""
    start = now - window
    total = 0.0
    for end, count in buckets:
        total += count * min(1.0, max(0.0, (end - start) / width))
    return int(total + 0.5)
