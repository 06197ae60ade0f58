"""What a link is for (confirm, verify, reset, unsubscribe, login, other) and which link
of a message is its action link.

The kind comes from the words of the anchor text first, then from the URL's path and
query (``/account/verify?token=…``), in the languages of :mod:`mailsac.extract.words`.
An unsubscribe cue anywhere wins: an unsubscribe link must never pass for the action.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from mailsac.extract.words import ACTION_KINDS, LINK_CUES, NEGATIVE_CUES, lowered

__all__ = ["action_score", "classify"]

_URL_WORDS = 400  # characters of path and query looked at
_TEXT_WORDS = 200
_STATIC = (".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp", ".css", ".js", ".ico")
_SECONDARY = ("?", "didn't", "did not", "not you", "wasn't you", "forgot", "help",
              "nicht angefordert", "pas demandé", "no solicitaste")
# Anchor texts that say nothing by themselves ("click here").
_GENERIC = re.compile(
    r"(?:click |tap )?(?:here|this link|link|hier|ici|aquí|aqui|qui|deze link|tutaj|здесь|"
    r"这里|此处|こちら|여기)")
_BASE = {"confirm": 1.0, "verify": 1.0, "reset": 0.9, "login": 0.8}


def _path(url: str) -> str:
    """Path and query of an absolute URL (no host: "login.example.com" says nothing)."""
    host = url.find("//")
    slash = url.find("/", host + 2 if host >= 0 else 0)
    return url[slash: slash + _URL_WORDS] if slash >= 0 else ""


def _strongest(kinds: set[str]) -> str | None:
    for kind in ACTION_KINDS:  # strongest first
        if kind in kinds:
            return kind
    return None


def classify(url: str, text: str, lead: str = "") -> tuple[str, bool]:
    """The link's kind, and whether its text (not only the URL) says so.

    ``lead`` is the text just before an anchor: it names a link whose own text does not
    ("To sign in, click <a>here</a>"), and "Not you? <a>Reset your password</a>" marks a
    way out, not the mail's action (the kind stays, the second value is False)."""
    text = text[:_TEXT_WORDS]
    lead = lead[-_TEXT_WORDS:]
    path = _path(url)
    if "%" in path:
        path = unquote(path)
    # One pass over "text \n lead \n path": which part a cue is in tells its weight.
    words = lowered(f"{text}\n{lead}\n{path}")
    lead_at = len(text) + 1
    path_at = lead_at + len(lead) + 1
    generic = bool(lead) and _GENERIC.fullmatch(words[:len(text)].strip(" .!:")) is not None
    in_text: set[str] = set()
    in_url: set[str] = set()
    for label, start, _ in LINK_CUES.find(words):
        if start < lead_at or (generic and start < path_at):
            in_text.add(label)
        elif start >= path_at:
            in_url.add(label)
    if "unsubscribe" in in_text or "unsubscribe" in in_url:
        return "unsubscribe", True
    named = _strongest(in_text)
    if named is not None:
        tail = words[max(lead_at, path_at - 31): path_at]
        return named, not any(word in tail for word in _SECONDARY)
    kind = _strongest(in_url)
    return (kind, False) if kind is not None else ("other", False)


def action_score(url: str, text: str, kind: str, by_text: bool, image_only: bool) -> float:
    """How much the link looks like the one thing the mail wants clicked (0: not at all).

    Only a link whose text names its action counts, or a confirm/verify URL
    (``/verify?token=…`` behind a "Continue" button); never a bare logo."""
    if kind not in _BASE:
        return 0.0
    if not by_text and (image_only or kind not in ("confirm", "verify")):
        return 0.0
    path = _path(url).lower()
    if path.split("?", 1)[0].endswith(_STATIC):
        return 0.0
    score = _BASE[kind] + (0.5 if by_text else 0.2)
    lower = lowered(text[:_TEXT_WORDS])
    if by_text and len(text) <= 40:
        score += 0.1  # a button, not a sentence
    if any(word in lower for word in _SECONDARY):
        score -= 0.6  # "Forgot your password?"
    if NEGATIVE_CUES.find(lower):
        score -= 0.4  # "View order confirmation"
    return max(score, 0.0)
