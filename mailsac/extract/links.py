"""Links of a message with their anchor text: ``<a href>`` anchors of the HTML body, and
the bare URLs of the text body (labelled with the words on their line).

Linear time: anchors are found with one pass of a regular expression whose runs are
possessive and stop at ``<`` or ``>``; the text of an anchor is looked for only up to
the next anchor, so no part of the document is searched twice.
"""

from __future__ import annotations

import html as htmllib
import re
from dataclasses import dataclass

from mailsac.extract.classify import classify
from mailsac.mime.links import iter_text_urls

__all__ = ["MAX_HTML_CHARS", "MAX_LINKS", "Link", "find_links"]

MAX_LINKS = 100
MAX_HTML_CHARS = 200_000
MAX_TEXT_CHARS = 50_000
MAX_URL_CHARS = 2048
MAX_LABEL_CHARS = 200
_LEAD_CHARS = 60  # text before an anchor that may tell what it is for
_MAX_INNER = 4_000  # an anchor's content looked at (an unclosed <a> ends here)

_A_CLOSE = re.compile(r"</a(?![A-Za-z0-9-])", re.IGNORECASE)
_A_OPEN = re.compile(r"<a(?=[\s/>])[^<>]*+>", re.IGNORECASE)
_HREF = re.compile(r"""href\s*+=\s*+(?:"([^"]*+)"|'([^']*+)'|([^\s>"']++))""",
                   re.IGNORECASE)
_IMG = re.compile(r"<img(?=[\s/>])[^<>]*+>", re.IGNORECASE)
_ALT = re.compile(r"""alt\s*+=\s*+(?:"([^"]*+)"|'([^']*+)'|([^\s>"']++))""",
                  re.IGNORECASE)
_ANY_TAG = re.compile(r"<[^<>]*+>")
_WS = re.compile(r"\s+")
_VALID = re.compile(r"https?://[^/?#\s]", re.IGNORECASE)
_CONTROL = re.compile(r"[\t\r\n]")
_LABEL_TRIM = " \t\r\xa0:：-—>»|[](){}*"


@dataclass(frozen=True, slots=True)
class Link:
    """A link: its URL, the text that presents it, where it was found and its kind."""

    url: str
    text: str
    source: str
    kind: str
    by_text: bool = False  # the kind comes from the text (not only from the URL)
    image_only: bool = False  # an anchor around an image and nothing else (a logo)

    def to_json(self) -> dict[str, str]:
        return {"url": self.url, "text": self.text, "source": self.source, "kind": self.kind}


def _attr(pattern: re.Pattern[str], name: str, tag: str) -> str | None:
    """The value of attribute ``name`` (lower case) of ``tag``; ``pattern`` matches
    ``name="value"``. Found with ``str.find`` first: a regex search would try every
    position of the tag."""
    low = tag.lower()
    at = low.find(name)
    while at >= 0:
        if low[at - 1] in " \t\r\n\f/\"'":  # not "data-href"
            m = pattern.match(tag, at)
            if m is not None:
                value = m.group(1) if m.group(1) is not None else m.group(2)
                return value if value is not None else m.group(3)
        at = low.find(name, at + len(name))
    return None


def _clean_url(value: str) -> str | None:
    url = htmllib.unescape(value) if "&" in value else value
    url = _CONTROL.sub("", url).strip(" \f\"'")
    if len(url) > MAX_URL_CHARS or not _VALID.match(url):
        return None
    return url


def _label(fragment: str) -> str:
    text = _ANY_TAG.sub(" ", fragment) if "<" in fragment else fragment
    if "&" in text:
        text = htmllib.unescape(text)
    return " ".join(text.split())[:MAX_LABEL_CHARS]


def _anchor(doc: str, tag: str, start: int, limit: int,
            lead_from: int) -> Link | None:
    """The link of the anchor whose opening ``tag`` ends at ``start``; ``lead_from``:
    where the text before it (for "click <a>here</a>", "Not you? <a>…</a>") may begin."""
    href = _attr(_HREF, "href", tag)
    url = _clean_url(href) if href is not None else None
    if url is None:
        return None
    close_tag = _A_CLOSE.search(doc, start, limit)
    close = close_tag.start() if close_tag is not None else -1
    inner = doc[start: close if close >= 0 else limit]
    text = _label(inner)
    image_only = False
    if not text:
        img = _IMG.search(inner)
        if img is not None:
            image_only = True
            text = " ".join(htmllib.unescape(_attr(_ALT, "alt", img.group(0)) or "").split())
            text = text[:MAX_LABEL_CHARS]
    lead = doc[max(lead_from, start - len(tag) - _LEAD_CHARS): start - len(tag)]
    if "<" in lead:  # only the text after the last tag (the lead's own element)
        lead = lead[lead.rfind(">") + 1:] or _label(lead)
    kind, by_text = classify(url, text, " ".join(lead.split()))
    return Link(url, text, "html", kind, by_text, image_only)


def _html_links(doc: str) -> list[Link]:
    doc = doc[:MAX_HTML_CHARS]
    found: list[Link] = []
    pending: re.Match[str] | None = None
    lead_from = 0  # the end of the anchor before (its text is not this one's lead)
    for m in _A_OPEN.finditer(doc):
        if pending is not None:
            link = _anchor(doc, pending.group(0), pending.end(),
                           min(m.start(), pending.end() + _MAX_INNER), lead_from)
            lead_from = pending.end()
            if link is not None:
                found.append(link)
                if len(found) >= MAX_LINKS:
                    return found
        pending = m
    if pending is not None:
        link = _anchor(doc, pending.group(0), pending.end(),
                       min(len(doc), pending.end() + _MAX_INNER), lead_from)
        if link is not None:
            found.append(link)
    return found


def _line_label(text: str, start: int) -> str:
    """The words before a bare URL on its line, else the previous non-blank line."""
    line_start = text.rfind("\n", max(0, start - MAX_LABEL_CHARS), start) + 1
    label = text[line_start:start].strip(_LABEL_TRIM)
    if not label and line_start > 1:
        previous = text[max(0, line_start - 1 - MAX_LABEL_CHARS): line_start - 1]
        previous = previous.rstrip()
        label = previous[previous.rfind("\n") + 1:].strip(_LABEL_TRIM)
    return _WS.sub(" ", label)[:MAX_LABEL_CHARS]


def _text_links(text: str) -> list[Link]:
    text = text[:MAX_TEXT_CHARS]
    found: list[Link] = []
    for start, end in iter_text_urls(text):
        url = text[start:end]
        if len(url) > MAX_URL_CHARS:
            continue
        label = _line_label(text, start)
        kind, by_text = classify(url, label)
        found.append(Link(url, label, "text", kind, by_text))
        if len(found) >= MAX_LINKS:
            break
    return found


def find_links(text: str | None, html: str | None) -> list[Link]:
    """The HTML body's anchors, then the text body's URLs not among them; document order
    within each, one entry per URL, at most :data:`MAX_LINKS`."""
    links: dict[str, Link] = {}
    for group in (_html_links(html) if html else [], _text_links(text) if text else []):
        for link in group:
            if len(links) >= MAX_LINKS:
                break
            links.setdefault(link.url, link)
    return list(links.values())
