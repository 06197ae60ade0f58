"""numpy storage of :mod:`mailsac.throttle.counter` (private): one Namespace per window.

A :class:`Namespace` is a circular log of ``(key hash, expiry)`` plus a count table, an
open-addressing hash table with linear probing: ``keys[i]`` is a 64-bit key hash (0 marks an
empty slot) and ``counts[i]`` its number of live entries in the log. Data lives in numpy
arrays (compact, and vectorised for resizing, scans and top-N); single elements are read and
written through ``memoryview`` casts, which are faster than numpy scalar indexing from Python
and yield plain ``int``/``float`` objects.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np
import numpy.typing as npt

U64 = npt.NDArray[np.uint64]
U32 = npt.NDArray[np.uint32]
F64 = npt.NDArray[np.float64]

MIN_RING = 64
MIN_TABLE = 128


def u64_view(arr: U64) -> memoryview[int]:
    """Element view of a uint64 array: ``view[i]`` reads/writes a Python ``int``."""
    return arr.data.cast("B").cast("Q")


def u32_view(arr: U32) -> memoryview[int]:
    """Element view of a uint32 array."""
    return arr.data.cast("B").cast("I")


def f64_view(arr: F64) -> memoryview[float]:
    """Element view of a float64 array."""
    return arr.data.cast("B").cast("d")


def linearize(arr: npt.NDArray[Any], head: int, size: int, capacity: int) -> npt.NDArray[Any]:
    """Copy the ``size`` ring elements starting at ``head`` into a fresh array of ``capacity``."""
    out = np.zeros(capacity, dtype=arr.dtype)
    first = min(size, len(arr) - head)
    out[:first] = arr[head : head + first]
    out[first:size] = arr[: size - first]
    return out


def build_table(keys: U64, counts: U32, capacity: int) -> tuple[U64, U32]:
    """Build a linear-probing table of ``capacity`` (a power of two) from unique non-zero keys.

    Vectorised: keys sorted by home slot are placed at ``max(home, previous + 1)``, which is
    exactly what inserting them one by one in that order would do; the few that would run
    past the end (and must wrap to slot 0) are inserted one by one afterwards.
    """
    mask = capacity - 1
    out_keys = np.zeros(capacity, dtype=np.uint64)
    out_counts = np.zeros(capacity, dtype=np.uint32)
    if len(keys) == 0:
        return out_keys, out_counts
    # Sort by home slot: pack (home, index) into one int64 (home < 2**31, index < 2**32),
    # which numpy sorts several times faster than an argsort.
    packed = ((keys & np.uint64(mask)).astype(np.int64) << 32) | np.arange(len(keys))
    packed.sort()
    order = packed & 0xFFFFFFFF
    ranks = np.arange(len(keys), dtype=np.int64)
    pos = np.maximum.accumulate((packed >> 32) - ranks) + ranks
    keys, counts = keys[order], counts[order]
    fit = int(np.searchsorted(pos, capacity))  # pos is increasing: the fitting ones lead
    out_keys[pos[:fit]] = keys[:fit]
    out_counts[pos[:fit]] = counts[:fit]
    if fit < len(keys):
        kv = u64_view(out_keys)
        cv = u32_view(out_counts)
        for key, count in zip(keys[fit:].tolist(), counts[fit:].tolist(), strict=True):
            slot = key & mask
            while kv[slot]:
                slot = (slot + 1) & mask
            kv[slot] = key
            cv[slot] = count
    return out_keys, out_counts


def nth_index(ring: U64, head: int, size: int, key: int, n: int) -> int | None:
    """Ring index of the ``n``-th (1-based) oldest element equal to ``key``, or None.

    Scans forward from ``head`` in growing vectorised chunks, so a key that is dense near the
    head (a flooding sender) is found after a few microseconds.
    """
    capacity = len(ring)
    target = np.uint64(key)
    start, remaining, found, chunk = head, size, 0, 1024
    while remaining > 0:
        length = min(chunk, remaining, capacity - start)
        hits = np.flatnonzero(ring[start : start + length] == target)
        if found + len(hits) >= n:
            return start + int(hits[n - found - 1])
        found += len(hits)
        start = (start + length) % capacity
        remaining -= length
        chunk = min(chunk * 4, 1 << 18)
    return None


class Namespace:
    """A circular log and a count table for one window (see the module docstrings)."""

    __slots__ = (
        "window", "max_entries", "head", "size", "last_exp", "used", "names", "names_max",
        "ring_hash", "ring_exp", "rh", "re", "rmask", "tab_key", "tab_count", "tk", "tc", "tmask",
    )  # fmt: skip

    def __init__(self, window: float, max_entries: int, names_max: int) -> None:
        self.window = window
        self.max_entries = max_entries
        self.head = self.size = self.used = 0
        self.last_exp = float("-inf")
        self.names: OrderedDict[int, str] = OrderedDict()
        self.names_max = names_max
        self._set_ring(np.zeros(MIN_RING, np.uint64), np.zeros(MIN_RING, np.float64))
        self._set_table(np.zeros(MIN_TABLE, np.uint64), np.zeros(MIN_TABLE, np.uint32))

    def _set_ring(self, hashes: U64, expiries: F64) -> None:
        self.ring_hash, self.ring_exp = hashes, expiries
        self.rh, self.re = u64_view(hashes), f64_view(expiries)
        self.rmask = len(hashes) - 1
        self.head = 0

    def _set_table(self, keys: U64, counts: U32) -> None:
        self.tab_key, self.tab_count = keys, counts
        self.tk, self.tc = u64_view(keys), u32_view(counts)
        self.tmask = len(keys) - 1

    def resize_ring(self, capacity: int) -> None:
        head, size = self.head, self.size
        self._set_ring(
            linearize(self.ring_hash, head, size, capacity),
            linearize(self.ring_exp, head, size, capacity),
        )

    def resize_table(self, capacity: int) -> None:
        occupied = self.tab_key != 0
        self._set_table(*build_table(self.tab_key[occupied], self.tab_count[occupied], capacity))

    def pop(self, now: float, force: int = 0) -> int:
        """Drop head entries due at ``now`` plus ``force`` more (evictions); return how many.

        Each dropped entry decrements its key's count; a count reaching 0 frees the slot.
        """
        rh, re, tk, tc = self.rh, self.re, self.tk, self.tc
        rmask, mask = self.rmask, self.tmask
        head = self.head
        size = start = self.size
        while size:
            if re[head] > now:
                if not force:
                    break
                force -= 1
            h = rh[head]
            head = (head + 1) & rmask
            size -= 1
            i = h & mask
            while (k := tk[i]) != h:
                if not k:  # pragma: no cover - would mean a corrupted table
                    raise AssertionError("throttle counter table lost a key")
                i = (i + 1) & mask
            c = tc[i] - 1
            if c:
                tc[i] = c
            else:
                self._free(i)
        self.head, self.size = head, size
        return start - size

    def _free(self, i: int) -> None:
        """Empty table slot ``i`` by backward-shift deletion, which keeps every probe chain
        gap-free without tombstones."""
        tk, tc, mask = self.tk, self.tc, self.tmask
        self.used -= 1
        j = i
        while True:
            j = (j + 1) & mask
            k = tk[j]
            if not k:
                break
            home = k & mask
            if (home <= i < j) or (i < j < home) or (j < home <= i):
                tk[i] = k
                tc[i] = tc[j]
                i = j
        tk[i] = 0
        tc[i] = 0

    def shrink_if_sparse(self) -> None:
        """Release memory after a flood: resize to twice the live size once below 1/8."""
        if self.rmask >= MIN_RING and self.size << 3 <= self.rmask:
            self.resize_ring(max(MIN_RING, 1 << (2 * self.size).bit_length()))
        if self.tmask >= MIN_TABLE and self.used << 3 <= self.tmask:
            self.resize_table(max(MIN_TABLE, 1 << (4 * self.used).bit_length()))
