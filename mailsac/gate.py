"""The sender gate: deny-lists and rate limits, checked at connect, MAIL FROM and DATA.

All state is in memory (the :mod:`mailsac.throttle` counter and deny-list), so a check
costs microseconds and a deny-list change is effective for the very next SMTP command
(in-process changes at once; changes from the CLI or another process after the
PostgreSQL ``NOTIFY`` reload). Limits are keyed so that floods cannot hide:

* per client IP and per /24 (IPv4) or /56 (IPv6) network;
* per *organisational* sender domain (Public Suffix List), so a unique sub-domain per
  message still counts against ``example.com``; likewise the Reply-To domain;
* per recipient inbox, with private (reserved / owned-domain) inboxes counted apart from
  public ones, so a public flood cannot starve an account's own mail.

Every event of one message is recorded atomically (``hit_all``) and only when allowed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from mailsac.errors import DenyListed, Throttled
from mailsac.storage import denylist as deny_store
from mailsac.storage.db import connect
from mailsac.throttle import (
    Counter,
    DenyEntry,
    DenyList,
    Limiter,
    canonical_entry,
    default_limits,
    domain_of,
    inbox_key,
    ip_key,
    network_key,
    org_domain,
    recipient_limit,
)

log = logging.getLogger(__name__)

_REPLY_TO = re.compile(rb"^reply-to:[^\r\n]*?([^\s<@,;]+@[^\s>,;]+)", re.I | re.M)


def parse_limit_overrides(text: str) -> dict[str, float]:
    """``"ip=600,rcpt_public=200,ip.window_seconds=30"`` → mapping for default_limits."""
    overrides: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"limit override {part!r} needs name=value")
        overrides[name.strip()] = float(value)
    default_limits(overrides)  # validate names now, not at the first message
    return overrides


def reply_to_address(content: bytes) -> str | None:
    """The first Reply-To address of a message's header block (cheap, no full parse)."""
    header_end = content.find(b"\r\n\r\n")
    head = content[: header_end if header_end >= 0 else 65536][:65536]
    match = _REPLY_TO.search(head)
    return match.group(1).decode("ascii", "replace") if match else None


@dataclass(frozen=True, slots=True)
class Recipient:
    inbox: str
    private: bool


class SenderGate:
    """Deny-list and rate-limit checks for the SMTP layer (raises DenyListed / Throttled)."""

    def __init__(self, engine: AsyncEngine, limits: Mapping[str, float] | None = None,
                 max_entries: int = 1_000_000) -> None:
        self._engine = engine
        self.counter = Counter(max_entries=max_entries)
        self.limiter = Limiter(self.counter, default_limits(limits))
        self._enabled = {limit.name for limit in self.limiter.limits}  # 0 disables a limit
        self.deny = DenyList()

    async def reload(self) -> None:
        async with connect(self._engine) as conn:
            rows = await deny_store.load(conn)
        entries = [DenyEntry(r.kind, r.value, r.reason) for r in rows]  # type: ignore[arg-type]
        self.deny = DenyList(entries)

    # -- deny-list management ------------------------------------------------------------

    async def deny_add(self, value: str, reason: str) -> DenyEntry:
        entry = canonical_entry(value, reason)
        async with connect(self._engine, write=True) as conn:
            await deny_store.upsert(conn, entry.value, entry.kind, entry.reason)
        self.deny.add(entry.value, entry.reason)
        return entry

    async def deny_remove(self, value: str) -> bool:
        entry = canonical_entry(value)
        async with connect(self._engine, write=True) as conn:
            removed = await deny_store.remove(conn, entry.value)
        self.deny.remove(entry.value)
        return removed

    def deny_match(self, value: str) -> DenyEntry | None:
        """The entry that blocks an IP or domain (``GET /api/mailstats/blacklist/{x}``)."""
        try:
            entry = canonical_entry(value)
        except ValueError:
            return None
        if entry.kind == "domain":
            return self.deny.match_domain(entry.value)
        if entry.kind == "ip":
            return self.deny.match_ip(entry.value)
        return next((e for e in self.deny.entries() if e.value == entry.value), None)

    # -- SMTP checkpoints ----------------------------------------------------------------

    def _check_ip(self, ip: str) -> None:
        entry = self.deny.match_ip(ip)
        if entry is not None:
            raise DenyListed(f"Connections from {ip} are refused: {entry.reason or 'deny-listed'}")

    def on_connect(self, ip: str) -> None:
        self._check_ip(ip)
        if "ip_connections" not in self._enabled:
            return
        decision = self.limiter.hit("ip_connections", ip_key(ip) or ip)
        if not decision.allowed:
            raise Throttled(decision.reason, decision.retry_after)

    def on_mail_from(self, ip: str, sender: str) -> None:
        self._check_ip(ip)  # the list may have changed since the connection opened
        domain = domain_of(sender)
        entry = self.deny.match_domain(domain) if domain else None
        if entry is not None:
            raise DenyListed(f"Mail from {domain} is refused: {entry.reason or 'deny-listed'}")

    def on_data(self, ip: str, sender: str, content: bytes,
                recipients: Iterable[Recipient]) -> None:
        events: list[tuple[str, str | None]] = [
            ("ip", ip_key(ip)), ("network", network_key(ip)),
            ("sender_org", org_domain(domain_of(sender)) if sender else None),
            ("reply_to_org", org_domain(domain_of(reply_to_address(content)))),
        ]
        events += [(recipient_limit(r.private), inbox_key(r.inbox)) for r in recipients]
        decision = self.limiter.hit_all((n, k) for n, k in events if n in self._enabled)
        if not decision.allowed:
            raise Throttled(decision.reason, decision.retry_after)
