"""Header feature tokens: sender domains, Received shapes, dates, Message-ID, mailer.

Only an allow-list of headers is looked at (see :mod:`mailsac.spam.features` for what
is excluded and why); values are reduced to shapes that carry over between senders and
years (no version numbers, no specific relay host names).
"""

from __future__ import annotations

import email.utils
import re

from mailsac.mime import ParsedMessage
from mailsac.spam.domains import is_ip, registrable_domain

__all__ = ["header_tokens", "is_leaky_header", "strip_leaky_headers"]

_RCVD_FROM = re.compile(
    r"^\s*from\s+(\S+)\s*(?:\(([^)]{0,300})\))?", re.IGNORECASE
)  # "from HELO (rdns [ip])"
_RCVD_WITH = re.compile(r"\bwith\s+([a-z]+)", re.IGNORECASE)
_DYNAMIC = re.compile(
    r"(?:\d{1,3}[.-]){3}\d{1,3}|dsl|dial|dyn|pool|cable|ppp|dhcp|client|cust|static|\bhsd\b",
    re.IGNORECASE,
)
_BRACKET_IP = re.compile(r"\[([0-9a-fA-F.:]+)\]")
_MAILER_WORD = re.compile(r"[a-z]{2,}")
_PRIVATE_IP = re.compile(r"^(?:10\.|127\.|192\.168\.|172\.(?:1[6-9]|2\d|3[01])\.)")


MAX_ADDRESS_VALUE = 4096  # characters of a Reply-To / Return-Path value parsed (first address)
MAX_MAILER_VALUE = 256  # characters of X-Mailer / User-Agent looked at (first three words)


# Verdict and client-state headers: written by an earlier filter, a mail client or this
# service, they describe where a corpus was kept, not the mail (CSDMC2010 carries a
# SpamAssassin verdict in "XChecker-Version"/"XStatus", Thunderbird state in X-Mozilla-*).
_LEAKY_PREFIXES = (
    "x-spam", "x-mozilla-", "x-mailsac", "x-virus", "x-amavis", "x-barracuda", "x-ironport",
    "x-proofpoint", "x-mimecast", "x-forefront-", "x-microsoft-antispam", "x-ms-exchange-",
    "x-dspam", "x-crm114", "x-bogosity", "x-razor", "x-pyzor", "x-evolution", "x-gmail-",
    "x-apple-", "x-asf-", "x-policyd", "x-getmail", "x-fetchmail", "x-sieve",
)
_LEAKY_NAMES = frozenset({
    "xchecker-version", "xstatus", "x-status", "status", "x-uidl", "x-uid", "x-account-key",
    "x-keywords", "x-label", "x-labels", "x-folder", "delivered-to", "delivery-date",
    "x-original-to", "x-envelope-to", "envelope-to", "content-length", "lines",
    "x-rcpt-to", "x-imap", "x-imapbase", "x-flags", "authentication-results",
    "received-spf", "arc-authentication-results", "x-greylist", "x-scanned-by",
})
# any header naming a spam or virus filter counts as one of its verdicts
_FILTER_WORDS = ("spam", "virus", "checker", "filter", "scanned", "scanner", "junk", "phish")
OUR_RECEIVED_MARK = "(mailsac) with"  # see mailsac.delivery.received_header


def is_leaky_header(name: str, value: str = "") -> bool:
    """True for verdict / client-state headers and the trace this service adds."""
    lower = name.strip().lower()
    if lower == "received":
        return OUR_RECEIVED_MARK in value[:2048]
    if lower in _LEAKY_NAMES or lower.startswith(_LEAKY_PREFIXES):
        return True
    return any(word in lower for word in _FILTER_WORDS)


