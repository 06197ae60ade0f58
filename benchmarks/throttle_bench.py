"""Benchmark the throttle counter against a naive dict-of-deques baseline.

Reports (median of ``--runs`` runs, pinned to one CPU where the OS allows it):

* put+count throughput: each iteration calls ``put(ns, key)`` then ``count(ns, key)`` on a
  skewed pool of 10,000 IP-like keys with the real monotonic clock and a 0.1 s window, so
  entries expire continuously (steady state ~10^5 live entries); reported as calls/s (each
  put or count is one op) and pairs/s;
* limiter throughput: ``Limiter.hit_all`` over four default limits (messages/s);
* bytes per live entry at ``--entries`` (default 1M) live entries, all of distinct keys (the
  worst case for the count table) and of 10,000 keys, measured with tracemalloc in a fresh
  subprocess (so everything the structure retains is counted: arrays, tables, dicts, deques,
  floats, key strings) and cross-checked with the RSS delta of that process;
* the counter's exact array bytes per entry at several sizes (it steps at powers of two).

Usage: ``python benchmarks/throttle_bench.py [--runs 5] [--pairs 500000] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mailsac.throttle import Counter, Limiter, default_limits  # noqa: E402

WINDOW = 0.1


class CounterLike(Protocol):
    def declare(self, namespace: str, window: float) -> None: ...
    def put(self, namespace: str, key: str) -> int: ...
    def count(self, namespace: str, key: str) -> int: ...


class NaiveCounter:
    """The obvious design: ``{namespace: {key: deque of expiry times}}``, expired per key on
    access. Keys never touched again are never removed (the per-sender-metrics leak)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.windows: dict[str, float] = {}
        self.data: dict[str, dict[str, deque[float]]] = {}

    def declare(self, namespace: str, window: float) -> None:
        self.windows[namespace] = window
        self.data[namespace] = {}

    def put(self, namespace: str, key: str) -> int:
        now = self.clock()
        keys = self.data[namespace]
        times = keys.get(key)
        if times is None:
            times = keys[key] = deque()
        while times and times[0] <= now:
            times.popleft()
        times.append(now + self.windows[namespace])
        return len(times)

    def count(self, namespace: str, key: str) -> int:
        times = self.data[namespace].get(key)
        if not times:
            return 0
        now = self.clock()
        while times and times[0] <= now:
            times.popleft()
        return len(times)


def make(kind: str, max_entries: int = 4_000_000) -> CounterLike:
    if kind == "counter":
        return Counter(max_entries=max_entries)
    return NaiveCounter()


def key_pool(n: int = 10_000, draws: int = 500_000, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    pool = [f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}" for _ in range(n)]
    return [pool[int(rng.paretovariate(1.2)) % n] for _ in range(draws)]


def throughput(kind: str, keys: list[str]) -> float:
    """put+count pairs per second over ``keys`` for a fresh structure."""
    counter = make(kind)
    counter.declare("ip", WINDOW)
    put, count = counter.put, counter.count
    start = time.perf_counter()
    for key in keys:
        put("ip", key)
        count("ip", key)
    return len(keys) / (time.perf_counter() - start)


def limiter_throughput(messages: int = 100_000) -> float:
    limiter = Limiter(Counter(), default_limits())
    rng = random.Random(2)
    events = [
        [
            ("ip", f"10.0.{i % 50}.{i % 250}"),
            ("network", f"10.0.{i % 50}.0/24"),
            ("sender_org", f"org{rng.randrange(100)}.example"),
            ("rcpt_public", f"inbox{rng.randrange(5000)}@mailsac.example"),
        ]
        for i in range(messages)
    ]
    start = time.perf_counter()
    for event in events:
        limiter.hit_all(event)
    return messages / (time.perf_counter() - start)


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory_child(kind: str, entries: int, distinct: int, mode: str) -> dict[str, float]:
    """Fill one structure with ``entries`` live entries (in a fresh process) and measure."""
    if mode == "tracemalloc":
        tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0] if mode == "tracemalloc" else rss_bytes()
    counter = make(kind, max_entries=max(entries, 1))
    counter.declare("ns", 3600.0)
    for i in range(entries):  # keys are made here and kept only if the structure keeps them
        counter.put("ns", f"{i % distinct}.sub.example.com")
    after = tracemalloc.get_traced_memory()[0] if mode == "tracemalloc" else rss_bytes()
    live = counter.count_namespace("ns") if isinstance(counter, Counter) else entries
    return {"bytes": after - before, "bytes_per_entry": (after - before) / live}


def memory(kind: str, entries: int, distinct: int, mode: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(entries), str(distinct), mode],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, float] = json.loads(out.stdout)
    return result


def size_curve(sizes: list[int]) -> dict[str, float]:
    """Exact array bytes per live entry of the counter at several sizes (distinct keys)."""
    counter = Counter(max_entries=max(sizes))
    counter.declare("ns", 3600.0)
    out, done = {}, 0
    for size in sorted(sizes):
        for i in range(done, size):
            counter.put("ns", f"{i}.sub.example.com")
        done = size
        out[str(size)] = round(counter.nbytes / size, 2)
    return out


def summary(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values)),
        "min": round(min(values)),
        "max": round(max(values)),
    }


def main() -> None:
    if len(sys.argv) == 6 and sys.argv[1] == "--child":
        child = sys.argv[2:]
        print(json.dumps(memory_child(child[0], int(child[1]), int(child[2]), child[3])))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--pairs", type=int, default=500_000)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    keys = key_pool(draws=args.pairs)
    pairs: dict[str, list[float]] = {"counter": [], "naive": []}
    for _ in range(args.runs):
        for kind in pairs:
            pairs[kind].append(throughput(kind, keys))
    limiter = [limiter_throughput() for _ in range(args.runs)]
    mem: dict[str, Any] = {}
    for kind in ("counter", "naive"):
        for label, distinct in (("distinct_keys", args.entries), ("10k_keys", 10_000)):
            for mode in ("tracemalloc", "rss"):
                mem[f"{kind}.{label}.{mode}"] = memory(kind, args.entries, distinct, mode)
    counter_pairs = statistics.median(pairs["counter"])
    naive_pairs = statistics.median(pairs["naive"])
    n = args.entries
    result: dict[str, Any] = {
        "python": sys.version.split()[0],
        "runs": args.runs,
        "pairs_per_run": args.pairs,
        "counter_pairs_per_s": summary(pairs["counter"]),
        "counter_ops_per_s": summary([2 * p for p in pairs["counter"]]),
        "naive_pairs_per_s": summary(pairs["naive"]),
        "naive_ops_per_s": summary([2 * p for p in pairs["naive"]]),
        "throughput_ratio_counter_vs_naive": round(counter_pairs / naive_pairs, 3),
        "limiter_messages_per_s_4_limits": summary(limiter),
        "entries": n,
        "memory": {k: {f: round(v, 2) for f, v in m.items()} for k, m in mem.items()},
        "memory_ratio_naive_vs_counter": {
            label: round(
                mem[f"naive.{label}.tracemalloc"]["bytes"]
                / mem[f"counter.{label}.tracemalloc"]["bytes"],
                2,
            )
            for label in ("distinct_keys", "10k_keys")
        },
        "counter_array_bytes_per_entry_by_size": size_curve(
            [n // 4, n // 2, n, (1 << 20) + 1, 3 * n // 2, 2 * n]
        ),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for key, value in result.items():
        print(f"{key}: {json.dumps(value)}")


if __name__ == "__main__":
    main()
