"""Unit tests for mailsac.mime (parsing, bodies, links, headers)."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailsac.mime import (
    Address,
    Attachment,
    ParsedMessage,
    dirty_html,
    extract_links,
    find_attachment,
    headers_json,
    headers_ordered,
    headers_plain,
    html_to_text,
    parse_message,
    sanitized_html,
    text_body,
)
from mailsac.mime.decode import decode_bytes, decode_rfc2047
from mailsac.mime.links import MAX_LINKS
from mailsac.mime.parse import MAX_ADDRESSES, MAX_DEPTH, MAX_HEADER_FIELDS

DATA = Path(__file__).resolve().parent.parent / "data" / "messages"
FIXTURES = (
    "plain.eml",
    "html_links.eml",
    "attachments.eml",
    "rfc2047_subject.eml",
    "latin1.eml",
    "broken_mime.eml",
)
PNG_MD5 = "8feea4e2ac428d1b5bda8b7ec9955825"
PDF_MD5 = "639f3ebf376e39ee0c74e015bdf4c992"


def raw(name: str) -> bytes:
    return (DATA / name).read_bytes()


def parsed(name: str) -> ParsedMessage:
    return parse_message(raw(name))


def crlf(text: str) -> bytes:
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")


def build(headers: str, body: bytes = b"") -> bytes:
    return crlf(headers.strip("\n") + "\n\n") + body


def check_invariants(msg: ParsedMessage) -> None:
    assert isinstance(msg, ParsedMessage)
    assert msg.defects >= 0
    assert msg.approx_size() > 0
    for name, value in msg.headers:
        assert isinstance(name, str) and isinstance(value, str)
        assert "\r" not in value and "\n" not in value
    for addr in (*msg.from_, *msg.to, *msg.cc, *msg.bcc):
        assert addr.name or addr.address
    for att in msg.attachments:
        assert att.length == len(att.data)
        assert att.checksum == hashlib.md5(att.data).hexdigest()
    assert len(set(msg.links)) == len(msg.links)
    assert all(re.match(r"(?i)https?://", link) for link in msg.links)


# ---------------------------------------------------------------------------------------
# Fixtures: one table row per (fixture, accessor)


def test_fixtures_use_crlf() -> None:
    for name in FIXTURES:
        data = raw(name)
        assert b"\r\n" in data
        assert data.count(b"\n") == data.count(b"\r\n"), name


@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_invariants(name: str) -> None:
    check_invariants(parsed(name))


@pytest.mark.parametrize(
    ("name", "subject"),
    [
        ("plain.eml", "Your weekly status report"),
        ("html_links.eml", "Black Friday deals inside"),
        ("attachments.eml", "Invoice INV-1001"),
        ("rfc2047_subject.eml", "Grüße aus Köln ✓ 🎉"),
        ("latin1.eml", "Résumé für Sie"),
        ("broken_mime.eml", "invalidhellook =?utf-8?Q?tail"),
    ],
)
def test_subject(name: str, subject: str) -> None:
    assert parsed(name).subject == subject


@pytest.mark.parametrize(
    ("name", "message_id"),
    [
        ("plain.eml", "20251124091500.4F2A1@status.example.com"),
        ("html_links.eml", "nl-2025-11-25@shop.example"),
        ("rfc2047_subject.eml", "grusse-42@example.es"),
        ("broken_mime.eml", "no-angle-brackets@example"),
    ],
)
def test_message_id(name: str, message_id: str) -> None:
    assert parsed(name).message_id == message_id


@pytest.mark.parametrize(
    ("name", "field", "expected"),
    [
        ("plain.eml", "from_", [("Status Bot", "alerts@status.example.com")]),
        ("plain.eml", "to", [("", "inbox@mailsac.test")]),
        ("plain.eml", "cc", []),
        (
            "html_links.eml",
            "to",
            [("Jane Doe", "jane@mailsac.test"), ("", "john@mailsac.test")],
        ),
        ("html_links.eml", "cc", [("", "team@shop.example")]),
        ("rfc2047_subject.eml", "from_", [("José García", "jose@example.es")]),
        (
            "rfc2047_subject.eml",
            "to",
            [("Zoë Müller", "zoe@mailsac.test"), ("Doe, John", "john@mailsac.test")],
        ),
        ("latin1.eml", "from_", [("André", "andre@example.fr")]),
        ("broken_mime.eml", "from_", [("broken sender", "broken@example")]),
        ("broken_mime.eml", "bcc", []),
    ],
)
def test_addresses(name: str, field: str, expected: list[tuple[str, str]]) -> None:
    addrs = getattr(parsed(name), field)
    assert [(a.name, a.address) for a in addrs] == expected


@pytest.mark.parametrize(
    ("name", "needle"),
    [
        ("plain.eml", "All 12 services are operational this week.\n"),
        ("html_links.eml", "See all deals: https://shop.example/deals?src=email&id=7\n"),
        ("attachments.eml", "Please find invoice INV-1001 attached."),
        ("rfc2047_subject.eml", "Schöne Grüße aus Köln! 🎉"),
        ("latin1.eml", "voici mon résumé pour le café.\nGrüße aus München, über alles."),
        ("latin1.eml", "une très longue ligne qui continue ici."),  # QP soft line break
        ("broken_mime.eml", "Broken charset café and =ZZ bad escape."),
    ],
)
def test_text_part(name: str, needle: str) -> None:
    text = parsed(name).text
    assert text is not None and needle in text
    assert "\r\n" not in text


@pytest.mark.parametrize(
    ("name", "html_needle"),
    [
        ("plain.eml", None),
        ("latin1.eml", None),
        ("html_links.eml", '<a href="https://shop.example/deals?src=email&amp;id=7">'),
        ("attachments.eml", '<img src="cid:logo.png@vendor.example" alt="Logo">'),
        ("broken_mime.eml", '<b>truncated <a href="https://broken.example/path">'),
    ],
)
def test_html_part(name: str, html_needle: str | None) -> None:
    html = parsed(name).html
    if html_needle is None:
        assert html is None
    else:
        assert html is not None and html_needle in html


@pytest.mark.parametrize(
    ("name", "links"),
    [
        (
            "plain.eml",
            [
                "https://status.example.com/reports/2025-47",
                "https://status.example.com/unsubscribe?u=42",
            ],
        ),
        (
            "html_links.eml",
            [
                "https://shop.example/deals?src=email&id=7",
                "https://shop.example/account",
                "https://tracker.example/js",
                "https://tracker.example/open.gif?u=1",
                "https://shop.example/faq#shipping",
            ],
        ),
        ("attachments.eml", ["https://vendor.example/pixel.gif"]),
        ("latin1.eml", []),
        ("broken_mime.eml", ["https://broken.example/path"]),
    ],
)
def test_links(name: str, links: list[str]) -> None:
    assert parsed(name).links == links


@pytest.mark.parametrize(
    ("name", "clean"),
    [
        ("plain.eml", True),
        ("html_links.eml", True),
        ("attachments.eml", True),
        ("rfc2047_subject.eml", True),
        ("latin1.eml", True),
        ("broken_mime.eml", False),
    ],
)
def test_defects(name: str, clean: bool) -> None:
    assert (parsed(name).defects == 0) is clean


def test_attachments_fixture() -> None:
    msg = parsed("attachments.eml")
    assert [a.to_json() for a in msg.attachments] == [
        {
            "checksum": PNG_MD5,
            "contentType": "image/png",
            "fileName": "logo.png",
            "contentDisposition": "inline",
            "contentId": "logo.png@vendor.example",
            "length": 70,
            "transferEncoding": "base64",
        },
        {
            "checksum": PDF_MD5,
            "contentType": "application/pdf",
            "fileName": "INV-1001.pdf",
            "contentDisposition": "attachment",
            "contentId": None,
            "length": 327,
            "transferEncoding": "base64",
        },
    ]
    png, pdf = msg.attachments
    assert png.data.startswith(b"\x89PNG\r\n\x1a\n")
    assert pdf.data.startswith(b"%PDF-1.4") and bytes(range(256)) in pdf.data


def test_broken_fixture_degrades() -> None:
    msg = parsed("broken_mime.eml")
    assert msg.defects >= 3  # unknown charset, bad base64, missing close boundary
    assert [(a.file_name, a.content_type) for a in msg.attachments] == [
        ("data.bin", "application/octet-stream")
    ]
    assert msg.attachments[0].data.startswith(b"Hello World")
    assert [(a.name, a.address) for a in msg.to] == [("", "unterminated")]


@pytest.mark.parametrize(
    ("ident", "expected_md5"),
    [
        (PNG_MD5, PNG_MD5),
        (PDF_MD5.upper(), PDF_MD5),
        ("logo.png@vendor.example", PNG_MD5),
        ("<logo.png@vendor.example>", PNG_MD5),
        ("INV-1001.pdf", PDF_MD5),
        ("logo.png", PNG_MD5),
        ("missing.txt", None),
        ("", None),
    ],
)
def test_find_attachment(ident: str, expected_md5: str | None) -> None:
    att = find_attachment(parsed("attachments.eml"), ident)
    assert (att.checksum if att else None) == expected_md5


# ---------------------------------------------------------------------------------------
# Header accessors


def test_headers_decoded_in_order() -> None:
    msg = parsed("rfc2047_subject.eml")
    assert [name for name, _ in msg.headers][:5] == ["From", "To", "Subject", "X-Split", "X-Mixed"]
    values = dict(msg.headers)
    assert values["X-Split"] == "€ 100"  # a multi-byte char split across two encoded-words
    assert values["X-Mixed"] == "café and мир"  # latin-1 and koi8-r words in one header


def test_headers_unfolded() -> None:
    received = dict(parsed("plain.eml").headers)["Received"]
    assert received == (
        "from mail.example.com (mail.example.com [203.0.113.5]) by mx.mailsac.test "
        "with ESMTP id 4F2A1 for <inbox@mailsac.test>; Mon, 24 Nov 2025 09:15:02 +0000"
    )


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([], {}),
        ([("Subject", "hi")], {"subject": ["hi"]}),
        (
            [("Received", "a"), ("X-Tag", "t"), ("received", "b")],
            {"received": ["a", "b"], "x-tag": ["t"]},
        ),
    ],
)
def test_headers_json(headers: list[tuple[str, str]], expected: dict[str, list[str]]) -> None:
    assert headers_json(headers) == expected


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([], []),
        (
            [("Received", "a"), ("X-Tag", "t"), ("Received", "b")],
            [
                {"name": "Received", "value": "a"},
                {"name": "X-Tag", "value": "t"},
                {"name": "Received", "value": "b"},
            ],
        ),
    ],
)
def test_headers_ordered(headers: list[tuple[str, str]], expected: list[dict[str, str]]) -> None:
    assert headers_ordered(headers) == expected


def test_headers_json_of_fixture() -> None:
    hj = headers_json(parsed("plain.eml").headers)
    assert hj["subject"] == ["Your weekly status report"]
    assert hj["x-mailer"] == ["StatusBot 2.1"]
    assert len(hj["received"]) == 1


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"Subject: a\r\nX: b\r\n\r\nbody\r\n\r\nmore", "Subject: a\r\nX: b\r\n"),
        (b"Subject: a\nX: b\n\nbody", "Subject: a\nX: b\n"),
        (b"Subject: a\r\n folded\r\n\r\nbody", "Subject: a\r\n folded\r\n"),
        (b"Subject: only headers", "Subject: only headers"),
        (b"\r\nbody without headers", ""),
        (b"", ""),
        ("Subject: Grüße\r\n\r\nx".encode(), "Subject: Grüße\r\n"),
        (b"Subject: caf\xe9\r\n\r\nx", "Subject: caf\xe9\r\n"),  # not UTF-8 -> latin-1
    ],
)
def test_headers_plain(data: bytes, expected: str) -> None:
    assert headers_plain(data) == expected


def test_headers_plain_of_fixture() -> None:
    plain = headers_plain(raw("plain.eml"))
    assert plain.startswith("Return-Path: <alerts@status.example.com>\r\nReceived:")
    assert "\r\n\tby mx.mailsac.test with ESMTP id 4F2A1\r\n" in plain  # fold kept
    assert plain.endswith("X-Mailer: StatusBot 2.1\r\n")
    assert "All 12 services" not in plain


# ---------------------------------------------------------------------------------------
# RFC 2047 and charsets


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain ascii", "plain ascii"),
        ("=?utf-8?B?SGVsbG8=?=", "Hello"),
        ("=?UTF-8?Q?Caf=C3=A9_au_lait?=", "Café au lait"),
        ("=?utf-8?q?a?= =?utf-8?q?b?=", "ab"),  # whitespace between words is dropped
        ("=?utf-8?q?a?= x =?utf-8?q?b?=", "a x b"),
        ("pre =?utf-8?q?mid?= post", "pre mid post"),
        ("=?iso-8859-1?q?caf=E9?=", "café"),
        ("=?windows-1252?Q?=93quoted=94_=80?=", "“quoted” €"),
        ("=?koi8-r?B?7cnS?=", "Мир"),
        ("=?utf-8*en?Q?lang?=", "lang"),  # RFC 2231 language suffix
        ("=?utf-8?B?SGVsbG8?=", "Hello"),  # missing padding
        ("=?utf-8?B?SGV!!sbG8=?=", "Hello"),  # junk inside base64
        ("=?x-unknown?Q?hello?=", "hello"),  # unknown charset -> utf-8 fallback
        ("=?x-unknown?Q?caf=E9?=", "café"),  # ... then windows-1252
        ("=?utf-8?Q?bad=FF?=", "bad\ufffd"),
        ("=?utf-8?Q?a=0D=0Ab?=", "a  b"),  # no CR/LF can be smuggled into a header
        ("=?utf-8?Q?unterminated", "=?utf-8?Q?unterminated"),
        ("=?utf-8?X?unknown-encoding?=", "=?utf-8?X?unknown-encoding?="),
        ("=??Q?empty-charset?=", "=??Q?empty-charset?="),
        ("=?base64?Q?not-a-text-codec?=", "not-a-text-codec"),
        ("=?unicode_escape?Q?\\x41?=", "\\x41"),  # dangerous codecs are never applied
    ],
)
def test_decode_rfc2047(value: str, expected: str) -> None:
    assert decode_rfc2047(value) == expected


@pytest.mark.parametrize(
    ("data", "charset", "expected", "problem"),
    [
        (b"caf\xe9 \xfcber", "iso-8859-1", "café über", False),
        (b"\x93quoted\x94", "iso-8859-1", "“quoted”", False),  # mislabelled cp1252
        (b"\x81", "latin1", "\x81", False),  # undefined in cp1252 -> real latin-1
        (b"\x93smart\x94 \x80 \x85", "windows-1252", "“smart” € …", False),
        ("Привет мир".encode("koi8-r"), "koi8-r", "Привет мир", False),
        ("Привет".encode("cp1251"), "windows-1251", "Привет", False),
        ("日本語".encode("shift_jis"), "shift_jis", "日本語", False),
        ("日本語".encode("iso-2022-jp"), "ISO-2022-JP", "日本語", False),
        ("中文".encode("gb18030"), "gb2312", "中文", False),
        ("한국어".encode("cp949"), "ks_c_5601-1987", "한국어", False),
        ("héllo".encode(), "utf-8", "héllo", False),
        ("héllo".encode(), '"UTF-8"', "héllo", False),
        ("héllo".encode(), None, "héllo", False),
        ("héllo".encode(), "us-ascii", "héllo", False),  # mislabelled ascii -> utf-8
        (b"caf\xe9", "us-ascii", "café", False),  # ... or windows-1252
        (b"caf\xe9", "x-unknown", "café", True),
        ("héllo".encode(), "x-unknown", "héllo", True),
        (b"bad \xff\xfe bytes", "utf-8", "bad \ufffd\ufffd bytes", True),
        (b"\x81\x8d", "windows-1252", "\ufffd\ufffd", True),  # undefined in cp1252
        (b"\x81", None, "\x81", True),  # last resort latin-1
        (b"abc", "base64", "abc", True),  # not a text encoding
        (b"abc", "bad\x00name", "abc", True),
    ],
)
def test_decode_bytes(data: bytes, charset: str | None, expected: str, problem: bool) -> None:
    assert decode_bytes(data, charset) == (expected, problem)


@pytest.mark.parametrize(
    ("charset", "cte", "body", "expected"),
    [
        ("iso-8859-1", "quoted-printable", b"caf=E9 =FCber=\r\nall", "café überall"),
        ("windows-1252", "8bit", b"\x93hi\x94 \x80", "“hi” €"),
        ("koi8-r", "base64", base64.b64encode("Привет мир".encode("koi8-r")), "Привет мир"),
        ("utf-8", "base64", b"SGVsbG8g\r\nV29ybGQ=\r\n", "Hello World"),
        ("utf-8", "BASE64 ", b"SGVsbG8=", "Hello"),  # case / whitespace in CTE
        ("utf-8", "7bit", b"line1\r\nline2\r\n", "line1\nline2\n"),
        ("utf-8", "x-uuencode", b"begin 644 a.txt\r\n%2&5L;&\\`\r\n`\r\nend\r\n", "Hello"),
        ("x-unknown", "quoted-printable", b"caf=C3=A9", "café"),
    ],
)
def test_body_decoding(charset: str, cte: str, body: bytes, expected: str) -> None:
    msg = parse_message(
        build(
            f"""
