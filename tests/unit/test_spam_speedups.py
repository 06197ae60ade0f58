"""The tokeniser and scorer shortcuts give exactly what the straightforward code gives."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mailsac.mime import html_to_text, parse_message
from mailsac.spam import default_model
from mailsac.spam import features as F
from mailsac.spam.bayes import message_hashes
from mailsac.spam.domains import registrable_domain
from mailsac.spam.scoring import mean_logit, token_logits

DATA = Path(__file__).resolve().parent.parent / "data" / "spam"


def _emails_reference(text: str, recipients: frozenset[str]) -> tuple[str, set[str]]:
    """The original whole-text regex scan."""
    out: set[str] = set()
    for m in F._EMAIL.finditer(text):
        out.add("em:" + registrable_domain(m.group(1)))
        if m.group(0).lower() in recipients:
            out.add("body:rcpt")
    return F._EMAIL.sub(" ", text), out


def _words_reference(text: str, prefix: str) -> set[str]:
    out: set[str] = set()
    digits = re.compile(r"^[\d.,-]+$")
    for word in F._WORD.findall(text.lower()):
        n = len(word)
        if n > 20:
            out.add(f"{prefix}long:{n // 10}")
        elif digits.match(word):
            out.add(f"{prefix}num:{n}" if n > 2 else prefix + word)
        elif n > 1 or not word.isascii():
            out.add(prefix + word)
    return out


_TEXT = st.text(alphabet="ab.c-+=@ \n\t_xY9é@.com\x1c\xa0٣", max_size=120)
_WORDS = st.lists(st.sampled_from([
    "hello", "bob@example.com", "x.y+z@sub.mail.example.co.uk", "foo@bar", "a@b.c@d.e", "@@",
    "end.", "a" * 70 + "@x.com", "12,50", "3.5", "٣٤", "ALL-CAPS", "support@EXAMPLE.org",
]), max_size=30).map(" ".join)


@given(st.one_of(_TEXT, _WORDS))
@settings(max_examples=400)
def test_email_extraction_matches_the_whole_text_scan(text: str) -> None:
    recipients = frozenset({"bob@example.com", "a@b.com"})
    out: set[str] = set()
    assert (F._take_emails(text, out, recipients), out) == _emails_reference(text, recipients)


@given(st.one_of(_TEXT, _WORDS))
@settings(max_examples=400)
def test_word_tokens_match_the_per_word_loop(text: str) -> None:
    out: set[str] = set()
    F._words(text, "w:", out)
    assert out == _words_reference(text, "w:")


_CAPS = st.lists(st.sampled_from([
    "NASA", "Nasa", "ABC_", "ÀBC", "ABC1", "abc", "AB", "DON'T", "e-MAIL", "ok", "ÜBER",
    "FREE!!!", "x", "ÃÃÃ", "WIN\u0663", "ab\u0301c", "ABCdef",
]), max_size=30).map(lambda words: " ".join(words))


@given(st.one_of(_TEXT, _WORDS, _CAPS))
@settings(max_examples=400)
def test_letter_word_counts_match_the_two_regular_expressions(text: str) -> None:
    any_word = re.compile(r"\b[A-Za-z]{3,}\b")
    caps_word = re.compile(r"\b[A-Z]{3,}\b")
    assert F._letter_words(text) == (len(any_word.findall(text)), len(caps_word.findall(text)))


def test_html_to_text_with_a_limit_is_a_prefix_of_the_full_text() -> None:
    html = "<html><body>" + "".join(
        f"<p>Paragraph {i} with <b>bold</b> &amp; <a href='x'>link</a></p>" for i in range(500)
    ) + "</body></html>"
    full = html_to_text(html)
    limited = html_to_text(html, limit=1000)
    assert 1000 <= len(limited) < len(full)
    assert full.startswith(limited)


def test_base_only_scores_equal_the_general_path() -> None:
    model = default_model().copy()  # no learned layers: the table lookup is used
    params = model.params

    def general(hashes: np.ndarray) -> float:
        spam, ham = model.base.lookup(hashes)
        logits = token_logits(spam, ham, model.base.spam_docs, model.base.ham_docs, params)
        return params.a * mean_logit(logits, params) + params.b

    samples = [message_hashes(path.read_bytes()) for path in sorted(DATA.rglob("*.eml"))]
    samples.append(np.array([], dtype=np.uint32))
    samples.append(np.array([0, 1, 2**32 - 1], dtype=np.uint32))  # unknown tokens
    for hashes in samples:
        assert model._logit(hashes, (model._trusted,)) == general(hashes)


def test_a_learned_layer_still_counts() -> None:
    model = default_model().copy()
    raw = (DATA / "ham_notes.eml").read_bytes()
    before = model.score(raw)
    for _ in range(30):
        model.learn(parse_message(raw), True)
    assert model.score(raw) > before
