"""The sender gate: deny-lists and rate limits, checked at connect, MAIL FROM and DATA.

All state is in memory (the :mod:`mailsac.throttle` counter and deny-list), so a check
costs microseconds and a deny-list change is effective for the very next SMTP command
(in-process changes at once; changes from the CLI or another process after the
PostgreSQL ``NOTIFY`` reload). Limits are keyed so that floods cannot hide:

* per client IP and per /24 (IPv4) or /56 (IPv6) network;
* per *organisational* sender domain (Public Suffix List), so a unique sub-domain per
  message still counts against ``example.com``; likewise the Reply-To domain;
* per recipient inbox, with private (reserved / owned-domain) inboxes counted apart from
  public ones, so a public flood cannot starve an account's own mail;
* per account for authenticated (SMTP AUTH) sessions, instead of the per-client limits.

Every event of one message is recorded atomically (``hit_all``) and only when allowed.

Several nodes (``MAILSAC_CLUSTER``): the counts stay in memory, and a background task
(:mod:`mailsac.throttle_sync`) shares the heavy keys' counts through PostgreSQL every
``MAILSAC_THROTTLE_SYNC_INTERVAL`` seconds, so a sender spreading its connections over the
nodes is limited as if it used one (tolerance and delay: :mod:`mailsac.throttle.shared`).
Deny-list changes reach every node through the ``NOTIFY`` reload.
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
from mailsac.throttle.shared import SharedCounts
from mailsac.throttle_sync import ThrottleSync

log = logging.getLogger(__name__)

MAX_HEADER_BLOCK = 64 * 1024  # bytes of a message searched for its header block
MAX_REPLY_TO_VALUE = 998  # bytes of one (unfolded) Reply-To value looked at (RFC 5322 2.1.1)
MAX_REPLY_TO_FIELDS = 16  # Reply-To fields tried before giving up

# Anchored literal: each match attempt fails after a few bytes, so finditer is linear.
_REPLY_TO_NAME = re.compile(rb"^reply-to:", re.I | re.M)
_LOCAL_STOP = frozenset(b" \t\r\n\v\f<@,;")  # bytes that end an address's local part
_DOMAIN_STOP = frozenset(b" \t\r\n\v\f>,;")  # bytes that end its domain


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


def header_block(content: bytes, limit: int = MAX_HEADER_BLOCK) -> bytes:
    """The header block of a message (up to its first empty line), at most ``limit`` bytes.

    Only the first ``limit`` bytes are searched, so the cost does not grow with the body.
    """
    head = bytes(content[:limit])
    if head.startswith((b"\r\n", b"\n")):
        return b""
    ends = [i for i in (head.find(b"\n\r\n"), head.find(b"\n\n")) if i >= 0]
    return head[: min(ends) + 1] if ends else head


def _field_value(head: bytes, start: int) -> bytes:
    """The value of the field whose name ends at ``start``, unfolded, capped in length."""
    cap = start + MAX_REPLY_TO_VALUE
    lines: list[bytes] = []
    pos = start
    while pos < cap:
        nl = head.find(b"\n", pos, cap)
        line_end = nl if nl >= 0 else cap
        lines.append(head[pos:line_end])
        if nl < 0 or head[nl + 1 : nl + 2] not in (b" ", b"\t"):
            break  # the next line is not a continuation of this field
        pos = nl + 1
    return b" ".join(lines)[:MAX_REPLY_TO_VALUE]


def _first_address(value: bytes) -> bytes | None:
    """First ``local@domain`` run in ``value`` (what ``[^\\s<@,;]+@[^\\s>,;]+`` finds first).

    Each ``@`` is looked at once and the scans left and right stop at the first delimiter,
    so the cost is linear in ``len(value)``.
    """
    at = value.find(b"@")
    while at >= 0:
        if 0 < at < len(value) - 1 and value[at - 1] not in _LOCAL_STOP \
                and value[at + 1] not in _DOMAIN_STOP:
            start = at - 1
            while start > 0 and value[start - 1] not in _LOCAL_STOP:
                start -= 1
            end = at + 1
            while end < len(value) and value[end] not in _DOMAIN_STOP:
                end += 1
            return value[start:end]
        at = value.find(b"@", at + 1)
    return None


def reply_to_address(content: bytes) -> str | None:
    """The first Reply-To address of a message's header block (cheap, no full parse).

    ``content`` may be the whole message or just its header block. Linear in the (capped)
    input: at most :data:`MAX_HEADER_BLOCK` bytes are searched, at most
    :data:`MAX_REPLY_TO_FIELDS` Reply-To fields of at most :data:`MAX_REPLY_TO_VALUE`
    bytes each are scanned (continuation lines included).
    """
    head = header_block(content)
    for count, match in enumerate(_REPLY_TO_NAME.finditer(head)):
        if count >= MAX_REPLY_TO_FIELDS:
            break
        address = _first_address(_field_value(head, match.end()))
        if address is not None:
            return address.decode("ascii", "replace")
    return None


@dataclass(frozen=True, slots=True)
class Recipient:
    inbox: str
    private: bool
    owner: str | None = None  # the account holding the inbox, when private


class SenderGate:
    """Deny-list and rate-limit checks for the SMTP layer (raises DenyListed / Throttled)."""

    def __init__(self, engine: AsyncEngine, limits: Mapping[str, float] | None = None,
                 max_entries: int = 1_000_000, *, database_url: str = "",
                 cluster: str = "default", sync_interval: float = 0.0) -> None:
        self._engine = engine
        self.counter = Counter(max_entries=max_entries)
        self.limiter = Limiter(self.counter, default_limits(limits))
        self._enabled = {limit.name for limit in self.limiter.limits}  # 0 disables a limit
        self.deny = DenyList()
        self._local_changes = 0  # deny_add/deny_remove calls, so reload() can spot races
        self.sync: ThrottleSync | None = None
        """Shares counts with the cluster's other nodes (None: sharing off)."""
        if database_url and sync_interval > 0:
            shared = SharedCounts(self.counter, self.limiter.limits)
            self.limiter.shared = shared
            self.sync = ThrottleSync(shared, database_url, cluster, sync_interval)

    def sync_metrics(self) -> dict[str, object]:
        """Sharing statistics for ``/metrics`` (empty when sharing is off)."""
        sync = self.sync
        if sync is None:
            return {}
        stats = sync.stats
        return {"ok": stats.ok, "failed": stats.failed, "rows_written": stats.rows_written,
                "rows_read": stats.rows_read, "seconds": stats.seconds,
                "available": stats.available, "untallied": sync.shared.untallied,
                "remote": sync.shared.remote_totals()}

    async def reload(self) -> None:
        """Replace the in-memory deny-list with the stored one (after a NOTIFY).

        A change made through this gate while the rows were being read may be missing from
        them; installing that stale snapshot would undo the change until the next NOTIFY,
        so the read is repeated until no local change raced with it.
        """
        for _ in range(5):
            seen = self._local_changes
            async with connect(self._engine) as conn:
                rows = await deny_store.load(conn)
            if self._local_changes == seen:
                break
        entries = [DenyEntry(r.kind, r.value, r.reason) for r in rows]  # type: ignore[arg-type]
        self.deny = DenyList(entries)

    # -- deny-list management ------------------------------------------------------------

    async def deny_add(self, value: str, reason: str) -> DenyEntry:
        entry = canonical_entry(value, reason)
        async with connect(self._engine, write=True) as conn:
            await deny_store.upsert(conn, entry.value, entry.kind, entry.reason)
        self.deny.add(entry.value, entry.reason)
        self._local_changes += 1
        return entry

    async def deny_remove(self, value: str) -> bool:
        entry = canonical_entry(value)
        async with connect(self._engine, write=True) as conn:
            removed = await deny_store.remove(conn, entry.value)
        self.deny.remove(entry.value)
        self._local_changes += 1
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
        self._check_sender(sender)

    def _check_sender(self, sender: str) -> None:
        domain = domain_of(sender) if sender else None
        entry = self.deny.match_domain(domain) if domain else None
        if entry is not None:
            raise DenyListed(f"Mail from {domain} is refused: {entry.reason or 'deny-listed'}")

    def on_data(self, ip: str, sender: str, content: bytes,
                recipients: Iterable[Recipient], account: str | None = None) -> None:
        """Count one message. An ``account`` (an SMTP AUTH session, Email Capture) is
        counted as itself instead of as an anonymous client: its ``account`` limit, plus
        ``rcpt_private`` for other accounts' inboxes (no tenant floods another's)."""
        self._check_ip(ip)  # the deny-list may have changed during the transaction
        self._check_sender(sender)
        events: list[tuple[str, str | None]]
        if account is not None:
            events = [("account", account)]
            events += [("rcpt_private", inbox_key(r.inbox)) for r in recipients
                       if r.private and r.owner != account]
        else:
            events = [
                ("ip", ip_key(ip)), ("network", network_key(ip)),
                ("sender_org", org_domain(domain_of(sender)) if sender else None),
                ("reply_to_org", org_domain(domain_of(reply_to_address(content)))),
            ]
            events += [(recipient_limit(r.private), inbox_key(r.inbox)) for r in recipients]
        decision = self.limiter.hit_all((n, k) for n, k in events if n in self._enabled)
        if not decision.allowed:
            raise Throttled(decision.reason, decision.retry_after)
