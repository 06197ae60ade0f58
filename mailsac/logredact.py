"""Keeps secrets out of log lines: API keys, key query parameters, URL credentials and
query strings, and Slack webhook paths.

:func:`install` puts a :class:`RedactingFilter` on every handler of the root logger (so it
also covers uvicorn, httpx, websockets and anything else that propagates to it) and sets
httpx/httpcore to WARNING: at INFO they log every request URL, including Slack's secret
path. The filter renders each record once, masks secrets in the message, the exception
text and the stack text, and leaves the rest of the record alone.

Every pattern is linear: character classes with single (mostly bounded) quantifiers, no
nested or overlapping repetition, so a hostile string in a log line costs O(n).
"""

from __future__ import annotations

import logging
import re

MASK = "***"

_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    # URL userinfo: scheme://user:password@host
    (re.compile(r"(?i)(\b[a-z][a-z0-9+.-]{0,30}://)[^/\s@?#]{1,256}@"), r"\1" + MASK + "@"),
    # Slack incoming-webhook URLs carry their secret in the path.
    (re.compile(r"(?i)(hooks\.slack\.com)/[^\s\"'<>]{0,2048}"), r"\1/" + MASK),
    # Query strings (?a=b&c=d ...), wherever they appear: URLs, request targets.
    (re.compile(r"\?[\w.%-]{1,64}=[^\s\"'<>]*"), "?" + MASK),
    # key=..., _mailsacKey=..., token=... outside a query string (form bodies, reprs).
    (re.compile(r"(?i)\b(_?mailsac_?key|api_?key|key|token|secret|password|webhooksecret)"
                r"=[^&\s\"'<>]{1,512}"), r"\1=" + MASK),
    # The Mailsac-Key header in any rendering: "Mailsac-Key: x", ('mailsac-key', 'x'), ...
    (re.compile(r"(?i)(mailsac-key[\"']?[:=,]\s{0,4}[\"'(]?b?[\"']?)[^\s\"',)]{1,512}"),
     r"\1" + MASK),
    # Bare API keys (k_ + [a-z0-9], see mailsac.storage.keys).
    (re.compile(r"\bk_[A-Za-z0-9]{8,128}"), "k_" + MASK),
)


def redact(text: str) -> str:
    """``text`` with every secret pattern masked."""
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    """Masks secrets in a record before any handler formats it (never drops a record)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: leave it to the handler's error path
            return True
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


QUIET_LOGGERS = ("httpx", "httpcore", "hpack")


def install(root: logging.Logger | None = None) -> RedactingFilter:
    """Attach the filter to every handler of ``root`` and quiet URL-logging libraries."""
    root = root or logging.getLogger()
    found = next((f for h in root.handlers for f in h.filters
                  if isinstance(f, RedactingFilter)), None)
    redactor = found or RedactingFilter()
    for handler in root.handlers:
        if redactor not in handler.filters:
            handler.addFilter(redactor)
    for name in QUIET_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(max(logging.WARNING, logger.level))
    return redactor