def strip_leaky_headers(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """``headers`` without :func:`is_leaky_header` ones (order kept)."""
    return [(n, v) for n, v in headers if not is_leaky_header(n, v)]


def _domain_of(value: str) -> str:
    try:  # the stdlib parser recurses on "(((..." and "a:a:a:...": RecursionError
        _, addr = email.utils.parseaddr(value[:MAX_ADDRESS_VALUE])
    except Exception:
        return ""
    return registrable_domain(addr.rpartition("@")[2]) if "@" in addr else ""


def _timestamp(value: str) -> float | None:
    try:
        parsed = email.utils.parsedate_tz(value)
        return None if parsed is None else float(email.utils.mktime_tz(parsed))
    except (TypeError, ValueError, OverflowError, IndexError):
        return None


def _received_tokens(values: list[str], out: set[str]) -> float | None:
    """Generic relay shapes only: hop counts and protocols mostly describe the
    recipient's own mail set-up (fetchmail, list servers), not the sender."""
    first_time: float | None = None
    for i, value in enumerate(values[:12]):
        if i == 0 and ";" in value:
            first_time = _timestamp(value.rsplit(";", 1)[1])
        w = _RCVD_WITH.search(value)
        if w and w.group(1).lower() == "http":
            out.add("rcvd:with:http")  # web mail
        m = _RCVD_FROM.match(value)
        if m is None:
            continue
        helo, comment = m.group(1).strip("[]()").lower(), (m.group(2) or "").lower()
        ip = _BRACKET_IP.search(comment)
        if ip is None or _PRIVATE_IP.match(ip.group(1)):
            continue  # local hand-offs (fetchmail, content filters) say nothing
        if "unknown" in comment:
            out.add("rcvd:unknown")
        if is_ip(helo):
            out.add("rcvd:helo_ip")
        rdns = comment.split()[0] if comment.split() else ""
        if _DYNAMIC.search(rdns) or _DYNAMIC.search(helo):
            out.add("rcvd:dynamic")
        if rdns and not is_ip(rdns.strip("[]")) and "." in helo and not is_ip(helo):
            if registrable_domain(rdns) != registrable_domain(helo):
                out.add("rcvd:helo_mismatch")
    return first_time


def _date_tokens(values: list[str], received_at: float | None, out: set[str]) -> None:
    if not values:
        out.add("date:none")
        return
    value = values[0]
    parsed = email.utils.parsedate_tz(value)
    if parsed is None:
        out.add("date:bad")
        return
    offset = parsed[9]
    if offset is None:
        out.add("date:notz")
    elif abs(offset) > 14 * 3600 or offset % 900:
        out.add("date:tz_odd")  # the sender's time zone itself is no signal
    if not re.match(r"\s*(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun),", value):
        out.add("date:nodow")
    if not re.search(r"\d\d:\d\d:\d\d", value):
        out.add("date:nosec")
    sent = _timestamp(value)
    if sent is None:
        out.add("date:bad")
    elif received_at is not None:
        skew = sent - received_at
        if skew > 3 * 3600:
            out.add("date:future")
        elif skew < -2 * 86400:
            out.add("date:past")


def header_tokens(msg: ParsedMessage, from_domain: str, out: set[str]) -> None:
    """Add the header-derived tokens of ``msg`` to ``out``."""
    by_name: dict[str, list[str]] = {}
    for name, value in strip_leaky_headers(msg.headers):
        by_name.setdefault(name.lower(), []).append(value)
    get = by_name.get
    received_at = _received_tokens(get("received", []), out)
    _date_tokens(get("date", []), received_at, out)
    for field, prefix in (("reply-to", "rt"), ("return-path", "rp")):
        values = get(field)
        if not values:
            continue
        domain = _domain_of(values[0])
        if not domain:
            out.add(prefix + ":empty")
            continue
        out.add(f"{prefix}:{domain}")
        out.add(f"{prefix}:" + ("same" if domain == from_domain else "diff"))
    mid = (get("message-id") or [""])[0].strip().strip("<>")
    if not mid:
        out.add("mid:none")
    elif "@" not in mid:
        out.add("mid:noat")
    else:
        local, _, host = mid.rpartition("@")
        mid_domain = registrable_domain(host.strip("[]"))
        if not mid_domain or "." not in host:
            out.add("mid:local")
        out.add("mid:" + ("same" if mid_domain == from_domain else "diff"))
        if len(local) < 10:
            out.add("mid:short")
    mailer = (get("x-mailer") or get("user-agent") or [""])[0][:MAX_MAILER_VALUE].lower()
    words = _MAILER_WORD.findall(mailer)[:3]
    out.add("xm:" + (" ".join(words) if words else "none"))
    for name in ("x-priority", "x-msmail-priority", "importance"):
        priority = get(name)
        if priority:
            out.add(f"{name}:{priority[0].strip().lower()[:10]}")
    if "in-reply-to" in by_name or "references" in by_name:
        out.add("thread:reply")
    if "organization" in by_name:
        out.add("hdr:org")
    to_values = " ".join(get("to", [])).lower()
    if "undisclosed" in to_values or (not msg.to and not msg.cc):
        out.add("to:undisclosed")
    if msg.from_ and any(a.address.lower() == msg.from_[0].address.lower() for a in msg.to):
        out.add("to:eq_from")
    out.add(f"cc:n:{min(5, len(msg.cc))}")
