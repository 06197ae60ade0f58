"""Linear-time extraction of http(s) links from message bodies.

Every regular expression here is written so that each input position is scanned a bounded
number of times (no nested quantifiers, every open-ended run stops at a delimiter that
cannot occur inside it), so a megabyte of adversarial input is processed in linear time.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator

__all__ = ["MAX_LINKS", "MAX_LINK_CHARS", "MAX_LINKS_TOTAL_CHARS", "extract_links",
           "iter_text_urls"]

# The links kept per message: they are stored with every recipient's row and returned in
# every message object, so a body made of nothing but URLs must not become megabytes of
# JSON per row. A real newsletter has tens to a few hundred links.
MAX_LINKS = 500
MAX_LINK_CHARS = 2048  # a longer URL is left out (browsers and servers balk beyond ~2 KB)
MAX_LINKS_TOTAL_CHARS = 32 * 1024

# Characters that can never be part of a bare URL: whitespace, controls, angle brackets,
# double quotes, backticks, and the usual typographic / CJK quotes and punctuation.
_STOP_CHARS = (
    r"\s\x00-\x1f\x7f<>\"`"
    r"\u00ab\u00bb\u2018-\u201f\u2039\u203a\u3000-\u3003\u3008-\u3011"
    r"\uff01\uff08\uff09\uff0c\uff1a\uff1b\uff1f"
)
_URL_TEXT = re.compile(r"https?://[^" + _STOP_CHARS + r"]+", re.IGNORECASE)
# In HTML a single quote also ends a bare URL (it usually closes an attribute value).
# (The leading lookahead lets the regex engine skip quickly to candidate positions.)
_HTML_TOKEN = re.compile(
    r"""(?=[hHsS])(?:(?:href|src)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))"""
    r"|(https?://[^" + _STOP_CHARS + r"']+))",
    re.IGNORECASE,
)
_STOP_RE = re.compile(r"[" + _STOP_CHARS + r"]")
_VALID = re.compile(r"https?://[^/?#\s]", re.IGNORECASE)
_TAB_NL = re.compile(r"[\t\r\n]")

_TRAILING = frozenset(".,;:!?'\">*")
_PAIRS = {")": "(", "]": "[", "}": "{"}


def _trim(url: str) -> str:
    """Strip trailing punctuation; keep closing brackets that balance an opening one."""
    end = len(url)
    if end == 0 or (url[-1] not in _TRAILING and url[-1] not in _PAIRS):
        return url
    excess = {c: url.count(c) - url.count(o) for c, o in _PAIRS.items()}
    while end > 0:
        ch = url[end - 1]
        if ch in _TRAILING:
            end -= 1
        elif ch in _PAIRS and excess[ch] > 0:
            excess[ch] -= 1
            end -= 1
        else:
            break
    return url[:end]


def iter_text_urls(text: str) -> Iterator[tuple[int, int]]:
    """Yield ``(start, end)`` spans of the http(s) URLs in plain text."""
    for m in _URL_TEXT.finditer(text):
        url = _trim(m.group(0))
        if _VALID.match(url):
            yield m.start(), m.start() + len(url)


def _clean_bare(candidate: str) -> str | None:
    url = html.unescape(candidate) if "&" in candidate else candidate
    stop = _STOP_RE.search(url)
    if stop is not None:
        url = url[: stop.start()]
    url = _trim(url)
    return url if _VALID.match(url) else None


def _clean_attr(value: str) -> str | None:
    url = html.unescape(value) if "&" in value else value
    url = _TAB_NL.sub("", url).strip(" \f\"'")
    return url if _VALID.match(url) else None


def _iter_html_urls(doc: str) -> Iterator[str]:
    for m in _HTML_TOKEN.finditer(doc):
        bare = m.group(4)
        if bare is not None:
            url = _clean_bare(bare)
        else:
            value = m.group(1)
            if value is None:
                value = m.group(2)
            if value is None:
                value = m.group(3) or ""
            url = _clean_attr(value)
            if url is None:
                # e.g. href="mailto:..." or an unterminated quote: still look for bare URLs.
                for inner in _URL_TEXT.finditer(value):
                    inner_url = _clean_bare(inner.group(0))
                    if inner_url is not None:
                        yield inner_url
                continue
        if url is not None:
            yield url


def extract_links(text: str | None, html: str | None) -> list[str]:
    """The http/https URLs in the text part, then the HTML part; de-duplicated, in order.

    At most :data:`MAX_LINKS` URLs of at most :data:`MAX_LINK_CHARS` characters each and
    :data:`MAX_LINKS_TOTAL_CHARS` in all are kept; scanning stops once the list is full.
    """
    seen: dict[str, None] = {}
    total = 0

    def keep(url: str) -> bool:
        """Add ``url``; False once the list is full."""
        nonlocal total
        if len(url) > MAX_LINK_CHARS or url in seen:
            return True
        if len(seen) >= MAX_LINKS or total + len(url) > MAX_LINKS_TOTAL_CHARS:
            return False
        seen[url] = None
        total += len(url)
        return True

    if text:
        for start, end in iter_text_urls(text):
            if not keep(text[start:end]):
                return list(seen)
    if html:
        for url in _iter_html_urls(html):
            if not keep(url):
                break
    return list(seen)
