"""The in-memory index of live rules: which rules may fire at a stage for given recipients.

Built from a snapshot of the table on every reload; lookups are dictionary hits, so the
SMTP path never asks the database whether a rule applies. Ownership is checked at match
time against the directory, so a rule on an address or domain its account no longer owns
(released, given to someone else) never fires.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from mailsac.chaos.rules import Rule
from mailsac.policy import Recipient


@dataclass
class RuleIndex:
    """Live rules by stage: global ones, and those keyed by address or by domain."""

    owner_of_inbox: Callable[[str], str | None]
    domain_owner: Callable[[str], str | None]
    rules: dict[str, Rule] = field(default_factory=dict)
    by_global: dict[str, list[Rule]] = field(default_factory=dict)
    by_address: dict[tuple[str, str], list[Rule]] = field(default_factory=dict)
    by_domain: dict[tuple[str, str], list[Rule]] = field(default_factory=dict)
    horizon: float = 0.0  # the latest expiry (time.time()); nothing is live after it

    def replace(self, rules: Sequence[Rule]) -> None:
        """Swap in a fresh snapshot (oldest first), keeping the local view of ``times_left``
        when it is lower (a firing this node saw before the reload's read)."""
        old = self.rules
        by_global: dict[str, list[Rule]] = {}
        by_address: dict[tuple[str, str], list[Rule]] = {}
        by_domain: dict[tuple[str, str], list[Rule]] = {}
        for rule in rules:
            previous = old.get(rule.id)
            if (previous is not None and previous.times_left is not None
                    and rule.times_left is not None and previous.times_left < rule.times_left):
                rule.times_left = previous.times_left
            if rule.scope == "global":
                by_global.setdefault(rule.stage, []).append(rule)
            elif rule.scope == "address" and rule.target:
                by_address.setdefault((rule.stage, rule.target), []).append(rule)
            elif rule.scope == "domain" and rule.target:
                by_domain.setdefault((rule.stage, rule.target), []).append(rule)
        self.rules = {r.id: r for r in rules}
        self.by_global, self.by_address, self.by_domain = by_global, by_address, by_domain
        self.horizon = max((r.expires for r in rules), default=0.0)

    def live_count(self, now: float) -> int:
        return sum(1 for r in self.rules.values() if r.expires > now)

    def candidates(self, stage: str, recipients: Sequence[Recipient], now: float) -> list[Rule]:
        """Rules that may fire, in the order they are tried: the address's, the domain's,
        then global ones; each oldest first. With several recipients (``data``), only
        rules that cover every one of them (see :mod:`mailsac.chaos.rules`)."""
        found: list[Rule] = []
        if recipients:
            first = recipients[0]
            for rule in self.by_address.get((stage, first.inbox), ()):
                if (rule.expires > now and all(r.inbox == first.inbox for r in recipients)
                        and self.owner_of_inbox(first.inbox) == rule.account_id):
                    found.append(rule)
            for rule in self.by_domain.get((stage, first.domain), ()):
                if (rule.expires > now and all(r.domain == first.domain for r in recipients)
                        and self.domain_owner(first.domain) == rule.account_id):
                    found.append(rule)
        found.extend(r for r in self.by_global.get(stage, ()) if r.expires > now)
        return found
