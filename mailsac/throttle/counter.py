"""Namespaced sliding-window counts with auto-expiry and a hard memory cap.

Modelled on Mailsac's "dracula": ``put(namespace, key)`` records an entry that expires
``window`` seconds later and returns how many live entries that key has in the namespace.

Layout (per namespace; all numpy arrays, so memory per entry is fixed and small):

* a circular log of ``(key hash: uint64, expiry: float64)`` -- 16 bytes per live entry. One
  window per namespace means insertion order is expiry order: expiring is popping the head.
* an open-addressing count table (linear probing, load <= 1/2) of ``(key hash: uint64,
  count: uint32)`` -- 12 bytes per slot, so at most ~24-48 bytes per *distinct* live key.
* a bounded LRU ``hash -> display string`` for at most ``display_names`` keys, used only
  by :meth:`Counter.top`; keys seen once are not admitted once it is full, so a flood of
  unique keys cannot churn it.

Keys are hashed with ``xxhash.xxh3_64_intdigest``; two keys colliding on 64 bits share a count
(probability ~n^2 / 2^65, i.e. ~3e-8 at a million keys). Memory is bounded by ``max_entries``
(all namespaces) and optional per-namespace caps: at the cap the oldest entry is evicted
first and :attr:`Counter.evictions` is incremented. Tables and logs shrink again after floods.

Not thread-safe: use one Counter from the event loop only (every method is synchronous and
short, so no locking is needed there). Time comes from the injected ``clock``; an entry put at
``t`` is live while ``clock() < t + window``. If the clock goes backwards, new entries are
given the previous expiry so the log stays ordered.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from xxhash import xxh3_64_intdigest

from mailsac.throttle._store import Namespace, nth_index

_DISPLAY_MAX_CHARS = 200


def key_hash(key: str) -> int:
    """The non-zero 64-bit hash a key is stored under (lone surrogates are accepted)."""
    try:
        data = key.encode()
    except UnicodeEncodeError:
        data = key.encode("utf-8", "surrogatepass")
    return xxh3_64_intdigest(data) or 1


@dataclass(frozen=True, slots=True)
class TopKey:
    """One row of :meth:`Counter.top`: a key's display form and its live count."""

    key: str
    count: int


