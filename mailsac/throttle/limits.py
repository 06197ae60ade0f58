"""Rate limits over a :class:`~mailsac.throttle.counter.Counter`: declarations and decisions.

Default limits (:func:`default_limits`; every count is per sliding 60 s window):

=================  ===============  =====  ===================================================
name               namespace        max    counts
=================  ===============  =====  ===================================================
``ip``             ``msg_ip``         600  messages per client IP (a busy CI runner: 10/s)
``network``        ``msg_net``       1200  messages per client /24 (IPv4) or /56 (IPv6): a few
                                           CI runners behind one NAT or provider block
``sender_org``     ``msg_sender``     300  messages per organisational domain of MAIL FROM;
                                           sub-domain rotation collapses to one key
``reply_to_org``   ``msg_reply_to``   300  messages per organisational domain of Reply-To
``rcpt_public``    ``rcpt_public``    120  messages per public inbox (2/s; per recipient)
``rcpt_private``   ``rcpt_private``   600  messages per private (owned) inbox: its owner's own
                                           test suites, so more generous
``ip_connections`` ``conn_ip``        600  SMTP connections per client IP (clients without
                                           connection pooling open one per message)
``account``        ``msg_account``   1200  messages per authenticated account (SMTP AUTH,
                                           Email Capture): these replace ``ip``, ``network``,
                                           ``sender_org``, ``reply_to_org`` and
                                           ``rcpt_public`` for its sessions
=================  ===============  =====  ===================================================

A denied event is not recorded, so a client that backs off for ``retry_after`` seconds is
served again; denials are still counted in :meth:`Limiter.metrics`, per limit name only (never
per key: keys would explode metric cardinality). Each limit owns its namespace, so the
limiter can cache ``retry_after`` per key. Use :meth:`Limiter.hit_all` to admit a message
against several limits atomically. If the counter reaches its ``max_entries`` cap its oldest
entries are evicted, which can only lower counts (fail-open, memory stays bounded); watch
``counter.evictions``. Not thread-safe (event loop only), like the counter.

With :attr:`Limiter.shared` set (a :class:`~mailsac.throttle.shared.SharedCounts`), a key's
count is its local count plus the other nodes' estimate, and recorded events are tallied for
them: the limits then hold for a cluster of nodes (see :mod:`mailsac.throttle.shared`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from mailsac.throttle.counter import Counter, TopKey

if TYPE_CHECKING:
    from mailsac.throttle.shared import SharedCounts


@dataclass(frozen=True, slots=True)
class Limit:
    """At most ``max_count`` events per key in any ``window_seconds``, counted in ``namespace``.

    ``subject`` starts the denial reason; ``{key}`` is replaced with the (sanitised) key.
    """

    name: str
    namespace: str
    max_count: int
    window_seconds: float
    subject: str = "Too many events for {key}"


@dataclass(frozen=True, slots=True)
class Decision:
    """Outcome of a limit check: ``allowed`` iff ``count <= max_count``.

    ``count`` includes the event being decided (recorded or not); ``retry_after`` is 0 when
    allowed, else the seconds until enough entries expire for the event to be allowed;
    ``reason`` is the human-readable denial text ("" when allowed).
    """

    allowed: bool
    retry_after: float
    limit_name: str
    count: int
    max_count: int
    reason: str = ""


_WINDOW = 60.0
_DEFAULTS = (
    Limit("ip", "msg_ip", 600, _WINDOW, "Too many messages from {key}"),
    Limit("network", "msg_net", 1200, _WINDOW, "Too many messages from network {key}"),
    Limit("sender_org", "msg_sender", 300, _WINDOW, "Too many messages from sender domain {key}"),
    Limit("reply_to_org", "msg_reply_to", 300, _WINDOW, "Too many messages replying to {key}"),
    Limit("rcpt_public", "rcpt_public", 120, _WINDOW, "Too many messages to {key}"),
    Limit("rcpt_private", "rcpt_private", 600, _WINDOW, "Too many messages to {key}"),
    Limit("ip_connections", "conn_ip", 600, _WINDOW, "Too many connections from {key}"),
    Limit("account", "msg_account", 1200, _WINDOW, "Too many messages from account {key}"),
)


def default_limits(settings: Mapping[str, float] | None = None) -> list[Limit]:
    """The default limit set, with overrides from ``settings``.

    Keys are ``"<name>"`` or ``"<name>.max_count"`` (an int; ``<= 0`` disables that limit)
    and ``"<name>.window_seconds"``. Unknown names or fields raise ``ValueError``.
    """
    limits = {limit.name: limit for limit in _DEFAULTS}
    for setting, value in (settings or {}).items():
        name, dot, field = setting.partition(".")
        if name not in limits or (dot and field not in ("max_count", "window_seconds")):
            raise ValueError(f"unknown throttle setting {setting!r}")
        if field == "window_seconds":
            if not value > 0:
                raise ValueError(f"{setting} must be positive")
            limits[name] = replace(limits[name], window_seconds=float(value))
        else:
            limits[name] = replace(limits[name], max_count=int(value))
    return [limit for limit in limits.values() if limit.max_count > 0]


def recipient_limit(private: bool) -> str:
    """Name of the per-inbox limit for a private or public recipient."""
    return "rcpt_private" if private else "rcpt_public"


def _printable(key: str, limit: int = 80) -> str:
    """Key text safe for an SMTP reply line: printable ASCII only, bounded length."""
    text = "".join(ch if " " <= ch <= "~" else "?" for ch in key[: limit + 1])
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(slots=True)
class LimitStats:
    """Decisions made for one limit (plain ints, for metrics)."""

    allowed: int = 0
    denied: int = 0


class Limiter:
    """Checks and records events against named :class:`Limit` s in one :class:`Counter`.

    Declares each limit's namespace on the counter. Limit names and namespaces must be
    unique; nothing else should put into a limiter's namespaces.
    """

    def __init__(self, counter: Counter, limits: Iterable[Limit], *, cache_size: int = 4096):
        self.counter = counter
        self._limits: dict[str, Limit] = {}
        self.stats: dict[str, LimitStats] = {}
        namespaces: set[str] = set()
        for limit in limits:
            if limit.name in self._limits or limit.namespace in namespaces:
                raise ValueError(f"duplicate limit name or namespace in {limit!r}")
            if limit.max_count < 1:
                raise ValueError(f"limit {limit.name!r} needs max_count >= 1")
            try:
                limit.subject.format(key="")
            except (KeyError, IndexError, ValueError) as exc:
                raise ValueError(f"bad subject template in {limit!r}") from exc
            counter.declare(limit.namespace, limit.window_seconds)
            self._limits[limit.name] = limit
            self.stats[limit.name] = LimitStats()
            namespaces.add(limit.namespace)
        self._retry_at: dict[tuple[str, str], float] = {}
        self._cache_size = cache_size
        self.shared: SharedCounts | None = None
        """Counts shared with other nodes (None: this node's counts only)."""

    @property
    def limits(self) -> list[Limit]:
        """The limits, in declaration order."""
        return list(self._limits.values())

    def check(self, name: str, key: str) -> Decision:
        """Would one more event for ``key`` be allowed? Records nothing."""
        decision = self._evaluate(self._limits[name], key)
        self._account(decision)
        return decision

    def hit(self, name: str, key: str) -> Decision:
        """Check, and record the event if it is allowed."""
        limit = self._limits[name]
        decision = self._evaluate(limit, key)
        if decision.allowed:
            decision = self._record(limit, key)
        self._account(decision)
        return decision

    def hit_all(self, events: Iterable[tuple[str, str | None]]) -> Decision:
        """Record ``(name, key)`` events all together or none (pairs with key None are skipped).

        If any is denied, nothing is recorded and the denial with the longest ``retry_after``
        is returned; else all are recorded and the allowed decision nearest its limit returned.
        """
        pending = [(self._limits[name], key) for name, key in events if key is not None]
        decisions = [self._evaluate(limit, key) for limit, key in pending]
        denied = [d for d in decisions if not d.allowed]
        if denied:
            for decision in denied:
                self._account(decision)
            return max(denied, key=lambda d: d.retry_after)
        decisions = [self._record(limit, key) for limit, key in pending]
        for decision in decisions:
            self._account(decision)
        if not decisions:
            return Decision(True, 0.0, "", 0, 0)
        return max(decisions, key=lambda d: d.count / d.max_count)

    def top(self, name: str, n: int = 10) -> list[TopKey]:
        """The ``n`` keys with most live events under limit ``name`` (admin "top offenders")."""
        return self.counter.top(self._limits[name].namespace, n)

    def metrics(self) -> dict[str, dict[str, int]]:
        """``{limit name: {"allowed": n, "denied": n}}`` (see also ``counter.evictions``)."""
        return {name: {"allowed": s.allowed, "denied": s.denied} for name, s in self.stats.items()}

    def _evaluate(self, limit: Limit, key: str) -> Decision:
        local = self.counter.count(limit.namespace, key) + 1
        shared = self.shared
        count = local if shared is None else local + shared.remote(limit.namespace, key)
        if count <= limit.max_count:
            return Decision(True, 0.0, limit.name, count, limit.max_count)
        if local > limit.max_count or shared is None:
            retry = self._retry_after(limit, key, local - limit.max_count)
        else:  # over the limit only with the other nodes' events: wait for those to age
            retry = shared.retry_after(limit.namespace, key, count - limit.max_count)
        text = limit.subject.format(key=_printable(key))
        reason = (
            f"{text} ({count} in the last {limit.window_seconds:g} s, limit {limit.max_count});"
            f" try again in {math.ceil(retry)} s"
        )
        return Decision(False, retry, limit.name, count, limit.max_count, reason)

    def _record(self, limit: Limit, key: str) -> Decision:
        if self._retry_at:
            self._retry_at.pop((limit.namespace, key), None)
        count = self.counter.put(limit.namespace, key)
        shared = self.shared
        if shared is not None:
            shared.record(limit.namespace, key)
            count += shared.remote(limit.namespace, key)
        return Decision(True, 0.0, limit.name, count, limit.max_count)

    def _retry_after(self, limit: Limit, key: str, excess: int) -> float:
        """Seconds until ``excess`` of the key's oldest entries have expired (cached)."""
        now = self.counter.clock()
        cache_key = (limit.namespace, key)
        at = self._retry_at.get(cache_key)
        if at is None or at <= now:
            found = self.counter.nth_expiry(limit.namespace, key, excess)
            at = now + limit.window_seconds if found is None else found
            if len(self._retry_at) >= self._cache_size:
                self._retry_at = {k: t for k, t in self._retry_at.items() if t > now}
                while len(self._retry_at) >= self._cache_size:
                    del self._retry_at[next(iter(self._retry_at))]
            self._retry_at[cache_key] = at
        return max(at - now, 0.001)

    def _account(self, decision: Decision) -> None:
        stats = self.stats.get(decision.limit_name)
        if stats is not None:
            if decision.allowed:
                stats.allowed += 1
            else:
                stats.denied += 1
