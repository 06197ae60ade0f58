"""The merge logic of throttle counts shared between nodes (mailsac.throttle.shared).

Nodes here are real Counter + Limiter + SharedCounts objects on one fake clock; the table is
a dict doing what the SQL of mailsac.storage.shared_throttle does (upsert per node, read
summed over the other nodes). The SQL itself runs against PostgreSQL in tests/cluster.
"""

from __future__ import annotations

from dataclasses import replace

from mailsac.throttle import Counter, Limiter, default_limits
from mailsac.throttle.shared import BUCKETS_PER_WINDOW, CountRow, SharedCounts, signed_hash

LIMITS = default_limits({"sender_org": 30})
SENDER = "sender_org"
NS = "msg_sender"


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


class Table:
    """The shared table: rows by (node, namespace, key hash, bucket)."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str, int, int], CountRow] = {}

    def push(self, node: str, rows: list[CountRow]) -> None:
        for row in rows:
            self.rows[(node, row.namespace, row.key_hash, row.bucket)] = row

    def pull(self, node: str, now: float) -> list[CountRow]:
        summed: dict[tuple[str, int, int], CountRow] = {}
        for (writer, ns, h, b), row in self.rows.items():
            if writer == node or row.expires_at <= now:
                continue
            old = summed.get((ns, h, b))
            summed[(ns, h, b)] = row if old is None else replace(old, count=old.count + row.count)
        return [replace(r, key="") for r in summed.values()]


class Node:
    def __init__(self, name: str, clock: Clock, table: Table, max_rows: int = 500) -> None:
        self.name, self.clock, self.table = name, clock, table
        self.counter = Counter(clock=clock)
        self.limiter = Limiter(self.counter, LIMITS)
        self.shared = SharedCounts(self.counter, self.limiter.limits, clock=clock,
                                   max_rows=max_rows)
        self.limiter.shared = self.shared
        self.written: list[CountRow] = []

    def send(self, domain: str) -> bool:
        return self.limiter.hit(SENDER, domain).allowed

    def sync(self) -> None:
        rows = self.shared.outgoing()
        self.written = rows
        self.table.push(self.name, rows)
        self.shared.committed(rows)
        self.shared.merge(self.table.pull(self.name, self.clock()))


def cluster(n: int) -> tuple[Clock, list[Node]]:
    clock, table = Clock(), Table()
    return clock, [Node(f"n{i}", clock, table) for i in range(n)]


def test_round_robin_over_three_nodes_is_limited_service_wide() -> None:
    clock, nodes = cluster(3)
    accepted = 0
    for i in range(90):
        accepted += nodes[i % 3].send("spread.example")
        clock.now += 0.05
        if i % 3 == 2:
            for _ in range(2):  # every node's write, then every node's read
                for node in nodes:
                    node.sync()
    assert accepted == 30  # fully propagated after every round: no overshoot, no double count
    decision = nodes[1].limiter.hit(SENDER, "spread.example")
    assert not decision.allowed and decision.count > 30
    assert "spread.example" in decision.reason and "limit 30" in decision.reason
    assert 0 < decision.retry_after <= 60 + 60 / BUCKETS_PER_WINDOW  # bucket granularity


def test_without_sync_each_node_allows_the_full_limit() -> None:
    clock, nodes = cluster(3)
    accepted = sum(nodes[i % 3].send("spread.example") for i in range(120))
    assert accepted == 90


def test_overshoot_is_bounded_by_what_arrives_between_syncs() -> None:
    clock, nodes = cluster(3)
    per_interval = 4  # events each node accepts between two syncs
    accepted = 0
    for i in range(300):
        accepted += nodes[i % 3].send("burst.example")
        if i % (3 * per_interval) == 3 * per_interval - 1:
            for node in nodes:
                node.sync()
    assert 30 <= accepted <= 30 + (3 - 1) * per_interval


def test_light_keys_are_not_written() -> None:
    clock, (a, b) = cluster(2)
    for i in range(1000):  # a flood of distinct sender domains: one message each
        assert a.send(f"d{i}.example")
    a.sync()
    assert a.written == []
    assert a.send("heavy.example") and a.send("heavy.example")  # 2 = 5 % of 30
    a.sync()
    assert [(r.key, r.count) for r in a.written] == [("heavy.example", 2)]
    b.sync()
    assert b.shared.remote(NS, "heavy.example") == 2
    assert b.shared.remote(NS, "d1.example") == 0


def test_a_key_heavy_elsewhere_is_shared_with_its_whole_count() -> None:
    clock, (a, b) = cluster(2)
    assert b.send("mixed.example")  # one message: below the threshold on b
    b.sync()
    assert b.written == []
    for _ in range(5):
        a.send("mixed.example")
    a.sync()
    b.sync()  # b now knows the key is heavy, but wrote before reading
    assert b.send("mixed.example")
    b.sync()
    assert [(r.key, r.count) for r in b.written] == [("mixed.example", 2)]  # both events
    a.sync()
    assert a.shared.remote(NS, "mixed.example") == 2
    assert a.limiter.check(SENDER, "mixed.example").count == 5 + 2 + 1


def test_remote_counts_age_out_with_the_window() -> None:
    clock, (a, b) = cluster(2)
    for _ in range(30):
        assert a.send("old.example")
    a.sync()
    b.sync()
    denied = b.limiter.hit(SENDER, "old.example")
    assert not denied.allowed
    assert "try again in" in denied.reason
    width = 60 / BUCKETS_PER_WINDOW
    assert 60 - width <= denied.retry_after <= 60 + width
    clock.now += denied.retry_after
    b.sync()  # a's bucket has left the window
    assert b.shared.remote(NS, "old.example") == 0
    assert b.send("old.example")


def test_the_oldest_bucket_counts_for_its_share_of_the_window() -> None:
    clock, (a, b) = cluster(2)
    clock.now = 1_700_000_000.0  # a bucket boundary (5 s buckets)
    for _ in range(20):
        a.send("slide.example")
    clock.now += 1.0
    a.sync()
    clock.now += 61.5  # the bucket [t, t + 5) is half outside the window (t + 2.5, t + 62.5]
    b.sync()
    assert b.shared.remote(NS, "slide.example") == 10


def test_rows_per_sync_are_capped_heaviest_first_and_the_rest_follow() -> None:
    clock, table = Clock(), Table()
    a = Node("a", clock, table, max_rows=2)
    for count, domain in ((5, "five.example"), (9, "nine.example"), (7, "seven.example")):
        for _ in range(count):
            a.send(domain)
    a.sync()
    assert sorted(r.key for r in a.written) == ["nine.example", "seven.example"]
    a.sync()
    assert [(r.key, r.count) for r in a.written] == [("five.example", 5)]
    a.sync()
    assert a.written == []  # nothing changed


def test_unsent_counts_survive_a_failed_write_and_a_new_bucket() -> None:
    clock, (a, b) = cluster(2)
    for _ in range(4):
        a.send("retry.example")
    rows = a.shared.outgoing()  # the database did not answer:
    a.shared.requeue(rows)
    clock.now += 60 / BUCKETS_PER_WINDOW  # and a new bucket began meanwhile
    a.send("retry.example")
    a.sync()
    b.sync()
    assert b.shared.remote(NS, "retry.example") == 5


def test_failed_sync_at_a_bucket_change_loses_nothing_of_the_new_bucket() -> None:
    clock, (a, b) = cluster(2)
    for _ in range(3):
        a.send("roll.example")
    a.sync()
    a.send("roll.example")
    clock.now += 60 / BUCKETS_PER_WINDOW
    a.sync()  # writes the 4th event into the old bucket, then rolls over
    a.send("roll.example")
    a.sync()
    b.sync()
    assert b.shared.remote(NS, "roll.example") == 5


def test_clear_remote_falls_back_to_local_counts() -> None:
    clock, (a, b) = cluster(2)
    for _ in range(30):
        a.send("fallback.example")
    a.sync()
    b.sync()
    assert not b.limiter.check(SENDER, "fallback.example").allowed
    b.shared.clear_remote()
    assert b.shared.remote_totals()[SENDER] == 0
    assert sum(b.send("fallback.example") for _ in range(40)) == 30


def test_remote_totals_and_unknown_namespaces() -> None:
    clock, (a, b) = cluster(2)
    for _ in range(3):
        a.send("x.example")
    a.sync()
    foreign = CountRow("no_such_namespace", signed_hash("x"), 1, 99, clock.now + 1, clock.now + 61)
    b.shared.merge([*a.table.pull("b", clock.now), foreign])
    assert b.shared.remote_totals()[SENDER] == 3
    assert b.shared.remote("no_such_namespace", "x") == 0


def test_signed_hash_fits_a_bigint() -> None:
    hashes = [signed_hash(f"k{i}") for i in range(2000)]
    assert all(-(1 << 63) <= h < 1 << 63 for h in hashes)
    assert any(h < 0 for h in hashes) and any(h > 0 for h in hashes)
