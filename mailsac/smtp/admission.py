"""Connection admission: global, per-IP and per-network caps, and load-based queueing.

A connection over a cap (or arriving while the service is overloaded: event-loop lag or a
deep metadata-write queue) is not refused at once: it stays open and waits up to
``wait_timeout`` seconds for a slot, then gets ``421``. Slots are released when sessions
end, so thousands of idle attacker sockets can hold at most their per-IP/per-network
share, and idle sessions are cut short (``pressure_timeout``) once the service is busy.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from mailsac.throttle import network_key


@dataclass
class Admission:
    """Counts live SMTP sessions and decides who may start one (event loop only)."""

    max_total: int = 1000
    max_per_ip: int = 50
    max_per_network: int = 200
    wait_timeout: float = 30.0
    overloaded: Callable[[], bool] = lambda: False
    active: int = 0
    refused: int = 0
    _per_ip: Counter[str] = field(default_factory=Counter)
    _per_net: Counter[str] = field(default_factory=Counter)
    _waiters: set[asyncio.Future[None]] = field(default_factory=set)

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    @property
    def pressure(self) -> float:
        """0.0 idle … 1.0 at the global cap (or overloaded)."""
        return 1.0 if self.overloaded() else min(1.0, self.active / max(1, self.max_total))

    def _fits(self, ip: str, net: str) -> bool:
        return (self.active < self.max_total and self._per_ip[ip] < self.max_per_ip
                and self._per_net[net] < self.max_per_network and not self.overloaded())

    async def acquire(self, ip: str) -> bool:
        """Take a slot for ``ip``, waiting up to ``wait_timeout``; False if none came free."""
        net = network_key(ip) or ip
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_timeout
        while not self._fits(ip, net):
            remaining = deadline - loop.time()
            if remaining <= 0:
                self.refused += 1
                return False
            wake: asyncio.Future[None] = loop.create_future()
            self._waiters.add(wake)
            try:
                await asyncio.wait_for(wake, remaining)
            except TimeoutError:
                pass
            finally:
                self._waiters.discard(wake)
        self.active += 1
        self._per_ip[ip] += 1
        self._per_net[net] += 1
        return True

    def release(self, ip: str) -> None:
        net = network_key(ip) or ip
        self.active -= 1
        for counts, key in ((self._per_ip, ip), (self._per_net, net)):
            counts[key] -= 1
            if counts[key] <= 0:
                del counts[key]
        self.poke()

    def poke(self) -> None:
        """Wake every waiter to re-check (a slot was freed, or the load may have dropped)."""
        for wake in self._waiters:
            if not wake.done():
                wake.set_result(None)
