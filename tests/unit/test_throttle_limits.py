"""Limiter of mailsac.throttle: decisions, retry_after, reasons, atomic hits, defaults."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailsac.throttle import (
    Counter,
    Decision,
    Limit,
    Limiter,
    default_limits,
    org_domain,
    recipient_limit,
)


class FakeClock:
    def __init__(self, now: float = 5000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make(*limits: Limit) -> tuple[Limiter, FakeClock]:
    clock = FakeClock()
    return Limiter(Counter(clock=clock), limits), clock


IP3 = Limit("ip", "msg_ip", 3, 60.0, "Too many messages from {key}")


def test_allows_up_to_max_then_denies_without_recording() -> None:
    limiter, _ = make(IP3)
    decisions = [limiter.hit("ip", "192.0.2.1") for _ in range(5)]
    assert [d.allowed for d in decisions] == [True, True, True, False, False]
    assert [d.count for d in decisions] == [1, 2, 3, 4, 4]  # denied attempts are not recorded
    assert all(d.max_count == 3 and d.limit_name == "ip" for d in decisions)
    assert decisions[0] == Decision(True, 0.0, "ip", 1, 3)
    assert limiter.counter.count("msg_ip", "192.0.2.1") == 3
    assert limiter.hit("ip", "192.0.2.2").allowed  # other keys are unaffected


def test_check_records_nothing() -> None:
    limiter, _ = make(IP3)
    for _ in range(5):
        assert limiter.check("ip", "k") == Decision(True, 0.0, "ip", 1, 3)
    assert limiter.counter.count("msg_ip", "k") == 0


@pytest.mark.parametrize(
    ("hit_times", "at", "allowed", "retry_after"),
    [
        ([0, 10, 20], 30, False, 30.0),  # the t=0 entry expires at t=60
        ([0, 10, 20], 59.5, False, 0.5),
        ([0, 10, 20], 60, True, 0.0),
        ([0, 0, 0], 1, False, 59.0),
        ([0, 10], 11, True, 0.0),
    ],
)
def test_retry_after_is_time_until_enough_entries_expire(
    hit_times: list[float], at: float, allowed: bool, retry_after: float
) -> None:
    limiter, clock = make(IP3)
    start = clock.now
    for t in hit_times:
        clock.now = start + t
        assert limiter.hit("ip", "k").allowed
    clock.now = start + at
    decision = limiter.check("ip", "k")
    assert decision.allowed is allowed
    assert decision.retry_after == pytest.approx(retry_after)


def test_retry_after_counts_the_excess_entries() -> None:
    limiter, clock = make(IP3)
    start = clock.now
    for t in range(5):  # five entries put behind the limiter's back, at t=0..4
        clock.now = start + t
        limiter.counter.put("msg_ip", "k")
    clock.now = start + 10
    decision = limiter.check("ip", "k")
    assert (decision.allowed, decision.count) == (False, 6)
    assert decision.retry_after == pytest.approx(52.0)  # wait for t=0,1,2 to expire (at 62)


def test_retry_after_is_cached_and_stays_consistent() -> None:
    limiter, clock = make(IP3)
    start = clock.now
    for t in (0, 20, 40):
        clock.now = start + t
        assert limiter.hit("ip", "k").allowed
    clock.now = start + 50
    assert limiter.hit("ip", "k").retry_after == pytest.approx(10.0)
    clock.now = start + 55
    assert limiter.hit("ip", "k").retry_after == pytest.approx(5.0)
    clock.now = start + 60
    assert limiter.hit("ip", "k").allowed  # the t=0 entry expired
    clock.now = start + 61
    assert limiter.hit("ip", "k").retry_after == pytest.approx(19.0)  # t=20 expires at 80


def test_retry_after_cache_is_bounded() -> None:
    clock = FakeClock()
    limiter = Limiter(Counter(clock=clock), [Limit("one", "ns", 1, 60.0)], cache_size=16)
    for i in range(100):
        limiter.hit("one", f"k{i}")
        assert not limiter.hit("one", f"k{i}").allowed
    assert len(limiter._retry_at) <= 16


def test_denial_reason_text() -> None:
    limiter, clock = make(Limit("ip", "msg_ip", 600, 60.0, "Too many messages from {key}"))
    start = clock.now
    for i in range(600):
        clock.now = start + i * 0.08  # 600 messages in 48 s
        limiter.hit("ip", "203.0.113.7")
    clock.now = start + 48
    decision = limiter.hit("ip", "203.0.113.7")
    assert decision.reason == (
        "Too many messages from 203.0.113.7 (601 in the last 60 s, limit 600); try again in 12 s"
    )
    assert not decision.allowed and 11.9 < decision.retry_after <= 12.0


def test_reason_is_safe_for_an_smtp_reply_line() -> None:
    limiter, _ = make(Limit("rcpt", "ns", 1, 90.0, "Too many messages to {key}"))
    key = "evil\r\n250 ok\x00" + "ü{x}" + "y" * 500
    limiter.hit("rcpt", key)
    reason = limiter.hit("rcpt", key).reason
    assert reason.startswith("Too many messages to evil??250 ok??{x}yyy")
    assert reason.isascii() and reason.isprintable() and len(reason) < 200
    assert "(2 in the last 90 s, limit 1); try again in 90 s" in reason


def test_hit_all_records_all_or_nothing() -> None:
    limiter, _ = make(IP3, Limit("rcpt", "rcpt_public", 1, 60.0))
    first = limiter.hit_all([("ip", "192.0.2.1"), ("rcpt", "a@x.example"), ("ip", None)])
    assert first.allowed and first.limit_name == "rcpt"  # the one nearest its limit
    denied = limiter.hit_all([("ip", "192.0.2.1"), ("rcpt", "a@x.example")])
    assert not denied.allowed and denied.limit_name == "rcpt"
    assert limiter.counter.count("msg_ip", "192.0.2.1") == 1  # nothing recorded on denial
    assert limiter.hit_all([]) == Decision(True, 0.0, "", 0, 0)
    assert limiter.metrics() == {
        "ip": {"allowed": 1, "denied": 0},
        "rcpt": {"allowed": 1, "denied": 1},
    }


def test_hit_all_returns_the_longest_retry_after() -> None:
    limiter, clock = make(IP3, Limit("net", "msg_net", 1, 600.0))
    limiter.hit_all([("ip", "k"), ("net", "n")])
    for _ in range(2):
        limiter.hit("ip", "k")
    decision = limiter.hit_all([("ip", "k"), ("net", "n")])
    assert decision.limit_name == "net"
    assert decision.retry_after == pytest.approx(600.0)
    assert limiter.stats["ip"].denied == 1 and limiter.stats["net"].denied == 1


def test_metrics_count_per_limit_name_only() -> None:
    limiter, _ = make(IP3)
    for i in range(5):
        limiter.hit("ip", "a")
        limiter.check("ip", f"other-{i}")
    assert limiter.metrics() == {"ip": {"allowed": 8, "denied": 2}}


def test_top_offenders() -> None:
    limiter, _ = make(IP3)
    for key, n in [("a", 3), ("b", 1), ("c", 2)]:
        for _ in range(n):
            limiter.hit("ip", key)
    assert [(t.key, t.count) for t in limiter.top("ip", 2)] == [("a", 3), ("c", 2)]


def test_limiter_rejects_bad_declarations() -> None:
    with pytest.raises(ValueError):
        make(IP3, Limit("ip", "other", 1, 60.0))
    with pytest.raises(ValueError):
        make(IP3, Limit("other", "msg_ip", 1, 60.0))
    with pytest.raises(ValueError):
        make(Limit("zero", "ns", 0, 60.0))
    with pytest.raises(ValueError):
        make(Limit("template", "ns", 1, 60.0, "Too many for {ip}"))
    counter = Counter()
    counter.declare("msg_ip", 30.0)
    with pytest.raises(ValueError):
        Limiter(counter, [IP3])
    with pytest.raises(KeyError):
        make(IP3)[0].hit("unknown", "k")


def test_default_limits() -> None:
    limits = {limit.name: limit for limit in default_limits()}
    assert {name: (lim.max_count, lim.window_seconds) for name, lim in limits.items()} == {
        "ip": (600, 60.0),
        "network": (1200, 60.0),
        "sender_org": (300, 60.0),
        "reply_to_org": (300, 60.0),
        "rcpt_public": (120, 60.0),
        "rcpt_private": (600, 60.0),
        "ip_connections": (600, 60.0),
        "account": (1200, 60.0),
    }
    assert len({lim.namespace for lim in limits.values()}) == len(limits)
    assert limits["rcpt_public"].namespace == "rcpt_public"
    assert limits["rcpt_private"].namespace == "rcpt_private"
    Limiter(Counter(), limits.values())  # a valid limiter


@pytest.mark.parametrize(
    ("settings", "name", "expected"),
    [
        ({"ip": 1000}, "ip", (1000, 60.0)),
        ({"ip.max_count": 5, "ip.window_seconds": 1}, "ip", (5, 1.0)),
        ({"rcpt_public.window_seconds": 3600}, "rcpt_public", (120, 3600.0)),
        ({"network": 0}, "network", None),  # disabled
    ],
)
def test_default_limit_overrides(
    settings: dict[str, float], name: str, expected: tuple[int, float] | None
) -> None:
    limits = {limit.name: limit for limit in default_limits(settings)}
    got = limits.get(name)
    assert (None if got is None else (got.max_count, got.window_seconds)) == expected


@pytest.mark.parametrize(
    "settings", [{"nope": 1}, {"ip.typo": 1}, {"ip.window_seconds": 0}, {"ip.": 3}]
)
def test_default_limit_overrides_reject_mistakes(settings: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        default_limits(settings)


def test_recipient_limit_names() -> None:
    assert recipient_limit(private=True) == "rcpt_private"
    assert recipient_limit(private=False) == "rcpt_public"


def test_subdomain_rotation_hits_one_org_domain_limit() -> None:
    clock = FakeClock()
    limiter = Limiter(Counter(clock=clock), default_limits())
    decisions = [
        limiter.hit("sender_org", org_domain(f"x@{i}.a.b.c.d.sandbox.example.com") or "")
        for i in range(301)
    ]
    assert sum(d.allowed for d in decisions) == 300
    assert decisions[-1].reason.startswith("Too many messages from sender domain example.com (")
    assert limiter.counter.distinct_keys("msg_sender") == 1


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b"]), st.sampled_from([0.0, 0.5, 7.0, 20.0]))))
def test_waiting_retry_after_is_exactly_enough_property(script: list[tuple[str, float]]) -> None:
    limiter, clock = make(Limit("lim", "ns", 3, 30.0))
    for key, pause in script:
        clock.now += pause
        decision = limiter.hit("lim", key)
        if decision.allowed:
            assert decision.retry_after == 0.0
            continue
        assert 0.0 < decision.retry_after <= 30.0
        now = clock.now
        if decision.retry_after > 1e-3:
            clock.now = now + decision.retry_after - 1e-3
            assert not limiter.check("lim", key).allowed
        clock.now = now + decision.retry_after
        assert limiter.check("lim", key).allowed
        clock.now = now
