"""Fair webhook scheduling: per-account and per-host slots, bounded lanes, breakers."""

from __future__ import annotations

from mailsac.forwarding.fairness import FairnessLimits, Job, Lanes


def _job(n: int, account: str, host: str = "h:80") -> Job:
    return Job(n, account, host, None)


def test_a_busy_account_cannot_take_another_accounts_slots() -> None:
    lanes = Lanes(FairnessLimits(total=8, per_account=2, per_host=8, held_per_account=6))
    for n in range(6):
        assert lanes.add(_job(n, "tarpit", "slow:80"))
    assert not lanes.add(_job(99, "tarpit", "slow:80"))  # the lane is full: bounded
    started, _ = lanes.take(0.0)
    assert [j.account for j in started] == ["tarpit", "tarpit"]
    assert lanes.add(_job(10, "other", "fast:80"))
    started, _ = lanes.take(0.0)  # the tarpit's two sends never finish
    assert [j.id for j in started] == [10]
    assert lanes.inflight == 3


def test_round_robin_between_accounts_and_per_host_limit() -> None:
    lanes = Lanes(FairnessLimits(total=3, per_account=3, per_host=2, held_per_account=10))
    for n in range(4):
        lanes.add(_job(n, "a", "shared:443"))
    lanes.add(_job(10, "b", "other:443"))
    started, _ = lanes.take(0.0)
    assert sorted(j.id for j in started) == [0, 1, 10]  # host cap 2, total cap 3
    lanes.done(started[0], True, 1.0)
    more, _ = lanes.take(1.0)
    assert len(more) == 1 and more[0].account == "a"


def test_breaker_opens_after_consecutive_failures_and_half_opens_after_cooldown() -> None:
    limits = FairnessLimits(total=10, per_account=10, per_host=10, held_per_account=20,
                            breaker_failures=3, breaker_cooldown=30.0)
    lanes = Lanes(limits)
    for n in range(3):
        lanes.add(_job(n, "a", "dead:80"))
    first, _ = lanes.take(0.0)
    for job in first:
        lanes.done(job, False, 5.0)
    assert lanes.breaker.open_until("dead:80", 5.0) == 35.0
    lanes.add(_job(7, "a", "dead:80"))
    lanes.add(_job(8, "b", "alive:80"))
    started, skipped = lanes.take(6.0)
    assert [j.id for j in started] == [8]
    assert [(j.id, until) for j, until in skipped] == [(7, 35.0)]
    assert 7 not in lanes  # handed back to be rescheduled, not held
    lanes.add(_job(20, "a", "dead:80"))
    lanes.add(_job(21, "a", "dead:80"))
    probe, _ = lanes.take(40.0)
    assert [j.id for j in probe] == [20]  # half-open: one probe at a time
    lanes.done(probe[0], True, 41.0)
    rest, _ = lanes.take(41.0)
    assert [j.id for j in rest] == [21]  # closed again


def test_http_answers_and_refusals_do_not_trip_the_breaker() -> None:
    lanes = Lanes(FairnessLimits(breaker_failures=2))
    for n in range(4):
        lanes.add(_job(n, "a"))
        (job,), _ = lanes.take(0.0)
        lanes.done(job, None if n % 2 else True, 0.0)
    assert lanes.breaker.open_until("h:80", 0.0) is None


def test_breaker_memory_is_bounded() -> None:
    lanes = Lanes(FairnessLimits(max_breakers=100))
    for n in range(1000):
        lanes.breaker.record(f"host{n}:80", False, 0.0)
    assert len(lanes.breaker._hosts) == 100
