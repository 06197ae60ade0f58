"""Likely one-time codes in a text: digit groups and alphanumeric tokens near cue words.

A candidate is a token holding a digit (``482913``, ``A7K2QF``), or two such tokens joined
by one space or hyphen in a code-like pattern (``123-456``, ``1234 5678``, ``K7Q-2PX``).
It is kept when its shape and its surroundings say "code":

* shape: 4–8 digits, or 5–12 letters and digits; no decimal, date, time, IP or URL glue
  (a neighbouring ``. , : /`` with a digit behind it, ``#``, ``+``, ``$`` …);
* cue words (``code``, ``OTP``, ``Bestätigungscode``, ``验证码`` …, see
  :mod:`mailsac.extract.words`) shortly before or after it, and no nearer word that
  labels it as something else (order, invoice, tracking, phone, price, zip …);
* or: alone on its line in a message whose subject or opening speaks of a code.

Linear time: candidates come from one regular expression whose runs are possessive (no
backtracking), and each candidate looks at a bounded window around itself.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator
from dataclasses import dataclass

from mailsac.extract.words import CODE_CUES, UNIT_AFTER, lowered
from mailsac.mime.links import iter_text_urls

__all__ = ["MAX_CODES", "MAX_SCAN_CHARS", "Code", "find_codes"]

MAX_SCAN_CHARS = 50_000  # of each body (codes sit near the top of a mail)
MAX_CODES = 10
CONTEXT_CHARS = 60  # each side of a code
_BEFORE = 80  # how far back a cue word may stand
_AFTER = 50
_OPENING = 2_000  # "the message speaks of a code": its subject or this many first chars
_MAX_CANDIDATES = 1_000  # per text: a body made of numbers is not worth more

# A token with a digit, then more such tokens each after one space or hyphen. Possessive
# runs: a letters-only token stops the chain without backtracking into it. Matched only
# where a digit search (fast: a character-class scan in C) found a token to start.
_CANDIDATE = re.compile(
    r"[A-Za-z]*+[0-9][0-9A-Za-z]*+(?:[ -][A-Za-z]*+[0-9][0-9A-Za-z]*+)*+")
_DIGIT_AT = re.compile(r"[0-9]")
_TOKEN_REST = re.compile(r"[0-9A-Za-z]*+")
_MAX_TOKEN = 12
_GROUP_SPLIT = re.compile(r"[ -]")
_GLUE_BEFORE = frozenset("/\\=?&@#+$€£¥₹₽_%")
_GLUE_AFTER = frozenset("@_%€$£¥₹₽")
_NUMBER_PUNCT = frozenset(".,:/")
_WS = re.compile(r"\s+")
_YEAR = re.compile(r"(?:19|20)[0-9][0-9]")
_DIGIT = re.compile(r"[0-9]")
_SENTENCE_END = re.compile(r"[.!?;](?:\s|$)|[。！？\n]")
_WORD_AND_NUMBER = re.compile(r"[A-Za-z]{3,}[0-9]{1,3}")  # SAVE20, WELCOME10: promo codes
_SUFFIX_UNIT = re.compile(r"[0-9]+(?:st|nd|rd|th|px|em|pt|ms|kg|km|mb|gb|kb|am|pm|[a-z])")


@dataclass(frozen=True, slots=True)
class Code:
    """A code found in a text, with the text around it and how sure we are (0..1)."""

    value: str
    context: str
    confidence: float
    source: str
    position: int = 0

    def to_json(self) -> dict[str, object]:
        return {"value": self.value, "context": self.context,
                "confidence": self.confidence, "source": self.source}


def _context(text: str, start: int, end: int) -> str:
    window = text[max(0, start - CONTEXT_CHARS): end + CONTEXT_CHARS]
    return _WS.sub(" ", window).strip()


def _shape(value: str) -> tuple[bool, bool] | None:
    """(digits only, has lowercase) for a code-shaped value, else None."""
    groups = _GROUP_SPLIT.split(value)
    lengths = [len(g) for g in groups]
    digits = value.replace(" ", "").replace("-", "")
    only_digits = digits.isdigit()
    if len(groups) == 1:
        if only_digits:
            return (True, False) if 4 <= len(digits) <= 8 else None
        if (not 5 <= len(digits) <= 12 or _SUFFIX_UNIT.fullmatch(digits)
                or _WORD_AND_NUMBER.fullmatch(digits)):
            return None
        return False, any(c.islower() for c in digits)
    if len(groups) != 2 or lengths[0] != lengths[1]:
        return None
    if only_digits:
        return (True, False) if lengths[0] in (3, 4) else None
    if lengths[0] not in (3, 4, 5):
        return None
    return False, any(c.islower() for c in digits)


def _glued(text: str, start: int, end: int) -> bool:
    """Whether the candidate is part of a larger number, date, URL, address or amount."""
    if start > 0:
        prev = text[start - 1]
        if prev in _GLUE_BEFORE:
            return True
        if prev in _NUMBER_PUNCT and start > 1 and text[start - 2].isdigit():
            return True
        if prev == "-" and start > 1 and text[start - 2].isalnum():
            # glued to a word or number, except Google's "G-123456"
            return not (text[start - 2].isupper() and (start == 2
                                                      or not text[start - 3].isalnum()))
        if prev in " \xa0(" and text[max(0, start - 3): start - 1].rstrip().endswith(")"):
            return True  # "(030) 1234567"
    if end < len(text):
        nxt = text[end]
        if nxt in _GLUE_AFTER:
            return True
        if nxt in _NUMBER_PUNCT and end + 1 < len(text) and text[end + 1].isdigit():
            return True
        if nxt == "-" and end + 1 < len(text) and text[end + 1].isalnum():
            return True
    return False


def _alone_on_line(text: str, start: int, end: int) -> bool:
    line_start = text.rfind("\n", max(0, start - 200), start) + 1
    line_end = text.find("\n", end, end + 200)
    if line_end < 0:
        line_end = min(len(text), end + 200)
    rest = (text[line_start:start] + text[end:line_end]).strip(" \t\r\xa0:.*-—>|[]()")
    return not rest


def _is_word_char(ch: str) -> bool:
    return ch.isascii() and ch.isalnum()


def _spans(text: str) -> Iterator[tuple[int, int]]:
    """Spans of the candidates of ``text``, left to right, none overlapping."""
    pos, end = 0, len(text)
    while pos < end:
        digit = _DIGIT_AT.search(text, pos)
        if digit is None:
            return
        start = digit.start()
        floor = max(pos, start - _MAX_TOKEN)
        while start > floor and _is_word_char(text[start - 1]):
            start -= 1
        if start > 0 and _is_word_char(text[start - 1]):  # inside a long word: skip it
            rest = _TOKEN_REST.match(text, digit.start())
            pos = rest.end() if rest is not None else digit.start() + 1
            continue
        m = _CANDIDATE.match(text, start)
        if m is None:  # cannot happen (a digit follows the letters); be safe
            pos = digit.start() + 1
            continue
        yield m.start(), m.end()
        pos = m.end()


class _Scanner:
    """Scores the candidates of one text. Cue words are found once for the whole text
    (one linear pass); each candidate then looks up the nearest ones around it."""

    def __init__(self, text: str, source: str, subject_cue: bool) -> None:
        self.text = text
        self.source = source
        self._urls: list[tuple[int, int]] | None = None
        self._starts: list[int] = []
        cue_starts: list[int] = []
        cue_ends: list[int] = []
        neg_starts: list[int] = []
        neg_ends: list[int] = []
        for label, start, end in CODE_CUES.find(lowered(text)):
            if label[:3] == "cue":
                cue_starts.append(start)
                cue_ends.append(end)
            else:
                neg_starts.append(start)
                neg_ends.append(end)
        self._cue_starts, self._cue_ends = cue_starts, cue_ends
        self._neg_starts, self._neg_ends = neg_starts, neg_ends
        # "The message speaks of a code": its subject or its opening does.
        self.opening = subject_cue or bool(cue_starts and cue_starts[0] < _OPENING)
        self.has_cues = bool(cue_starts) or subject_cue

    def in_url(self, start: int) -> bool:
        if self._urls is None:
            self._urls = list(iter_text_urls(self.text)) if "://" in self.text else []
            self._starts = [s for s, _ in self._urls]
        index = bisect.bisect_right(self._starts, start) - 1
        return index >= 0 and start < self._urls[index][1]

    @staticmethod
    def _before(ends: list[int], start: int) -> int:
        """Distance from the nearest cue ending at or before ``start`` (-1: none near)."""
        index = bisect.bisect_right(ends, start) - 1
        if index < 0 or start - ends[index] > _BEFORE:
            return -1
        return start - ends[index]

    @staticmethod
    def _after(starts: list[int], end: int) -> int:
        index = bisect.bisect_left(starts, end)
        if index >= len(starts) or starts[index] - end > _AFTER:
            return -1
        return starts[index] - end

    def score(self, start: int, end: int, only_digits: bool, lower: bool) -> float:
        text = self.text
        value = text[start:end]
        after = text[end: end + 20]
        if UNIT_AFTER.match(after.lstrip().lower()):
            return 0.0
        cue_before = self._before(self._cue_ends, start)
        cue_after = self._after(self._cue_starts, end)
        neg_before = self._before(self._neg_ends, start)
        if neg_before >= 0 and _DIGIT.search(text, start - neg_before, start):
            neg_before = -1  # "order #55123 is 228842": that word labels another number
        neg_after = self._after(self._neg_starts, end)
        if 0 <= neg_after <= 3 and "\n" not in text[end:end + neg_after]:
            return 0.0
        alone = _alone_on_line(text, start, end)
        if not alone:  # a cue word counts only in the same sentence
            if cue_before >= 0 and _SENTENCE_END.search(text, start - cue_before, start):
                cue_before = -1
            if cue_after >= 0 and _SENTENCE_END.search(text, end, end + cue_after):
                cue_after = -1
        if neg_before >= 0 and (cue_before < 0 or neg_before < cue_before) and neg_before <= 40:
            return 0.0
        near = 0.0
        if cue_before >= 0:
            near = 0.9 if cue_before <= 20 else 0.8 if cue_before <= 40 else 0.65
        if 0 <= cue_after <= 20:
            near = max(near, 0.8)
        elif 0 <= cue_after:
            near = max(near, 0.6)
        adjacent = 0 <= cue_before <= 25 or 0 <= cue_after <= 12
        if lower and not adjacent:
            return 0.0  # "d35400", "abc123": not without a cue word right next to it
        if only_digits:
            digits = value.replace(" ", "").replace("-", "")
            if _YEAR.fullmatch(digits) and not adjacent:
                return 0.0
            if len(digits) < 6 and not (0 <= cue_before <= 40 or 0 <= cue_after <= 25):
                return 0.0  # zip codes, years, street numbers
        if near == 0.0:
            if not only_digits or not alone or not self.opening:
                return 0.0
            near = 0.6
        elif alone:
            near += 0.08
        if only_digits and len(value) == 6:
            near += 0.03
        return min(near, 0.99)

    def candidates(self) -> list[Code]:
        found: list[Code] = []
        if not self.has_cues:  # nothing can score without a cue word
            return found
        for n, (start, end) in enumerate(_spans(self.text)):
            if n >= _MAX_CANDIDATES:
                break
            value = self.text[start:end]
            shape = _shape(value)
            if shape is None or _glued(self.text, start, end) or self.in_url(start):
                continue
            confidence = self.score(start, end, *shape)
            if confidence > 0.0:
                found.append(Code(value, _context(self.text, start, end),
                                  round(confidence, 2), self.source, start))
        return found


def find_codes(subject: str, bodies: list[tuple[str, str]],
               scan_subject: bool = True) -> list[Code]:
    """Codes in ``subject`` (unless not ``scan_subject``: then it only tells whether the
    message speaks of a code) and the ``(source, text)`` bodies, most likely first (at
    most :data:`MAX_CODES`, one per value)."""
    best: dict[str, Code] = {}
    order: dict[str, int] = {}
    subject = subject[:1000]
    subject_cue = bool(subject) and any(
        label[:3] == "cue" for label, _, _ in CODE_CUES.find(lowered(subject)))
    texts = [("subject", subject if scan_subject else ""),
             *((s, t[:MAX_SCAN_CHARS]) for s, t in bodies)]
    for rank, (source, text) in enumerate(texts):
        if not text:
            continue
        for code in _Scanner(text, source, subject_cue).candidates():
            key = code.value.replace(" ", "").replace("-", "")
            seen = best.get(key)
            if seen is None or code.confidence > seen.confidence:
                best[key] = code
                order.setdefault(key, rank * MAX_SCAN_CHARS + code.position)
    ranked = sorted(best, key=lambda k: (-best[k].confidence, order[k]))
    return [best[k] for k in ranked[:MAX_CODES]]