From: a@example.com
Content-Type: text/plain; charset="{charset}"
Content-Transfer-Encoding: {cte}
""",
            body,
        )
    )
    assert msg.text == expected


def test_8bit_headers_and_filename() -> None:
    data = build(
        """
From: Zoë <zoe@example.com>
Subject: Grüße
Content-Type: text/plain; name="résumé.txt"
Content-Disposition: attachment; filename="résumé.txt"
""",
        b"hi",
    )
    msg = parse_message(data)
    assert msg.subject == "Grüße"
    assert msg.from_ == [Address("Zoë", "zoe@example.com")]
    assert [a.file_name for a in msg.attachments] == ["résumé.txt"]
    assert msg.text is None


@pytest.mark.parametrize(
    ("disposition", "expected_name"),
    [
        ("attachment; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf", "résumé.pdf"),
        ('attachment; filename="=?UTF-8?B?csOpc3Vtw6kucGRm?="', "résumé.pdf"),
        ("attachment; filename*0=\"part\"; filename*1=\"ial.pdf\"", "partial.pdf"),
        ("attachment", None),
    ],
)
def test_attachment_filenames(disposition: str, expected_name: str | None) -> None:
    data = build(
        f"""
Content-Type: application/pdf
Content-Disposition: {disposition}
Content-Transfer-Encoding: base64
""",
        b"JVBERi0=",
    )
    (att,) = parse_message(data).attachments
    assert att.file_name == expected_name
    assert att.data == b"%PDF-"
    assert att.content_disposition == "attachment"


# ---------------------------------------------------------------------------------------
# MIME structure


def test_nested_structure_is_walked() -> None:
    data = build(
        """
