"""Counter of mailsac.throttle: expiry, caps, eviction, top-N, bounded memory, model check."""

from __future__ import annotations

import random
from collections import deque

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailsac.throttle import Counter, key_hash, org_domain
from mailsac.throttle._store import build_table, u64_view


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make(window: float = 60.0, **kwargs: int) -> tuple[Counter, FakeClock]:
    clock = FakeClock()
    counter = Counter(clock=clock, **kwargs)
    counter.declare("ns", window)
    return counter, clock


@pytest.mark.parametrize(
    ("offset", "expected"),
    [(0.0, 1), (30.0, 1), (59.999, 1), (60.0, 0), (60.001, 0), (3600.0, 0)],
)
def test_entry_expires_exactly_at_window_boundary(offset: float, expected: int) -> None:
    counter, clock = make(window=60.0)
    assert counter.put("ns", "k") == 1
    clock.advance(offset)
    assert counter.count("ns", "k") == expected
    assert counter.count_namespace("ns") == expected


@pytest.mark.parametrize(
    ("put_times", "at", "expected"),
    [
        ([0, 10, 20], 20, 3),
        ([0, 10, 20], 60, 2),  # the t=0 entry expires at exactly t=60
        ([0, 10, 20], 70, 1),
        ([0, 10, 20], 80, 0),
        ([0, 0, 0, 59], 60, 1),
        ([5, 5, 5], 64.9, 3),
    ],
)
def test_sliding_window_counts(put_times: list[float], at: float, expected: int) -> None:
    counter, clock = make(window=60.0)
    start = clock.now
    for i, t in enumerate(put_times):
        clock.now = start + t
        assert counter.put("ns", "k") == 1 + i - sum(1 for p in put_times[:i] if p + 60 <= t)
    clock.now = start + at
    assert counter.count("ns", "k") == expected


def test_put_returns_count_per_key_and_namespaces_are_independent() -> None:
    counter, clock = make()
    counter.declare("other", 10.0)
    assert [counter.put("ns", k) for k in ["a", "b", "a", "a"]] == [1, 1, 2, 3]
    assert counter.put("other", "a") == 1
    assert counter.count("ns", "a") == 3
    assert counter.count("ns", "missing") == 0
    assert counter.count_namespace("ns") == 4
    assert counter.distinct_keys("ns") == 2
    clock.advance(10)
    assert counter.count("other", "a") == 0
    assert counter.count("ns", "a") == 3
    assert len(counter) == 4


def test_declare_rejects_conflicting_window_and_unknown_namespace() -> None:
    counter, _ = make(window=60.0)
    counter.declare("ns", 60.0)  # idempotent
    with pytest.raises(ValueError):
        counter.declare("ns", 30.0)
    with pytest.raises(ValueError):
        counter.declare("bad", 0)
    with pytest.raises(KeyError):
        counter.put("undeclared", "k")


@pytest.mark.parametrize(
    ("cap", "keys", "survivors", "evictions"),
    [
        (3, ["a", "b", "c"], ["a", "b", "c"], 0),
        (3, ["a", "b", "c", "d"], ["b", "c", "d"], 1),
        (2, ["a", "b", "c", "d", "e"], ["d", "e"], 3),
        (1, ["a", "a", "a"], ["a"], 2),
    ],
)
def test_global_cap_evicts_oldest_first(
    cap: int, keys: list[str], survivors: list[str], evictions: int
) -> None:
    counter, clock = make(max_entries=cap)
    for key in keys:
        counter.put("ns", key)
        clock.advance(1)
    assert counter.count_namespace("ns") == min(cap, len(keys))
    assert counter.evictions == evictions
    assert sorted(k for k in set(keys) if counter.count("ns", k)) == sorted(set(survivors))


def test_eviction_picks_oldest_insertion_across_namespaces() -> None:
    counter, clock = make(window=10.0, max_entries=2)
    counter.declare("long", 1000.0)
    counter.put("long", "old")  # t=0, expires at 1000
    clock.advance(1)
    counter.put("ns", "short-lived")  # t=1, expires at 11: newer, though it expires sooner
    clock.advance(1)
    counter.put("ns", "new")  # at the cap: evicts the entry inserted first
    assert counter.evictions == 1
    assert counter.count("long", "old") == 0
    assert counter.count("ns", "short-lived") == 1
    assert counter.count("ns", "new") == 1


