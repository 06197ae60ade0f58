"""Connection admission: global, per-IP, per-network and per-supernet caps, load queueing.

A connection over a cap (or arriving while the service is overloaded: event-loop lag or a
deep metadata-write queue) is not refused at once: it stays open and waits up to
``wait_timeout`` seconds for a slot, then gets ``421``. Slots are released when sessions
end, so thousands of idle attacker sockets can hold at most their share, and idle sessions
are cut short (``pressure_timeout``) once the service is busy.

Shares are nested: an IP, its /24 (IPv4) or /56 (IPv6) network, and the /16 or /48
*supernet* around that. The defaults (1000 total, 25 per IP, 50 per network, 150 per
supernet) mean five /24 networks hold at most a quarter of the slots, and filling every
slot takes at least 20 networks spread over at least 7 supernets. Used by SMTP and POP3.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from mailsac.throttle import network_key
from mailsac.waiters import Waiters

SUPERNET_V4_PREFIX = 16
SUPERNET_V6_PREFIX = 48


def supernet_key(ip: str) -> str | None:
    """``203.0.113.7`` -> ``203.0.0.0/16``; ``2001:db8:1:2::1`` -> ``2001:db8:1::/48``."""
    return network_key(ip, v4_prefix=SUPERNET_V4_PREFIX, v6_prefix=SUPERNET_V6_PREFIX)


@dataclass
class Admission:
    """Counts live sessions and decides who may start one (event loop only)."""

    max_total: int = 1000
    max_per_ip: int = 25
    max_per_network: int = 50
    wait_timeout: float = 30.0
    overloaded: Callable[[], bool] = lambda: False
    max_per_supernet: int = 150
    active: int = 0
    refused: int = 0
    _per_ip: Counter[str] = field(default_factory=Counter)
    _per_net: Counter[str] = field(default_factory=Counter)
    _per_super: Counter[str] = field(default_factory=Counter)
    _waiters: Waiters = field(default_factory=Waiters)

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    @property
    def pressure(self) -> float:
        """0.0 idle … 1.0 at the global cap (or overloaded)."""
        return 1.0 if self.overloaded() else min(1.0, self.active / max(1, self.max_total))

    @staticmethod
    def _keys(ip: str) -> tuple[str, str]:
        return network_key(ip) or ip, supernet_key(ip) or ip

    def _fits(self, ip: str, net: str, sup: str) -> bool:
        return (self.active < self.max_total and self._per_ip[ip] < self.max_per_ip
                and self._per_net[net] < self.max_per_network
                and self._per_super[sup] < self.max_per_supernet and not self.overloaded())

    async def acquire(self, ip: str) -> bool:
        """Take a slot for ``ip``, waiting up to ``wait_timeout``; False if none came free."""
        net, sup = self._keys(ip)
        if not await self._waiters.wait_until(lambda: self._fits(ip, net, sup),
                                              self.wait_timeout):
            self.refused += 1
            return False
        self.active += 1
        self._per_ip[ip] += 1
        self._per_net[net] += 1
        self._per_super[sup] += 1
        return True

    def release(self, ip: str) -> None:
        net, sup = self._keys(ip)
        self.active -= 1
        for counts, key in ((self._per_ip, ip), (self._per_net, net), (self._per_super, sup)):
            counts[key] -= 1
            if counts[key] <= 0:
                del counts[key]
        self.poke()

    def poke(self) -> None:
        """Wake every waiter to re-check (a slot was freed, or the load may have dropped)."""
        self._waiters.wake_all()