Content-Type: multipart/related; boundary="R"
""",
        crlf(
            """--R
Content-Type: multipart/mixed; boundary="M"

--M
Content-Type: multipart/alternative; boundary="A"

--A
Content-Type: text/plain; charset=utf-8

deep text
--A
Content-Type: text/html; charset=utf-8

<p>deep html</p>
--A--
--M
Content-Type: text/plain

second text part is ignored
--M
Content-Type: text/calendar; method=REQUEST

BEGIN:VCALENDAR
--M--
--R
Content-Type: image/gif
Content-ID: <img1>

GIF89a
--R--
"""
        ),
    )
    msg = parse_message(data)
    assert msg.text == "deep text"
    assert msg.html == "<p>deep html</p>"
    assert [(a.content_type, a.content_id, a.content_disposition) for a in msg.attachments] == [
        ("text/calendar", None, None),
        ("image/gif", "img1", None),
    ]
    assert msg.defects == 0


def test_html_only_message_and_meta_charset() -> None:
    body = '<html><head><meta charset="windows-1252"></head><body>caf\xe9 \x80</body></html>'
    msg = parse_message(build("Content-Type: text/html", body.encode("latin-1")))
    assert msg.text is None
    assert msg.html is not None and "café €" in msg.html
    assert text_body(msg) == "café €"


def test_message_rfc822_is_an_attachment() -> None:
    data = build(
        'Content-Type: multipart/mixed; boundary="X"',
        crlf(
            """--X