class Counter:
    """In-process, namespaced counts of entries put in the last ``window`` seconds.

    Declare each namespace with :meth:`declare` before use. ``max_entries`` caps live entries
    across all namespaces; ``display_names`` bounds the per-namespace hash -> key-string map
    used by :meth:`top`. See the module docstring for layout, limits and thread-safety.
    """

    def __init__(
        self,
        *,
        max_entries: int = 1_000_000,
        clock: Callable[[], float] = time.monotonic,
        display_names: int = 4096,
    ) -> None:
        if not 0 < max_entries <= 2**30:
            raise ValueError("max_entries must be in 1..2**30")
        self.max_entries = max_entries
        self.clock = clock
        self.display_names = display_names
        self.evictions = 0
        """Entries dropped before expiry because a cap was reached (a metric)."""
        self._live = 0
        self._ns: dict[str, Namespace] = {}

    def declare(self, namespace: str, window: float, *, max_entries: int | None = None) -> None:
        """Declare ``namespace`` with its window in seconds (idempotent for the same window)."""
        if not window > 0:
            raise ValueError(f"window of {namespace!r} must be positive")
        existing = self._ns.get(namespace)
        if existing is not None:
            if existing.window != window:
                raise ValueError(f"namespace {namespace!r} already has window {existing.window}")
            return
        if max_entries is not None and max_entries < 1:
            raise ValueError("max_entries must be positive")
        cap = min(max_entries or self.max_entries, self.max_entries)
        self._ns[namespace] = Namespace(float(window), cap, self.display_names)

    def window(self, namespace: str) -> float:
        """The window (seconds) ``namespace`` was declared with."""
        return self._ns[namespace].window

    @property
    def namespaces(self) -> list[str]:
        """Declared namespace names."""
        return list(self._ns)

    @property
    def nbytes(self) -> int:
        """Bytes held by the logs and count tables (display names excluded: they are bounded
        by ``display_names`` x 200 characters per namespace)."""
        return sum(
            ns.ring_hash.nbytes + ns.ring_exp.nbytes + ns.tab_key.nbytes + ns.tab_count.nbytes
            for ns in self._ns.values()
        )

    def __len__(self) -> int:
        """Live entries in all namespaces (after expiring whatever is due)."""
        self.expire_all()
        return self._live

    def put(self, namespace: str, key: str) -> int:
        """Record one entry for ``key``; return the key's live count including it."""
        ns = self._ns[namespace]
        now = self.clock()
        if ns.size and ns.re[ns.head] <= now:
            self._live -= ns.pop(now)
            if ns.size << 3 <= ns.rmask or ns.used << 3 <= ns.tmask:
                ns.shrink_if_sparse()
        if ns.size >= ns.max_entries:
            self._evict(ns)
        if self._live >= self.max_entries:
            self._make_room(now)
        try:
            h = xxh3_64_intdigest(key.encode()) or 1
        except UnicodeEncodeError:
            h = key_hash(key)
        size = ns.size
        if size > ns.rmask:
            ns.resize_ring(2 * size)
        exp = now + ns.window
        if exp < ns.last_exp:
            exp = ns.last_exp
        ns.last_exp = exp
        slot = (ns.head + size) & ns.rmask
        ns.rh[slot] = h
        ns.re[slot] = exp
        ns.size = size + 1
        self._live += 1
        tk, mask = ns.tk, ns.tmask
        i = h & mask
        while True:
            k = tk[i]
            if k == h:
                c = ns.tc[i] + 1
                ns.tc[i] = c
                break
            if not k:
                tk[i] = h
                ns.tc[i] = c = 1
                ns.used += 1
                if ns.used * 2 > mask:
                    ns.resize_table(2 * (mask + 1))
                break
            i = (i + 1) & mask
        names = ns.names
        if h in names:
            names.move_to_end(h)
        elif c > 1 or len(names) < ns.names_max:
            names[h] = key[:_DISPLAY_MAX_CHARS]
            if len(names) > ns.names_max:
                names.popitem(last=False)
        return c

    def count(self, namespace: str, key: str) -> int:
        """Live entries of ``key`` in ``namespace``."""
        ns = self._ns[namespace]
        now = self.clock()
        if ns.size and ns.re[ns.head] <= now:
            self._expire(ns, now)
        try:
            h = xxh3_64_intdigest(key.encode()) or 1
        except UnicodeEncodeError:
            h = key_hash(key)
        tk, mask = ns.tk, ns.tmask
        i = h & mask
        while True:
            k = tk[i]
            if k == h:
                return ns.tc[i]
            if not k:
                return 0
            i = (i + 1) & mask

    def count_namespace(self, namespace: str) -> int:
        """Live entries (of all keys) in ``namespace``."""
        ns = self._ns[namespace]
        self._expire(ns, self.clock())
        return ns.size

    def distinct_keys(self, namespace: str) -> int:
        """Keys with at least one live entry in ``namespace``."""
        ns = self._ns[namespace]
        self._expire(ns, self.clock())
        return ns.used

    def nth_expiry(self, namespace: str, key: str, n: int) -> float | None:
        """When the ``n``-th oldest live entry of ``key`` expires (None if it has fewer).

        A vectorised scan of the log from its oldest end: cheap for keys that are frequent
        near the head, O(live entries) in the worst case, so cache the answer (the limiter does).
        """
        ns = self._ns[namespace]
        self._expire(ns, self.clock())
        if n < 1:
            return None
        index = nth_index(ns.ring_hash, ns.head, ns.size, key_hash(key), n)
        return None if index is None else ns.re[index]

    def top(self, namespace: str, n: int = 10) -> list[TopKey]:
        """The ``n`` keys with most live entries, most first.

        Keys are shown as first seen (truncated to 200 chars) while remembered in the bounded
        display map, otherwise as ``#<hash in hex>``.
        """
        ns = self._ns[namespace]
        self._expire(ns, self.clock())
        counts = ns.tab_count
        n = min(n, ns.used)
        if n <= 0:
            return []
        idx = np.argpartition(counts, len(counts) - n)[len(counts) - n :]
        idx = idx[np.argsort(-counts[idx].astype(np.int64), kind="stable")]
        rows = []
        for h, c in zip(ns.tab_key[idx].tolist(), counts[idx].tolist(), strict=True):
            rows.append(TopKey(ns.names.get(h) or f"#{h:016x}", c))
        return rows

    def expire_all(self) -> None:
        """Expire due entries in every namespace (others do so lazily when touched)."""
        now = self.clock()
        for ns in self._ns.values():
            self._expire(ns, now)

    def _expire(self, ns: Namespace, now: float) -> None:
        if ns.size and ns.re[ns.head] <= now:
            self._live -= ns.pop(now)
            if ns.size << 3 <= ns.rmask or ns.used << 3 <= ns.tmask:
                ns.shrink_if_sparse()

    def _evict(self, ns: Namespace) -> None:
        self._live -= ns.pop(float("-inf"), force=1)
        self.evictions += 1

    def _make_room(self, now: float) -> None:
        """At the global cap: expire everything due, then evict the oldest entries overall."""
        for ns in self._ns.values():
            self._expire(ns, now)
        while self._live >= self.max_entries:
            oldest = min(
                (ns for ns in self._ns.values() if ns.size),
                key=lambda ns: ns.re[ns.head] - ns.window,
            )
            self._evict(oldest)
