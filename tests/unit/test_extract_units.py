"""mailsac.extract: one-time codes and links of a message (issue 19), unit level."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailsac.extract import encode, extract
from mailsac.extract.codes import MAX_CODES, find_codes
from mailsac.extract.links import MAX_LABEL_CHARS, MAX_LINKS

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _codes(text: str | None = None, html: str | None = None, subject: str = "") -> list[str]:
    return [c.value for c in extract(subject, text, html).codes]


@pytest.mark.parametrize(("text", "expected"), [
    ("Your verification code is 482913.", ["482913"]),
    ("Use this code to sign in:\n\n    123-456\n\nIt expires in 10 minutes.", ["123-456"]),
    ("Your security code is 551 204.", ["551 204"]),
    ("G-123456 is your Google verification code.", ["123456"]),
    ("Your recovery code: AB12-CD34", ["AB12-CD34"]),
    ("Your PIN is 4821. Do not share it.", ["4821"]),
    ("Ihr Bestätigungscode lautet: 839201", ["839201"]),
    ("Votre code de vérification est 730114.", ["730114"]),
    ("Tu código de verificación es 662019.", ["662019"]),
    ("Ваш код подтверждения: 120934.", ["120934"]),
    ("您的验证码是 553311，5分钟内有效。", ["553311"]),
    ("認証コード：884120", ["884120"]),
    ("인증번호는 [305521] 입니다.", ["305521"]),
    ("Your one-time passcode for order #55123 is 228842.", ["228842"]),
])
def test_codes_found(text: str, expected: list[str]) -> None:
    assert _codes(text) == expected


@pytest.mark.parametrize("text", [
    "Order number: 48291375. Total: $129.99. Order date: 2024-05-14.",
    "Call us at +1 (415) 555-0132 or 0800 123 4567, Mon-Fri 09:00-17:00.",
    "Acme Inc., 548 Market St, Suite 120, San Francisco, CA 94104. © 2024 Acme.",
    "Tracking number: 1Z999AA10123456784, delivery on 04.06.2024 between 10:00 and 14:00.",
    "Use code SAVE20 at checkout for 20% off. Offer ends 31/12/2024.",
    "Your card ending in 4821 was charged $49.99 on 05/14/2024.",
    "Meeting ID: 845 2231 9087. Join at https://meet.example/j/845223190?pwd=123456",
    "Invoice #2024-00123, Customer ID: 482913, amount due 1,250.00 EUR",
    "Our 2024 roadmap is live and the team grew to 120 people since 2019.",
])
def test_no_code_in_numbers_of_other_kinds(text: str) -> None:
    assert _codes(text) == []


def test_code_alone_on_its_line_counts_when_the_subject_speaks_of_a_code() -> None:
    body = "Hi Sam,\n\nHere you go:\n\n  904117\n\nThanks!"
    assert _codes(body, subject="Your login code") == ["904117"]
    assert _codes(body, subject="Hello") == []


def test_css_and_hex_colours_in_html_are_not_codes() -> None:
    html = ('<html><head><style>#a{color:#123456;width:600px}</style></head><body>'
            '<div style="color:#d35400;background:#a1b2c3">Enter this code: '
            '<b>804311</b></div><div style="height:120px">&nbsp;</div></body></html>')
    result = extract("Verify", None, html)
    assert [(c.value, c.source) for c in result.codes] == [("804311", "html")]


def test_codes_ranked_capped_and_with_bounded_context() -> None:
    text = "\n".join(f"verification code {100000 + n * 7919}" for n in range(50))
    codes = extract("codes", text, None).codes
    assert len(codes) == MAX_CODES
    confidences = [c.confidence for c in codes]
    assert confidences == sorted(confidences, reverse=True)
    assert all(0.0 < c <= 1.0 for c in confidences)
    long_context = "x" * 500 + " code 482913 " + "y" * 500
    (code,) = extract("", long_context, None).codes
    assert len(code.context) <= 2 * 60 + len(code.value)
    assert "482913" in code.context


def test_subject_code_is_found_with_its_source() -> None:
    result = extract("228841 is your Acme login code", "Welcome back.", None)
    assert [(c.value, c.source) for c in result.codes] == [("228841", "subject")]


# ---------------------------------------------------------------------------------------
# Links


BUTTON_MAIL = (
    '<a href="https://acme.example/"><img src="https://cdn.acme.example/logo.png" alt="Acme"></a>'
    '<p>Thanks for signing up!</p>'
    '<a href="https://acme.example/confirm?t=abc&amp;u=1" style="background:#d35400">'
    '<span>Confirm your e-mail</span></a>'
    '<p>Not you? <a href="https://acme.example/password/reset">Reset your password</a></p>'
    '<a href="https://mail.acme.example/u/x">Unsubscribe</a>'
)


def test_links_with_text_kind_and_action_link() -> None:
    result = extract("Welcome", None, BUTTON_MAIL)
    assert [(link.url, link.text, link.kind) for link in result.links] == [
        ("https://acme.example/", "Acme", "other"),
        ("https://acme.example/confirm?t=abc&u=1", "Confirm your e-mail", "confirm"),
        ("https://acme.example/password/reset", "Reset your password", "reset"),
        ("https://mail.acme.example/u/x", "Unsubscribe", "unsubscribe"),
    ]
    assert result.action is not None and result.action.url.startswith(
        "https://acme.example/confirm")


@pytest.mark.parametrize(("text", "url", "kind"), [
    ("Passwort zurücksetzen", "https://x.example/a", "reset"),
    ("Confirmer mon adresse e-mail", "https://x.example/a", "confirm"),
    ("Iniciar sesión", "https://x.example/a", "login"),
    ("Newsletter abbestellen", "https://x.example/a", "unsubscribe"),
    ("Continue", "https://x.example/account/verify?token=1", "verify"),
    ("パスワードを再設定する", "https://x.example/a", "reset"),
    ("退订邮件", "https://x.example/a", "unsubscribe"),
    ("Read more", "https://blog.example/2024/06/post", "other"),
])
def test_link_kinds_in_several_languages(text: str, url: str, kind: str) -> None:
    (link,) = extract("", None, f'<a href="{url}">{text}</a>').links
    assert link.kind == kind


def test_action_link_is_never_unsubscribe_or_a_logo() -> None:
    html = ('<a href="https://x.example/verify/1"><img src="https://x.example/logo.png"></a>'
            '<a href="https://x.example/unsubscribe?confirm=1">Confirm unsubscribe</a>')
    result = extract("News", None, html)
    assert [link.kind for link in result.links] == ["verify", "unsubscribe"]
    assert result.action is None


def test_text_links_are_labelled_by_their_line() -> None:
    text = ("Please confirm your address by opening the link below:\n"
            "https://acme.example/e/Zx81kQ02\n\nUnsubscribe: https://acme.example/u/1\n")
    result = extract("Welcome", text, None)
    assert [(link.url, link.source, link.kind) for link in result.links] == [
        ("https://acme.example/e/Zx81kQ02", "text", "confirm"),
        ("https://acme.example/u/1", "text", "unsubscribe"),
    ]
    assert result.action is not None and result.action.url == "https://acme.example/e/Zx81kQ02"


def test_click_here_takes_its_meaning_from_the_sentence() -> None:
    html = '<p>To sign in to your account, click <a href="https://acme.example/m/Qm9s">here</a>.'
    result = extract("Sign in", None, html)
    assert result.action is not None and result.action.kind == "login"


def test_links_capped_and_deduplicated_html_first() -> None:
    html = "".join(f'<a href="https://x.example/{n}">link {n} ' + "t" * 300 + "</a>"
                   for n in range(300))
    text = "https://x.example/0\nhttps://y.example/only-text"
    links = extract("", text, html).links
    assert len(links) == MAX_LINKS
    assert len({link.url for link in links}) == MAX_LINKS
    assert all(len(link.text) <= MAX_LABEL_CHARS for link in links)
    assert links[0].source == "html"
    small = extract("", text, '<a href="https://x.example/0">zero</a>').links
    assert [(link.url, link.source) for link in small] == [
        ("https://x.example/0", "html"), ("https://y.example/only-text", "text")]


def test_non_http_links_are_left_out() -> None:
    html = ('<a href="mailto:a@b.example">mail</a><a href="javascript:alert(1)">x</a>'
            '<a href="https://ok.example/">ok</a>')
    assert [link.url for link in extract("", None, html).links] == ["https://ok.example/"]


# ---------------------------------------------------------------------------------------
# JSON and hostile input


def test_json_shape_matches_the_contract() -> None:
    data = json.loads(encode(extract("Your code", "Your code is 482913", BUTTON_MAIL)))
    assert set(data) == {"codes", "links", "actionLink"}
    assert set(data["codes"][0]) == {"value", "context", "confidence", "source"}
    assert set(data["links"][0]) == {"url", "text", "source", "kind"}
    assert data["actionLink"] in data["links"]


@FUZZ
@given(st.text(max_size=400), st.text(max_size=400), st.text(max_size=400))
def test_never_raises_and_json_is_jsonb_safe(subject: str, text: str, html: str) -> None:
    encoded = encode(extract(subject, text, "<a href='https://x.example/'>" + html))
    data = json.loads(encoded)
    assert "\\u0000" not in encoded and "\x00" not in encoded
    encoded.encode("utf-8")  # no lone surrogates
    assert len(data["codes"]) <= MAX_CODES and len(data["links"]) <= MAX_LINKS


@FUZZ
@given(st.lists(st.sampled_from(
    ["code", " ", "123456", "-", "\n", "#", "order", "$", "12", ".", "验证码", "Code:", "A1"]),
    max_size=80))
def test_code_values_always_come_from_the_text(parts: list[str]) -> None:
    text = "".join(parts)
    for code in find_codes("", [("text", text)]):
        assert code.value in text
        assert code.value in code.context


def test_payload_conforms_to_the_openapi_document() -> None:
    from mailsac.api.openapi import build_spec
    from tests.unit.test_openapi import _check, _same_keys

    spec = build_spec()
    payload = {"_id": "abc-0", **json.loads(encode(extract(
        "Your code", "Your code is 482913\nhttps://x.example/verify?t=1", BUTTON_MAIL)))}
    assert payload["codes"] and payload["links"] and payload["actionLink"]
    _check(spec, "Extract", payload)
    _same_keys(spec, "Extract", payload)
    _check(spec, "Extract", {"_id": "x-0", "codes": [], "links": [], "actionLink": None})