Content-Type: text/plain

outer
--X
Content-Type: message/rfc822
Content-Disposition: attachment; filename="fwd.eml"

From: inner@example.com
Subject: inner

inner body
--X--
"""
        ),
    )
    msg = parse_message(data)
    assert msg.text == "outer"
    (att,) = msg.attachments
    assert (att.content_type, att.file_name) == ("message/rfc822", "fwd.eml")
    assert b"Subject: inner" in att.data and b"inner body" in att.data


@pytest.mark.parametrize("levels", [5, MAX_DEPTH + 10, 1500])
def test_deep_nesting(levels: int) -> None:
    parts = ["Content-Type: multipart/mixed; boundary=b0\r\n\r\n"]
    for i in range(1, levels):
        parts.append(f"--b{i - 1}\r\nContent-Type: multipart/mixed; boundary=b{i}\r\n\r\n")
    parts.append(f"--b{levels - 1}\r\nContent-Type: text/plain\r\n\r\ndeepest\r\n")
    msg = parse_message(("Subject: nested\r\n" + "".join(parts)).encode())
    check_invariants(msg)
    assert msg.subject == "nested"
    if levels <= MAX_DEPTH:
        assert msg.text is not None and msg.text.strip() == "deepest"
    else:
        assert msg.defects > 0
        assert msg.text is None or "deepest" in msg.text


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (b"Subject: a\x00b", "ab"),
        (b"Subject: =?utf-8?Q?a=00b?=", "a b"),
        (b"Subject: =?utf-8?Q?a=0D=0Ab?=", "a  b"),
        (b"Subject: a\r\n\tb", "a b"),
    ],
)
def test_no_control_line_breaks_in_headers(header: bytes, expected: str) -> None:
    assert parse_message(header + b"\r\n\r\nbody").subject == expected


def test_header_flood() -> None:
    data = b"".join(b"X-Flood-%d: =?utf-8?q?v=C3=A9?= %d\r\n" % (i, i) for i in range(20000))
    msg = parse_message(b"Subject: flood\r\n" + data + b"\r\nbody")
    # The parse keeps the first MAX_HEADER_FIELDS fields (the raw source keeps them all):
    # headers are served by the API and viewer and sent with every webhook payload.
    assert len(msg.headers) == MAX_HEADER_FIELDS
    assert msg.headers[-1] == ("X-Flood-998", "vé 998")
    assert msg.text == "body" and msg.defects >= 1


def test_links_and_address_lists_are_capped() -> None:
    urls = "\r\n".join(f"https://example.test/{i}" for i in range(5000))
    many = ", ".join(f"user{i}@example.test" for i in range(3000))
    msg = parse_message(f"To: {many}\r\nSubject: x\r\n\r\n{urls}\r\n".encode())
    assert len(msg.links) == MAX_LINKS and msg.links[0] == "https://example.test/0"
    assert len(msg.to) == MAX_ADDRESSES and msg.to[0].address == "user0@example.test"
    long_link = "https://example.test/" + "a" * 3000
    assert parse_message(f"Subject: x\r\n\r\n{long_link} https://ok.test/\r\n".encode()
                         ).links == ["https://ok.test/"]


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("To", "a@x.com, b@y.com", ["a@x.com", "b@y.com"]),
        ("To", "undisclosed-recipients:;", []),
        ("To", "Team: a@x.com, b@y.com;", ["a@x.com", "b@y.com"]),
        ("Cc", "<>, ,,", []),
        ("Bcc", '"Quoted, Name" <q@x.com>', ["q@x.com"]),
        ("To", "(" * 5000 + " a@x.com", ["a@x.com"]),  # RecursionError -> regex fallback
        ("To", "a:" * 5000 + " a@x.com", ["a@x.com"]),  # nested groups: regex fallback
    ],
)
def test_address_edge_cases(field: str, value: str, expected: list[str]) -> None:
    msg = parse_message(build(f"{field}: {value}"))
    addrs = {"To": msg.to, "Cc": msg.cc, "Bcc": msg.bcc}[field]
    assert [a.address for a in addrs if a.address] == expected


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\r\n",
        b"\x00" * 100,
        b"Subject: a\x00b\r\n\r\nbo\x00dy",
        b"no headers at all, just text",
        b"Content-Type: multipart/mixed\r\n\r\n--x\r\n",  # no boundary parameter
        b"Content-Type: multipart/mixed; boundary=\"\"\r\n\r\n--\r\n",
        b'Content-Type: multipart/alternative; boundary="B"\r\n\r\n--B\r\nContent-Type: te',
        b"Content-Type: text/plain; charset=\"\xff\xfe\"\r\n\r\n\xff\xfe",
        b"Content-Type: \r\nContent-Transfer-Encoding: base64\r\n\r\n====",
        b"Content-Type: text/plain; charset*=bogus''%FF%FE\r\n\r\nx",
        b"Content-Type: text/plain; name*=utf-8''%FF\r\nContent-ID: <<>>\r\n\r\nx",
        b"Subject: " + b"=?utf-8?B?" * 50000 + b"\r\n\r\n",
        b"Subject: " + b"=?utf-8?Q?=E2=82?= " * 20000 + b"\r\n\r\n",
        b"From " + b"x" * 1000 + b"\r\nSubject: mbox\r\n\r\n",
        b"Content-Type: multipart/mixed; boundary=X\r\n\r\n"
        + b"--X\r\nContent-Type: image/png\r\n\r\nxx\r\n" * 3000
        + b"--X--\r\n",
    ],
)
def test_never_raises_on_garbage(data: bytes) -> None:
    msg = parse_message(data)
    check_invariants(msg)
    assert isinstance(text_body(msg), str)
    assert isinstance(sanitized_html(msg), str)


def test_part_cap_is_a_defect() -> None:
    data = (
        b"Content-Type: multipart/mixed; boundary=X\r\n\r\n"
        + b"--X\r\nContent-Type: image/png\r\n\r\nxx\r\n" * 3000
        + b"--X--\r\n"
    )
    msg = parse_message(data)
    assert 0 < len(msg.attachments) < 3000
    assert msg.defects >= 1


def test_approx_size_grows_with_content() -> None:
    small = parse_message(build("Subject: s", b"x"))
    big = parse_message(
        build(
            """