def test_expired_entries_do_not_count_towards_the_cap() -> None:
    counter, clock = make(window=10.0, max_entries=2)
    counter.declare("other", 10.0)
    counter.put("ns", "a")
    counter.put("ns", "b")
    clock.advance(10)
    counter.put("other", "c")
    counter.put("other", "d")
    assert counter.evictions == 0
    assert counter.count("other", "c") == 1


def test_per_namespace_cap() -> None:
    counter, _ = make(max_entries=100)
    counter.declare("small", 60.0, max_entries=3)
    for key in "abcde":
        counter.put("small", key)
    counter.put("ns", "x")
    assert counter.count_namespace("small") == 3
    assert counter.count("small", "a") == 0
    assert counter.count("small", "e") == 1
    assert counter.evictions == 2


def test_top_n_with_display_names() -> None:
    counter, _ = make()
    for key, times in [("spammer.example", 5), ("busy.example", 3), ("quiet.example", 1)]:
        for _ in range(times):
            counter.put("ns", key)
    top = counter.top("ns", 2)
    assert [(t.key, t.count) for t in top] == [("spammer.example", 5), ("busy.example", 3)]
    assert [t.count for t in counter.top("ns", 10)] == [5, 3, 1]
    assert counter.top("ns", 0) == []


def test_top_falls_back_to_hash_for_forgotten_names_and_keeps_heavy_keys() -> None:
    counter, _ = make(display_names=8)
    for i in range(1000):
        counter.put("ns", "heavy")
        counter.put("ns", f"unique-{i}")
    top = counter.top("ns", 3)
    assert (top[0].key, top[0].count) == ("heavy", 1000)
    names = {t.key for t in counter.top("ns", 1001)}
    assert len([n for n in names if not n.startswith("#")]) <= 8
    assert f"#{key_hash('unique-999'):016x}" in names or "unique-999" in names


def test_display_map_is_lru_admits_repeat_keys_and_ignores_one_off_floods() -> None:
    counter, _ = make(display_names=4)
    for i in range(4):
        counter.put("ns", f"once-{i}")  # fills the map while it has room
    for i in range(5):
        counter.put("ns", "heavy")  # admitted on its 2nd entry, then kept fresh by use
        counter.put("ns", f"repeat-{i}")
        counter.put("ns", f"repeat-{i}")  # each admitted on its 2nd entry, evicting the LRU
    for i in range(1000):
        counter.put("ns", f"flood-{i}")  # seen once: never admitted, so nothing is evicted
    top = counter.top("ns", 1014)
    assert (top[0].key, top[0].count) == ("heavy", 5)
    named = {t.key: t.count for t in top if not t.key.startswith("#")}
    assert named == {"heavy": 5, "repeat-2": 2, "repeat-3": 2, "repeat-4": 2}


def test_display_names_are_truncated() -> None:
    counter, _ = make()
    counter.put("ns", "x" * 5000)
    assert counter.top("ns", 1)[0].key == "x" * 200


def test_flood_of_unique_subdomains_collapses_to_one_org_key() -> None:
    counter, _ = make()
    for i in range(200_000):
        counter.put("ns", org_domain(f"bot@m{i}.a.b.c.d.sandbox.example.com") or "")
    assert counter.distinct_keys("ns") == 1
    assert counter.count("ns", "example.com") == 200_000
    # the log holds 16 bytes per entry (in a power-of-two ring); the count table stays minimal
    assert counter.nbytes == 16 * 262_144 + 12 * 128


def test_flood_of_unique_keys_stays_within_the_cap_and_shrinks_after() -> None:
    counter, clock = make(window=60.0, max_entries=10_000)
    for i in range(200_000):
        counter.put("ns", f"{i}.sub.example.com")
    assert counter.count_namespace("ns") == 10_000
    assert counter.evictions == 190_000
    assert counter.distinct_keys("ns") == 10_000
    flooded = counter.nbytes
    assert flooded <= 16 * 16_384 + 12 * 32_768  # log and table sized for 10k entries only
    clock.advance(60)
    assert counter.count_namespace("ns") == 0
    assert counter.nbytes == 16 * 64 + 12 * 128  # back to the initial sizes


def test_nth_expiry() -> None:
    counter, clock = make(window=60.0)
    start = clock.now
    for t, key in [(0, "a"), (1, "b"), (2, "a"), (3, "a")]:
        clock.now = start + t
        counter.put("ns", key)
    assert counter.nth_expiry("ns", "a", 1) == start + 60
    assert counter.nth_expiry("ns", "a", 3) == start + 63
    assert counter.nth_expiry("ns", "a", 4) is None
    assert counter.nth_expiry("ns", "b", 1) == start + 61
    assert counter.nth_expiry("ns", "zzz", 1) is None


