"""Pure, in-process throttling core: sliding-window counter, rate limits, keys, deny-lists.

Nothing here imports SMTP, HTTP or storage code; everything is synchronous and meant to be
used from the event loop only (no locks). Typical wiring::

    counter = Counter(max_entries=1_000_000)
    limiter = Limiter(counter, default_limits(settings))
    decision = limiter.hit_all([
        ("ip", ip_key(peer)), ("network", network_key(peer)),
        ("sender_org", org_domain(mail_from)), (recipient_limit(private), inbox_key(rcpt)),
    ])
    if not decision.allowed:
        return f"421 4.7.0 {decision.reason}"
"""

from __future__ import annotations

from mailsac.throttle.counter import Counter, TopKey, key_hash
from mailsac.throttle.denylist import DenyEntry, DenyList, canonical_entry
from mailsac.throttle.keys import (
    INVALID_DOMAIN,
    domain_of,
    inbox_key,
    ip_key,
    network_key,
    normalize_domain,
    org_domain,
    parse_ip,
)
from mailsac.throttle.limits import (
    Decision,
    Limit,
    Limiter,
    LimitStats,
    default_limits,
    recipient_limit,
)

__all__ = [
    "INVALID_DOMAIN",
    "Counter",
    "Decision",
    "DenyEntry",
    "DenyList",
    "Limit",
    "LimitStats",
    "Limiter",
    "TopKey",
    "canonical_entry",
    "default_limits",
    "domain_of",
    "inbox_key",
    "ip_key",
    "key_hash",
    "network_key",
    "normalize_domain",
    "org_domain",
    "parse_ip",
    "recipient_limit",
]
