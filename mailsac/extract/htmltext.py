"""A quick plain-text view of an HTML body, for finding codes in HTML-only mail.

Cheaper than :func:`mailsac.mime.htmlscan.html_to_text` (a few C-level substitutions
instead of a loop per tag) and good enough for the job: inline elements (``<b>``,
``<span>`` …) vanish, every other tag becomes a line break (so a code in a cell of its
own stands alone on its line), and the content of ``<head>``, ``<style>``, ``<script>``
and ``<title>`` is dropped (an unclosed one hides the rest, as in a browser). Linear time:
every pattern's runs are possessive and stop at ``<`` or ``>``.
"""

from __future__ import annotations

import html
import re

__all__ = ["html_text"]

_HIDDEN = re.compile(r"<(head|style|script|title)(?![A-Za-z0-9-])", re.IGNORECASE)
_CLOSE = {name: re.compile(rf"</{name}[^<>]*+>", re.IGNORECASE)
          for name in ("head", "style", "script", "title")}
_INLINE = re.compile(
    r"</?(?:a|b|i|u|s|em|strong|span|font|small|big|code|kbd|samp|tt|mark|sub|sup|abbr|"
    r"bdi|bdo|cite|q|var|wbr|del|ins|label|nobr|o:p)(?![A-Za-z0-9-])[^<>]*+>",
    re.IGNORECASE)
_TAG = re.compile(r"<[^<>]*+>")


def _visible(doc: str) -> str:
    """``doc`` without comments and hidden elements' content."""
    parts: list[str] = []
    pos, end = 0, len(doc)
    hidden = _HIDDEN.search(doc)
    while pos < end:
        if hidden is not None and hidden.start() < pos:  # it was inside a comment
            hidden = _HIDDEN.search(doc, pos)
        comment = doc.find("<!--", pos, hidden.start() if hidden else end)
        if comment >= 0:
            parts.append(doc[pos:comment])
            comment_end = doc.find("-->", comment + 4)
            pos = end if comment_end < 0 else comment_end + 3
            continue
        if hidden is None:
            parts.append(doc[pos:])
            break
        parts.append(doc[pos:hidden.start()])
        close = _CLOSE[hidden.group(1).lower()].search(doc, hidden.end())
        pos = end if close is None else close.end()
        hidden = _HIDDEN.search(doc, pos)
    return "".join(parts)


def html_text(doc: str) -> str:
    """The text of ``doc``: inline tags removed, other tags as line breaks, entities
    decoded (no whitespace folding: callers look at lines)."""
    text = _TAG.sub("\n", _INLINE.sub("", _visible(doc)))
    return html.unescape(text) if "&" in text else text