Content-Type: application/octet-stream
Content-Disposition: attachment; filename=big.bin
Content-Transfer-Encoding: base64
""",
            base64.encodebytes(b"\x01" * 100_000),
        )
    )
    assert big.approx_size() >= 100_000 > small.approx_size()


def test_to_json_shapes() -> None:
    assert Address("N", "a@b").to_json() == {"name": "N", "address": "a@b"}
    att = Attachment("c", "text/plain", None, None, None, 0, None, b"")
    assert set(att.to_json()) == {
        "checksum",
        "contentType",
        "fileName",
        "contentDisposition",
        "contentId",
        "length",
        "transferEncoding",
    }
    assert "data" not in att.to_json()


# ---------------------------------------------------------------------------------------
# Link extraction


@pytest.mark.parametrize(
    ("text", "html", "expected"),
    [
        (None, None, []),
        ("", "", []),
        ("see https://a.example/x.", None, ["https://a.example/x"]),
        ("(https://a.example/x)", None, ["https://a.example/x"]),
        ("https://en.wikipedia.org/wiki/Foo_(bar)", None, ["https://en.wikipedia.org/wiki/Foo_(bar)"]),
        ("https://en.wikipedia.org/wiki/Foo_(bar)).", None, ["https://en.wikipedia.org/wiki/Foo_(bar)"]),
        ("<https://a.example/x>,", None, ["https://a.example/x"]),
        ('"https://a.example/x"?!', None, ["https://a.example/x"]),
        ("'https://a.example/x';:", None, ["https://a.example/x"]),
        ("HTTP://A.EXAMPLE/Up", None, ["HTTP://A.EXAMPLE/Up"]),
        ("http:// nope https:/// nope ftp://x.example", None, []),
        ("访问https://a.example/x。谢谢", None, ["https://a.example/x"]),
        ("https://a.example/?q=1&amp;r=2", None, ["https://a.example/?q=1&amp;r=2"]),  # text
        ("https://a.example/1 https://a.example/1", None, ["https://a.example/1"]),
        (None, '<a href="https://a.example/?q=1&amp;r=2">x</a>', ["https://a.example/?q=1&r=2"]),
        (None, "<a href='https://a.example/s'>x</a>", ["https://a.example/s"]),
        (None, "<a href=https://a.example/u?x=1>x</a>", ["https://a.example/u?x=1"]),
        (None, '<A HREF = " https://a.example/sp ">x</A>', ["https://a.example/sp"]),
        (None, '<img src="https://a.example/i.png">', ["https://a.example/i.png"]),
        (None, '<a href="https://a.example/x.">x</a>', ["https://a.example/x."]),
        (None, '<a href="mailto:a@b">m</a><a href="/relative">r</a>', []),
        (None, "<p>bare https://a.example/b&amp;c=1, done</p>", ["https://a.example/b&c=1"]),
        (None, "<p>&lt;https://a.example/lt&gt;</p>", ["https://a.example/lt"]),
        (None, "<p>https://a.example/nb&nbsp;next</p>", ["https://a.example/nb"]),
        (None, "<p>https://a.example/br<br>next</p>", ["https://a.example/br"]),
        (
            None,
            '<td style="background:url(https://a.example/bg.png)">',
            ["https://a.example/bg.png"],
        ),
        (None, '<a href="https://a.example/unterminated>x</a>', ["https://a.example/unterminated"]),
        (
            "text https://t.example/1 then https://both.example/",
            '<a href="https://both.example/">b</a> <a href="https://h.example/2">h</a>',
            ["https://t.example/1", "https://both.example/", "https://h.example/2"],
        ),
    ],
)
def test_extract_links(text: str | None, html: str | None, expected: list[str]) -> None:
    assert extract_links(text, html) == expected


MB = 1_000_000


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ("https:" * (MB // 6), []),
        ("https://x.example/" + ")" * MB, ["https://x.example/"]),
        ("https://x.example/" + ".,;:!?" * (MB // 6), ["https://x.example/"]),
        ("https://x.example/" + "(" * MB, []),  # longer than MAX_LINK_CHARS: left out
        ('href="' * (MB // 6), []),
        ("href='" * (MB // 6), []),
        ("href" + " " * MB + "=", []),
        ("<" * MB, []),
        ("<a " * (MB // 3), []),
        ("&amp;" * (MB // 5), []),
        ("=?" * (MB // 2), []),
        ("https://x.example/a " * (MB // 20), ["https://x.example/a"]),
    ],
)
def test_extract_links_adversarial_megabyte(payload: str, expected: list[str]) -> None:
    assert extract_links(payload, None) == expected
    assert extract_links(None, payload) == expected


def test_extract_links_megabyte_of_distinct_links() -> None:
    html = "".join(f'<a href="https://x.example/{i}?a=1&amp;b=2">{i}</a>\n' for i in range(25_000))
    links = extract_links(None, html)
    assert len(html) > MB
    assert len(links) == MAX_LINKS  # the cap: scanning stops there
    assert links[0] == "https://x.example/0?a=1&b=2"
    assert links[-1] == f"https://x.example/{MAX_LINKS - 1}?a=1&b=2"


# ---------------------------------------------------------------------------------------
# Bodies


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        ("<p>Hello</p><p>World</p>", "Hello\n\nWorld"),
        ("a<br>b<br/>c<br><br>d", "a\nb\nc\n\nd"),
        ("<div>one</div><div>two</div>", "one\ntwo"),
        ("<ul><li>x</li><li>y</li></ul>", "x\ny"),
        ("<b>bold</b>   and\n\n  <i>italic</i>", "bold and italic"),
        ("<script>alert('x')</script>visible<style>p{}</style>", "visible"),
        ("<SCRIPT type=x>a<b>c</SCRIPT >after", "after"),
        ("<head><title>Subject</title></head><body>body</body>", "body"),
        ("&lt;tag&gt; &amp; &eacute; &#233; &#xe9; &nbsp;x", "<tag> & é é é  x"),
        ("<!-- hidden -->shown<!-- unterminated", "shown"),
        ("<!DOCTYPE html><?xml x?>text", "text"),
        ("a < b and 1<2", "a < b and 1<2"),
        ("x <d unterminated tag", "x"),
        ("<pre>  keep\n    indent</pre>", "keep\n    indent"),
        ("<table><tr><td>a</td><td>b</td></tr><tr><td>c</td></tr></table>", "a b\nc"),
        ("<script>never closed", ""),
        ("", ""),
    ],
)
def test_html_to_text(html: str, expected: str) -> None:
    assert html_to_text(html) == expected


def test_text_body_prefers_text_then_html() -> None:
    assert text_body(parsed("plain.eml")).startswith("Hello,\n\nAll 12 services")
    html_only = parse_message(build("Content-Type: text/html", b"<p>Hi <b>there</b></p>"))
    assert text_body(html_only) == "Hi there"
    empty = parse_message(build("Content-Type: image/png", b"xx"))
    assert text_body(empty) == ""


def test_text_body_from_fixture_html() -> None:
    msg = parsed("html_links.eml")
    derived = html_to_text(msg.html or "")
    assert derived.startswith("Hi Jane,\n\nSee all deals\n\nYour account |")
    assert "track" not in derived and "tracker.example" not in derived and "Deals\n" not in derived


def test_dirty_html_inlines_cid_images() -> None:
    msg = parsed("attachments.eml")
    out = dirty_html(msg)
    png = find_attachment(msg, PNG_MD5)
    assert png is not None
    uri = "data:image/png;base64," + base64.b64encode(png.data).decode()
    assert f'<img src="{uri}" alt="Logo">' in out
    assert "cid:" not in out
    assert '<img src="https://vendor.example/pixel.gif">' in out  # dirty: kept as sent


@pytest.mark.parametrize(
    "img",
    [
        "<img src=\"cid:logo.png@vendor.example\">",
        "<img src='cid:logo.png@vendor.example'>",
        "<img src=cid:logo.png@vendor.example>",
        "<img SRC = \"CID:LOGO.PNG@VENDOR.EXAMPLE\">",
        '<img src="cid:logo.png%40vendor.example">',
    ],
)
def test_dirty_html_cid_variants(img: str) -> None:
    base = parsed("attachments.eml")
    msg = ParsedMessage(**{**{f: getattr(base, f) for f in base.__slots__}, "html": img})
    out = dirty_html(msg)
    assert out.startswith("<img ") and "data:image/png;base64,iVBORw0KGgo" in out
    assert "cid:" not in out.lower()


def test_dirty_html_unknown_cid_left_alone() -> None:
    base = parsed("attachments.eml")
    msg = ParsedMessage(
        **{**{f: getattr(base, f) for f in base.__slots__}, "html": '<img src="cid:nope">'}
    )
    assert dirty_html(msg) == '<img src="cid:nope">'
    assert "nope" not in sanitized_html(msg)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a < b & c", "a &lt; b &amp; c"),
        ('say "hi"', 'say "hi"'),
        ("go https://x.example/?a=1&b=2.", 'go <a href="https://x.example/?a=1&amp;b=2">'),
        ("<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
        ("line1\nline2", "line1\nline2"),
    ],
)
def test_dirty_html_from_text(text: str, expected: str) -> None:
    msg = parse_message(build("Content-Type: text/plain; charset=utf-8", text.encode()))
    out = dirty_html(msg)
    assert out.startswith("<pre") and out.endswith("</pre>")
    assert expected in out


def test_dirty_html_empty_message() -> None:
    msg = parse_message(build("Content-Type: image/png", b"x"))
    assert dirty_html(msg) == ""
    assert sanitized_html(msg) == ""


def html_message(html: str) -> ParsedMessage:
    return parse_message(build("Content-Type: text/html; charset=utf-8", html.encode()))


@pytest.mark.parametrize(
    ("html", "present", "absent"),
    [
        ("<p>ok<script>alert(1)</script></p>", ["<p>ok</p>"], ["script", "alert"]),
        ('<img src="x" onerror="alert(1)">', ["<img"], ["onerror", "alert"]),
        ('<body onload="x()"><p onclick="y()">t</p>', ["<p>t</p>"], ["onload", "onclick"]),
        ('<img src="https://tracker.example/p.gif">', ["<img"], ["tracker.example"]),
        ('<img src="//tracker.example/p.gif">', ["<img"], ["tracker.example"]),
        ('<img src="relative.gif">', ["<img"], ["relative.gif"]),
        (
            '<img src="data:image/png;base64,iVBORw0KGgo=">',
            ['src="data:image/png;base64,iVBORw0KGgo="'],
            [],
        ),
        ('<a href="data:text/html,<script>x</script>">d</a>', ["<a"], ["data:", "script"]),
        ('<a href="javascript:alert(1)">j</a>', [">j</a>"], ["javascript"]),
        (
            '<a href="https://ok.example/" target="_self" rel="opener">l</a>',
            [
                'href="https://ok.example/"',
                'target="_blank"',
                'rel="noopener noreferrer nofollow"',
            ],
            ["_self", '"opener"'],
        ),
        (
            '<p style="color: red; background: url(https://t.example/x); '
            'background-image:url(x); behavior:url(x)">s</p>',
            ['style="color:red"'],
            ["url(", "t.example", "behavior"],
        ),
        ("<style>@import url(https://t.example/c.css)</style><p>x</p>", ["<p>x</p>"], ["import"]),
        (
            '<link rel="stylesheet" href="https://t.example/c.css"><p>x</p>',
            ["<p>x</p>"],
            ["t.example"],
        ),
        ('<iframe src="https://t.example/"></iframe><p>x</p>', ["<p>x</p>"], ["iframe"]),
        (
            '<table background="https://t.example/bg.png"><tr><td>c</td></tr></table>',
            ["c"],
            ["t.example"],
        ),
        ('<img srcset="https://t.example/1x.png 1x">', [], ["t.example"]),
        ("<svg><image href='https://t.example/i'/></svg>", [], ["t.example", "svg"]),
        ('<form action="https://t.example/"><input name="p"></form>', [], ["form", "input"]),
        ('<font color="red" face="Arial">f</font>', ['<font color="red" face="Arial">'], []),
        ("<!-- comment --><b>b</b>", ["<b>b</b>"], ["comment"]),
    ],
)
def test_sanitized_html(html: str, present: list[str], absent: list[str]) -> None:
    out = sanitized_html(html_message(html))
    for needle in present:
        assert needle in out
    for needle in absent:
        assert needle not in out.lower()


def test_sanitized_html_keeps_inline_cid_images() -> None:
    out = sanitized_html(parsed("attachments.eml"))
    assert 'src="data:image/png;base64,iVBORw0KGgo' in out
    assert "vendor.example/pixel.gif" not in out
    assert "<b>INV-1001</b>" in out


def test_sanitized_html_of_text_message_is_linkified() -> None:
    out = sanitized_html(parsed("plain.eml"))
    assert (
        '<a href="https://status.example.com/reports/2025-47" target="_blank" '
        'rel="noopener noreferrer nofollow">'
    ) in out
    assert out.startswith("<pre")


def test_sanitized_html_of_fixture() -> None:
    out = sanitized_html(parsed("html_links.eml"))
    assert "tracker.example" not in out and "<script" not in out and "onload" not in out
    assert "javascript" not in out
    assert 'href="https://shop.example/deals?src=email&amp;id=7"' in out


# ---------------------------------------------------------------------------------------
# Property tests: parse_message never raises


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_parse_arbitrary_bytes(data: bytes) -> None:
    msg = parse_message(data)
    check_invariants(msg)
    text_body(msg)
    sanitized_html(msg)


MIME_TOKENS = [
    b"\r\n",
    b"\r\n\r\n",
    b"--",
    b"=?utf-8?B?",
    b"=?x-unknown?Q?",
    b"?=",
    b"Content-Type: multipart/mixed; boundary=",
    b"Content-Transfer-Encoding: base64\r\n",
    b"charset=",
    b"\x00",
    b"\xff",
    b"=",
    b"<",
    b'"',
    b"(",
]


@st.composite
def mutated_fixture(draw: st.DrawFn) -> bytes:
    data = bytearray(raw(draw(st.sampled_from(FIXTURES))))
    for _ in range(draw(st.integers(min_value=1, max_value=8))):
        if not data:
            break
        pos = draw(st.integers(min_value=0, max_value=len(data) - 1))
        op = draw(st.sampled_from(["flip", "delete", "insert", "token", "truncate", "dup"]))
        if op == "flip":
            data[pos] = draw(st.integers(min_value=0, max_value=255))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(min_value=1, max_value=64))]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=32))
        elif op == "token":
            data[pos:pos] = draw(st.sampled_from(MIME_TOKENS))
        elif op == "truncate":
            del data[pos:]
        else:
            data[pos:pos] = data[pos : pos + draw(st.integers(min_value=1, max_value=200))]
    return bytes(data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_fixture())
def test_parse_mutated_fixtures(data: bytes) -> None:
    msg = parse_message(data)
    check_invariants(msg)
    assert isinstance(text_body(msg), str)
    assert isinstance(dirty_html(msg), str)
    assert "<script" not in sanitized_html(msg).lower()


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_decode_rfc2047_never_raises(value: str) -> None:
    assert isinstance(decode_rfc2047(value), str)
    assert isinstance(decode_rfc2047("=?utf-8?q?" + value + "?="), str)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=500), st.text(max_size=500))
def test_extract_links_properties(text: str, html: str) -> None:
    links = extract_links(text, html)
    assert len(links) == len(set(links))
    for link in links:
        assert re.match(r"(?i)https?://[^/?#\s]", link)
        assert link[-1] not in ".,;:!?'\">"
