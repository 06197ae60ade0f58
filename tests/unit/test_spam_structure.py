"""Structural spam features (mailsac.spam.structure): each token on a message built to
show it, its absence on plain mail, and linear cost on hostile input."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from mailsac.mime import parse_message
from mailsac.spam import structure as S
from mailsac.spam.features import extract_tokens
from tests.timing import assert_linear

PLAIN = (b"From: Alice <alice@example.org>\r\nTo: bob@example.test\r\n"
         b"Subject: lunch\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n"
         b"Message-ID: <abcdefghijkl@example.org>\r\n\r\n"
         b"Hi Bob, see you at noon. Alice\r\n")
STRUCTURAL = ("html:", "obf:", "enc:", "cs:", "subj:encoded", "subj:cs:", "url:shortener",
              "url:deep", "url:text_mismatch", "fn:other_domain", "fn:caps")


def _tokens(raw: bytes) -> set[str]:
    return extract_tokens(parse_message(raw), raw)


def _html(body: str, headers: str = "") -> bytes:
    return (f"From: Shop <news@shop.example>\r\nTo: bob@example.test\r\nSubject: offer\r\n"
            f"{headers}Content-Type: text/html; charset=utf-8\r\n\r\n{body}\r\n").encode()


def test_plain_mail_has_no_structural_tokens() -> None:
    assert not [t for t in _tokens(PLAIN) if t.startswith(STRUCTURAL)]


def test_subject_filter_tags_are_stripped() -> None:
    assert S.strip_subject_tags("[SPAM] cheap pills") == "cheap pills"
    assert S.strip_subject_tags(" [spam] {Spam?} *****SPAM***** deal") == "deal"
    assert S.strip_subject_tags("[ann] spam talk") == "[ann] spam talk"  # not a verdict
    raw = PLAIN.replace(b"Subject: lunch", b"Subject: [SPAM] lunch")
    assert "s:spam" not in _tokens(raw) and "s:lunch" in _tokens(raw)


def test_hidden_and_white_text_forms_and_scripts() -> None:
    tokens = _tokens(_html('<p>Buy</p><div style="display: none">salt words</div>'
                           '<font color="#ffffff">more</font><form action="x"></form>'
                           "<script>1</script>"))
    assert {"html:hidden", "html:white_text", "html:form", "html:script"} <= tokens


def test_image_only_html() -> None:
    assert "html:img_only" in _tokens(_html('<img src="http://img.example/a.png">'))
    wordy = " ".join(["word"] * 200)
    assert "html:img_only" not in _tokens(_html(f'<img src="a.png"><p>{wordy}</p>'))


def test_anchor_text_naming_another_domain() -> None:
    html = '<a href="http://evil.example/login">www.paypal.com</a>'
    assert S.anchor_mismatch(html) == (1, 1)
    assert S.anchor_mismatch('<a href="https://www.paypal.com/x">paypal.com</a>') == (1, 0)
    assert "url:text_mismatch" in _tokens(_html(html))


def test_shorteners_and_deep_subdomains() -> None:
    out: set[str] = set()
    S.url_host_tokens(["https://bit.ly/abc", "http://a.b.c.d.example.com/x"], out)
    assert {"url:shortener", "url:deep"} <= out
    out = set()
    S.url_host_tokens(["https://www.example.com/a"], out)
    assert not out


@pytest.mark.parametrize(("text", "token"), [
    ("Buy V I A G R A now", "obf:spaced"),
    ("cheap v1agra and c1alis", "obf:leet"),
    ("free m\u043eney here", "obf:mixed_script"),  # Cyrillic "o" inside a Latin word
    ("fr\u200bee offer", "obf:zero_width"),
])
def test_obfuscation(text: str, token: str) -> None:
    out: set[str] = set()
    S.obfuscation_tokens(text, out)
    assert token in out
    clean: set[str] = set()
    S.obfuscation_tokens("Buy a cheap car in 2024 for 3 dollars, I think", clean)
    assert not clean


def test_encodings_and_charsets() -> None:
    raw = (b"From: a@example.org\r\nSubject: =?koi8-r?B?9MXT1A==?=\r\n"
           b"Content-Type: text/plain; charset=koi8-r\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\n9MXT1A==\r\n")
    assert {"subj:encoded", "subj:cs:cyr", "cs:cyr", "enc:b64_text"} <= _tokens(raw)
    assert S.raw_subject(raw) == "=?koi8-r?b?9mxt1a==?="


def test_display_name_naming_another_domain_or_shouting() -> None:
    raw = PLAIN.replace(b"Alice <alice@example.org>", b"PAYPAL.COM SECURITY <x@evil.example>")
    assert {"fn:other_domain", "fn:caps"} <= _tokens(raw)


@pytest.mark.parametrize("make", [
    lambda n: "<a " * n,
    lambda n: '<a href="http://x.example/">' + "a." * n + "</a>",
    lambda n: ("<a href=" + "h" * 40) * n,
    lambda n: "<" * n + ">" * n,
    lambda n: "&#" * n + "<img" * n,
], ids=["anchors", "dotted-text", "hrefs", "brackets", "entities"])
def test_html_tokens_are_linear(make: Callable[[int], str]) -> None:
    assert_linear(lambda html: S.html_tokens(html, "", set()), make, S.MAX_HTML // 64)


@pytest.mark.parametrize("make", [
    lambda n: "a " * n,
    lambda n: "v1agra " * n,
    lambda n: "\u200b" * n,
    lambda n: "a\u043e" * n,
], ids=["spaced", "leet", "zero-width", "mixed"])
def test_obfuscation_is_linear(make: Callable[[int], str]) -> None:
    assert_linear(lambda text: S.obfuscation_tokens(text, set()), make, S.MAX_OBF_TEXT // 64)


@pytest.mark.parametrize("make", [
    lambda n: b"Subject: " + b"=?" * n + b"\r\n\r\n",
    lambda n: b"X: " + b"a" * n + b"\r\n" * n,
], ids=["encoded-subject", "long-head"])
def test_raw_subject_is_linear(make: Callable[[int], bytes]) -> None:
    assert_linear(S.raw_subject, make, S.MAX_RAW_HEAD // 64)
