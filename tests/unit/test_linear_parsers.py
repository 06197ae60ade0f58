"""Every header extractor, parser and tokeniser that sees untrusted input: never raises, and
its cost grows linearly (cost at 8n well below the 64x of a quadratic; tests/timing.py).

Where a pattern was rewritten for linear time, hypothesis also checks that the new code
gives exactly what the old (quadratic) regular expression gave.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailsac import gate
from mailsac.gate import header_block, reply_to_address
from mailsac.mime.decode import decode_header_value, decode_rfc2047, unfold
from mailsac.mime.links import extract_links
from mailsac.mime.nesting import nesting_cut
from mailsac.mime.parse import (
    _META_CHARSET,
    MAX_DEPTH,
    _bound_params,
    headers_plain,
    parse_message,
)
from mailsac.policy import parse_recipient
from mailsac.smtp.server import _SIMPLE_PATH
from mailsac.spam import check_spam
from mailsac.spam import features as F
from mailsac.spam.features import extract_tokens, has_trailing_id, words_of
from mailsac.spam.headers import _domain_of, strip_leaky_headers
from mailsac.spam.online import _sent_at
from mailsac.throttle.keys import domain_of, normalize_domain, org_domain
from tests.timing import assert_linear

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# The patterns as they were before this change (quadratic on some inputs): references.
_OLD_REPLY_TO = re.compile(rb"^reply-to:[^\r\n]*?([^\s<@,;]+@[^\s>,;]+)", re.I | re.M)
_OLD_TRAILING_ID = re.compile(
    r"\s{3,}\S+\s*$|[\s-]\d{4,}\s*$|[\s(\[#][a-z]*\d[a-z\d]{4,}[)\]]?\s*$")
_OLD_META = re.compile(
    rb"<meta[^>]{0,300}?charset\s*=\s*[\"']?\s*([A-Za-z0-9_.:-]{1,40})", re.IGNORECASE)

HEAD = b"From: a@example.org\r\nTo: b@example.test\r\nSubject: s\r\n"


def _message(headers: bytes, body: bytes = b"body\r\n") -> bytes:
    return headers + b"\r\n" + body


# ---------------------------------------------------------------------------------------
# Reply-To on the SMTP DATA path (issue 14 finding 2)

_ADDRESSY = st.text(alphabet="ab@<>,; \t.\"()-", max_size=60).map(lambda s: s.encode())


@FUZZ
@given(value=_ADDRESSY, before=st.sampled_from([b"", b"X-A: 1\r\n", b"Subject: a@b\r\n"]),
       name=st.sampled_from([b"Reply-To:", b"reply-to:", b"REPLY-TO:"]))
def test_reply_to_matches_the_old_pattern(value: bytes, before: bytes, name: bytes) -> None:
    content = _message(before + name + value + b"\r\n")
    old = _OLD_REPLY_TO.search(content[: content.find(b"\r\n\r\n")])
    assert reply_to_address(content) == (old.group(1).decode() if old else None)


@FUZZ
@given(st.binary(max_size=400))
def test_reply_to_never_raises(data: bytes) -> None:
    result = reply_to_address(b"Reply-To: " + data)
    assert result is None or "@" in result
    assert result is None or len(result) <= gate.MAX_REPLY_TO_VALUE


def test_reply_to_reads_folded_lines_and_only_the_header_block() -> None:
    assert reply_to_address(b"Subject: x\r\nReply-To:\r\n  Bob <bob@x.example>\r\n\r\n") \
        == "bob@x.example"
    assert reply_to_address(b"Subject: x\n\nReply-To: body@x.example\n") is None
    assert reply_to_address(b"Reply-To: a@b.example") == "a@b.example"  # header block only
    assert header_block(b"A: b\r\n\r\nbody") == b"A: b\r\n"
    assert header_block(b"\r\nbody") == b""
    assert len(header_block(b"X: " + b"a" * 200_000)) == gate.MAX_HEADER_BLOCK


@pytest.mark.parametrize("make", [
    lambda n: _message(b"Reply-To:" + b"a" * n),  # the reported attack
    lambda n: _message(b"Reply-To:" + b"a " * n),
    lambda n: _message(b"Reply-To: " + b"@" * n),
    lambda n: _message(b"Reply-To: " + b"<" * n),
    lambda n: _message(b"Reply-To: " + b"a@" * n),
    lambda n: _message(b"Reply-To:a\r\n" * n),
    lambda n: _message(b"Reply-To:" + b"\r\n a" * n),
    lambda n: HEAD + b"X-A: b\r\n" * n,  # no blank line at all
], ids=["a", "a-space", "at", "lt", "a-at", "many-fields", "folded", "no-body"])
def test_reply_to_is_linear(make: Callable[[int], bytes]) -> None:
    assert_linear(reply_to_address, make, 4_000)


# ---------------------------------------------------------------------------------------
# Spam tokeniser (runs in the analysis workers and, for /api/spam-checks, in a thread)

@FUZZ
@given(st.text(alphabet="ab1_%$€£'’.&- x\u00e9", max_size=80))
def test_words_match_the_old_pattern(text: str) -> None:
    assert words_of(text) == set(F._WORD.findall(text))


@FUZZ
@given(st.text(alphabet="ab1Z \t\u00a0\u2003-([#)]\u0661x!", max_size=40))
def test_trailing_id_matches_the_old_pattern(subject: str) -> None:
    assert has_trailing_id(subject) == bool(_OLD_TRAILING_ID.search(subject))


@pytest.mark.parametrize("make", [
    lambda n: "$" * n,
    lambda n: "€" * n,
    lambda n: "a" + "'" * n,
    lambda n: " " * n + "a b",
    lambda n: "-1111" + " " * n + "x!",
    lambda n: "(a" * n + "1",
    lambda n: "ab12345 " * n,
], ids=["dollar", "euro", "quotes", "spaces", "digits-spaces", "paren", "ids"])
def test_subject_tokens_are_linear(make: Callable[[int], str]) -> None:
    assert_linear(lambda s: F.field_tokens(s, "", "", 0, set()), make, 1_000)


@pytest.mark.parametrize("make", [
    lambda n: "$" * n,
    lambda n: "@" * n,
    lambda n: "a@" * n,
    lambda n: "a@b" + ".b" * n,
    lambda n: "x" * n + "@",
], ids=["dollar", "at", "a-at", "dots", "long-local"])
def test_body_tokens_are_linear(make: Callable[[int], str]) -> None:
    # MAX_TEXT caps what is tokenised: stay below it so growth is visible.
    assert_linear(lambda s: F.body_tokens(s, set()), make, F.MAX_TEXT // 16)


@pytest.mark.parametrize("value", ["(" * 5000, "a:" * 5000, "<" * 5000, '"' * 5000, "a@b," * 5000])
def test_address_fields_never_raise(value: str) -> None:
    assert isinstance(_domain_of(value), str)
    result = check_spam(value, value, "subject", "text")
    assert 0.0 <= float(result["spamminess"]) <= 1.0


@pytest.mark.parametrize("make", [
    lambda n: _message(b"From: a@example.org\r\nSubject: " + b"$" * n + b"\r\n"),
    lambda n: _message(HEAD + b"Reply-To: " + b"(" * n + b"\r\n"),
    lambda n: _message(HEAD + b"Reply-To: " + b"a@b," * n + b"\r\n"),
    lambda n: _message(HEAD + b"X-Mailer: " + b"ab " * n + b"\r\n"),
    lambda n: _message(HEAD + b"Received: from a (b [1.2.3.4]) with smtp\r\n" * n),
    lambda n: _message(HEAD + b"Date: " + b"Mon, " * (8 * n) + b"\r\n"),
], ids=["subject", "reply-to-parens", "reply-to-list", "mailer", "received", "date"])
def test_extract_tokens_is_linear(make: Callable[[int], bytes]) -> None:
    assert_linear(lambda raw: extract_tokens(parse_message(raw)), make, 1_000)


# ---------------------------------------------------------------------------------------
# MIME parsing

@FUZZ
@given(st.binary(max_size=120))
def test_meta_charset_matches_the_old_pattern(data: bytes) -> None:
    html = b"<meta " + data.replace(b">", b" ")
    old, new = _OLD_META.search(html), _META_CHARSET.search(html)
    assert (old and old.group(1)) == (new and new.group(1))


def test_bound_params_keeps_ordinary_headers() -> None:
    value = 'text/plain; charset="utf-8"; format=flowed'
    assert _bound_params(value) == value
    assert _bound_params("a;" * 1000).count(";") < 100


def test_nesting_cut() -> None:
    def nested(levels: int) -> bytes:
        parts = [b"Content-Type: multipart/mixed; boundary=b0\r\n\r\n"]
        parts += [b"--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n" % (i - 1, i)
                  for i in range(1, levels)]
        return b"".join(parts)

    assert nesting_cut(nested(MAX_DEPTH), MAX_DEPTH) is None
    deep = nested(MAX_DEPTH + 5)
    cut = nesting_cut(deep, MAX_DEPTH)
    assert cut is not None and deep[cut:].startswith(b"--b%d\r\n" % (MAX_DEPTH - 1))
    shouted = deep.replace(b"boundary=", b"BoUnDaRy=")  # parameter names ignore case
    assert nesting_cut(shouted, MAX_DEPTH) == cut
    siblings = b"Content-Type: multipart/mixed; boundary=top\r\n\r\n" + b"".join(
        b"--top\r\nContent-Type: multipart/alternative; boundary=s%d\r\n\r\n"
        b"--s%d\r\n\r\nx\r\n--s%d--\r\n" % (i, i, i) for i in range(3 * MAX_DEPTH)) + b"--top--\r\n"
    assert nesting_cut(siblings, MAX_DEPTH) is None  # many multiparts, but shallow
    assert parse_message(siblings).defects == 0


def _deep(n: int) -> bytes:
    return HEAD + b"MIME-Version: 1.0\r\n" + b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i)
        for i in range(n)) + b"\r\n" + b"x\r\n" * (100 * n)


@pytest.mark.parametrize("make", [
    _deep,
    lambda n: _message(HEAD + b"".join(b"X-H%d: v\r\n" % i for i in range(n))),
    lambda n: _message(HEAD + b"X-Long: " + b"a" * (20 * n) + b"\r\n"),
    lambda n: _message(HEAD + b"X-Long: " + b"a\r\n " * n + b"\r\n"),
    lambda n: _message(b"To: " + b"<" * n + b"\r\n"),
    lambda n: _message(b"To: " + b"a@b," * n + b"\r\n"),
    lambda n: _message(b"Subject: " + b"=?utf-8?q?" * n + b"\r\n"),
    lambda n: _message(b"Subject: " + b"=?utf-8?q?a?= " * n + b"\r\n"),
    lambda n: _message(b'Content-Type: multipart/mixed; a="' + b";" * n + b"\r\n"),
    lambda n: _message(b"Content-Type: text/plain; " + b"a=b;" * n + b"\r\n"),
    lambda n: _message(b"Content-Type: application/x\r\nContent-Disposition: attachment; "
                       + b"".join(b"filename*%d*=a;" % i for i in range(n)) + b"\r\n"),
    lambda n: _message(b"Content-Type: text/html\r\n", b"<meta charset=" + b" " * n),
    lambda n: _message(HEAD + b'Content-Type: multipart/mixed; boundary="q"\r\n',
                       b"--q\r\nContent-Type: text/plain\r\n\r\nx\r\n" * (n // 10) + b"--q--\r\n"),
], ids=["deep-mime", "many-headers", "long-header", "folded", "lt", "list", "ew-open",
        "ew-words", "ct-quote", "ct-params", "rfc2231", "meta", "many-parts"])
def test_parse_message_is_linear(make: Callable[[int], bytes]) -> None:
    assert_linear(parse_message, make, 400)


@pytest.mark.parametrize("make", [
    _deep,  # lines x nesting depth in the stdlib parser (kept below its recursion limit)
    lambda n: _message(b'Content-Type: multipart/mixed; a="' + b";" * (40 * n) + b"\r\n"),
], ids=["deep-mime", "ct-quote"])
def test_parse_message_is_linear_where_the_stdlib_is_not(make: Callable[[int], bytes]) -> None:
    assert_linear(parse_message, make, 30)


@FUZZ
@given(headers=st.lists(st.tuples(
    st.sampled_from(["From", "To", "Reply-To", "Subject", "Content-Type", "Date", "Received",
                     "Content-Disposition", "Message-ID", "X-Mailer"]),
    st.text(alphabet="a@<>(),;:\"=?qQbB_ -.\\\u00e9\t", max_size=60)), max_size=8),
    body=st.binary(max_size=200))
def test_parse_and_tokenise_never_raise(headers: list[tuple[str, str]], body: bytes) -> None:
    raw = "".join(f"{k}: {v}\r\n" for k, v in headers).encode() + b"\r\n" + body
    tokens = extract_tokens(parse_message(raw))
    assert tokens  # always some shape tokens
    assert isinstance(reply_to_address(raw), str | None)
    assert headers_plain(raw).count("\n") <= raw.count(b"\n")


@pytest.mark.parametrize(("fn", "make"), [
    (decode_rfc2047, lambda n: "=?utf-8?q?" * n),
    (decode_rfc2047, lambda n: "=?" * n),
    (decode_rfc2047, lambda n: "".join(f"=?cs{i % 2}?q?a?=" for i in range(n))),
    (decode_header_value, lambda n: "a\r\n " * n),
    (unfold, lambda n: "\r\n\t" * n),
    (headers_plain, lambda n: b"a: b\n" * n),
    (lambda s: extract_links(s, s), lambda n: "http://" * n),
    (lambda s: extract_links(None, s), lambda n: 'href="' * n),
    (lambda s: extract_links(s, None), lambda n: "http://a/" + ".)" * n),
    (strip_leaky_headers, lambda n: [("X-Spam-" + "a" * n, "b" * n), ("Received", "(" * n)]),
    (strip_leaky_headers, lambda n: [("x-fooSPAM", "v")] * n),
    (_sent_at, lambda n: b"Date:" + b" " * n + b"\n" * n),
    (_sent_at, lambda n: b"date: a\n" * n),
], ids=["ew-open", "ew-marks", "ew-charsets", "fold", "unfold", "headers-plain",
        "links-http", "links-href", "links-trailing", "leaky-long", "leaky-many",
        "sent-at-space", "sent-at-many"])
def test_header_and_link_helpers_are_linear(fn: Callable[[object], object],
                                            make: Callable[[int], object]) -> None:
    assert_linear(fn, make, 8_000)


# ---------------------------------------------------------------------------------------
# Addresses and domains (SMTP envelope, throttle keys)

@pytest.mark.parametrize(("fn", "make"), [
    (_SIMPLE_PATH.match, lambda n: "<" + "a." * n + "@" + "b-" * n),
    (_SIMPLE_PATH.match, lambda n: "<a@" + "b." * n + "b"),
    (_SIMPLE_PATH.match, lambda n: " " * n + "<"),
    (domain_of, lambda n: "<" * n + "a@b>"),
    (org_domain, lambda n: "a@" + "b." * n + "example"),
    (normalize_domain, lambda n: "é." * n),
], ids=["path-local", "path-domain", "path-space", "domain-of", "org-domain", "idna"])
def test_address_helpers_are_linear(fn: Callable[[str], object],
                                    make: Callable[[int], str]) -> None:
    assert_linear(fn, make, 1_000)


@FUZZ
@given(st.text(max_size=300))
def test_parse_recipient_gives_a_result_or_a_reason(address: str) -> None:
    from mailsac.errors import InvalidAddress

    try:
        recipient = parse_recipient(address)
    except InvalidAddress as exc:
        assert str(exc)
    else:
        assert "@" in recipient.inbox and len(recipient.original) <= 254
