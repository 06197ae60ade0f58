"""One-time codes and links extracted from a message (issue 19), for test authors.

:func:`extract` runs once per message at intake, in the analysis worker process (see
:mod:`mailsac.analysis`), on the subject and the bodies the parser already decoded. Its
result is stored as JSON next to the message (:mod:`mailsac.storage.extracts`) and served
by ``GET /api/addresses/{email}/messages/{id}/extract``.

Everything is bounded: at most :data:`~mailsac.extract.codes.MAX_SCAN_CHARS` characters of
each text body and :data:`~mailsac.extract.links.MAX_HTML_CHARS` of HTML are looked at,
at most 10 codes and 100 links come out, and every scan is linear in its input.

This package is pure (no I/O); the service that stores and serves the result lives in
:mod:`mailsac.extract.service`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from mailsac.extract.classify import action_score
from mailsac.extract.codes import Code, find_codes
from mailsac.extract.htmltext import html_text
from mailsac.extract.links import MAX_HTML_CHARS, Link, find_links

__all__ = ["Code", "Extract", "Link", "encode", "extract"]

_SHORT_TEXT = 200


@dataclass(frozen=True, slots=True)
class Extract:
    """Codes (most likely first), links (document order) and the action link."""

    codes: list[Code]
    links: list[Link]
    action: Link | None

    def to_json(self) -> dict[str, Any]:
        return {"codes": [c.to_json() for c in self.codes],
                "links": [link.to_json() for link in self.links],
                "actionLink": self.action.to_json() if self.action is not None else None}


def action_link(links: list[Link]) -> Link | None:
    """The link the mail most wants clicked (confirm, verify, reset or log in); never an
    unsubscribe link or a bare logo. The first one wins a tie."""
    best: Link | None = None
    best_score = 0.0
    for link in links:
        score = action_score(link.url, link.text, link.kind, link.by_text, link.image_only)
        if score > best_score:
            best, best_score = link, score
    return best


def _no_nul(value: str | None) -> str | None:
    """NUL characters never reach the stored JSON (PostgreSQL's jsonb refuses them)."""
    return value.replace("\x00", "") if value and "\x00" in value else value


def extract(subject: str, text: str | None, html: str | None) -> Extract:
    """Codes and links of a message given its decoded subject, text and HTML bodies.

    Codes are looked for in the subject and the text body; the HTML body's text is only
    converted and searched when there is no real text body (most mail has both parts,
    alike; a text part shorter than 200 characters is taken for a "view the HTML" stub)."""
    subject = _no_nul(subject) or ""
    text, html = _no_nul(text), _no_nul(html)
    codes = find_codes(subject, [("text", text)] if text else [])
    if not codes and html and len(text or "") < _SHORT_TEXT:
        visible = html_text(html[:MAX_HTML_CHARS])
        codes = find_codes(subject, [("html", visible)], scan_subject=False)
    links = find_links(text, html)
    return Extract(codes, links, action_link(links))


def encode(result: Extract) -> str:
    """Compact JSON text of ``result`` (what is stored and served), valid for PostgreSQL's
    jsonb: no NUL characters and no lone surrogates (both refused there)."""
    text = json.dumps(result.to_json(), ensure_ascii=False, separators=(",", ":"))
    if not text.isascii():
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text
