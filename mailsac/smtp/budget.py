"""The global byte budget for DATA held in memory by all SMTP sessions together.

Every session in DATA holds a :class:`Lease`: a base amount taken before ``354`` (waiting
briefly when the budget is spent; ``451 4.3.1`` if nothing comes free), grown without
waiting while a small message is collected in memory. When growth is refused the session
spills to the blob's temp file instead, so memory stays bounded by the budget however
many sessions send, or withhold the final dot of, large messages.
"""

from __future__ import annotations

from mailsac.waiters import Waiters


class Lease:
    """Bytes of the budget held by one DATA transfer (released once, idempotently)."""

    def __init__(self, budget: DataBudget, size: int) -> None:
        self._budget = budget
        self.size = size

    def grow(self, size: int) -> bool:
        """Hold ``size`` bytes in total if the budget allows it now (never waits)."""
        extra = size - self.size
        if extra <= 0:
            return True
        if not self._budget.try_take(extra):
            return False
        self.size = size
        return True

    def release(self) -> None:
        size, self.size = self.size, 0
        if size:
            self._budget.give_back(size)


class DataBudget:
    """Counts in-flight DATA bytes against ``limit`` (event loop only)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.refused = 0
        self._waiters = Waiters()

    def try_take(self, size: int) -> bool:
        if self.used + size > self.limit:
            return False
        self.used += size
        return True

    def give_back(self, size: int) -> None:
        self.used -= size
        self._waiters.wake_all()

    async def acquire(self, size: int, wait: float) -> Lease | None:
        """A lease of ``size`` bytes, waiting up to ``wait`` seconds; None if none came."""
        if not await self._waiters.wait_until(lambda: self.try_take(size), wait):
            self.refused += 1
            return None
        return Lease(self, size)