def test_clock_going_backwards_keeps_entries_ordered() -> None:
    counter, clock = make(window=10.0)
    counter.put("ns", "a")
    clock.advance(-5)
    counter.put("ns", "a")  # gets the previous expiry, not an earlier one
    clock.advance(14.999)
    assert counter.count("ns", "a") == 2
    clock.advance(0.001)
    assert counter.count("ns", "a") == 0


def test_keys_with_lone_surrogates_are_accepted() -> None:
    counter, _ = make()
    assert counter.put("ns", "bad\udcff") == 1
    assert counter.count("ns", "bad\udcff") == 1
    assert counter.count("ns", "bad") == 0


def test_build_table_places_every_key_reachably_including_wraparound() -> None:
    capacity = 64
    rng = np.random.default_rng(7)
    keys = rng.integers(1, 2**62, 30, dtype=np.int64).astype(np.uint64)
    keys[:6] = (keys[:6] & ~np.uint64(capacity - 1)) | np.uint64(capacity - 1)  # home = last slot
    table, counts = build_table(keys, np.arange(1, 31, dtype=np.uint32), capacity)
    view = u64_view(table)
    for expected, key in enumerate(keys.tolist(), start=1):
        slot = key & (capacity - 1)
        while view[slot] != key:
            assert view[slot] != 0, "probe chain broken"
            slot = (slot + 1) % capacity
        assert counts[slot] == expected
    assert int((table != 0).sum()) == 30


def test_random_workload_matches_naive_model_through_growth_and_shrink() -> None:
    rng = random.Random(42)
    counter, clock = make(window=5.0)
    log: deque[tuple[float, str]] = deque()
    for step in range(30_000):
        clock.advance(rng.choice([0.0, 0.0, 0.001, 0.01, 0.5, 5.0]) if step % 7 == 0 else 0.0)
        key = str(rng.randrange(rng.choice([5, 300, 3000])))
        counter.put("ns", key)
        log.append((clock.now + 5.0, key))
        while log and log[0][0] <= clock.now:
            log.popleft()
        if step % 97 == 0:
            probe = str(rng.randrange(300))
            expiries = [t for t, k in log if k == probe]
            assert counter.count("ns", probe) == len(expiries)
            for n in (1, len(expiries) // 2 + 1, len(expiries), len(expiries) + 1):
                want = expiries[n - 1] if 0 < n <= len(expiries) else None
                assert counter.nth_expiry("ns", probe, n) == want
            assert counter.count_namespace("ns") == len(log)
            assert counter.distinct_keys("ns") == len({k for _, k in log})


ops = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.sampled_from(["a", "b"]), st.integers(0, 12)),
        st.tuples(st.just("advance"), st.sampled_from([0.0, 0.25, 1.0, 2.0, 3.0, 10.0])),
    ),
    max_size=120,
)


@settings(max_examples=200, deadline=None)
@given(ops)
def test_count_equals_puts_within_window_property(script: list[tuple[object, ...]]) -> None:
    windows = {"a": 3.0, "b": 10.0}
    clock = FakeClock(0.0)
    counter = Counter(clock=clock)
    for name, window in windows.items():
        counter.declare(name, window)
    puts: list[tuple[str, str, float]] = []
    for op in script:
        if op[0] == "advance":
            clock.advance(float(op[1]))  # type: ignore[arg-type]
            continue
        _, namespace, key_id = op
        key = f"k{key_id}"
        got = counter.put(str(namespace), key)
        puts.append((str(namespace), key, clock.now))
        assert got == sum(
            1 for n, k, t in puts if (n, k) == (namespace, key) and clock.now < t + windows[n]
        )
    for namespace, window in windows.items():
        live = [k for n, k, t in puts if n == namespace and clock.now < t + window]
        assert counter.count_namespace(namespace) == len(live)
        for key_id in range(13):
            assert counter.count(namespace, f"k{key_id}") == live.count(f"k{key_id}")


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 20), max_size=80), st.integers(1, 10))
def test_cap_keeps_the_newest_entries_property(keys: list[int], cap: int) -> None:
    counter, clock = make(max_entries=cap)
    for key in keys:
        counter.put("ns", str(key))
        clock.advance(0.5)
    newest = keys[-cap:] if keys else []
    assert counter.count_namespace("ns") == len(newest)
    assert counter.evictions == len(keys) - len(newest)
    for key in set(keys):
        assert counter.count("ns", str(key)) == newest.count(key)
