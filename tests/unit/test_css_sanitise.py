"""Inline CSS of untrusted mail (mailsac.mime.css): what is kept, the partner rule between
backgrounds and text colours, and linear cost on hostile input (tests/timing.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailsac.mime import css
from mailsac.mime.bodies import sanitized_html
from mailsac.mime.css import MAX_STYLE_CHARS, sanitize_style
from mailsac.mime.parse import parse_message
from tests.timing import assert_linear

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DANGER = ("url(", "image-set", "expression", "attr(", "var(", "env(", "\\", "@", "position",
          "z-index", "behavior", "-moz-binding")


@pytest.mark.parametrize(("style", "expected"), [
    # issue 19: the transactional button keeps its background, so its white text shows
    ("background:#d35400;color:#fff;padding:12px 24px;border-radius:4px",
     "background: #d35400; color: #fff; padding: 12px 24px; border-radius: 4px"),
    ("background-color:#111;color:#eee;line-height:1.5;text-align:center;max-width:600px",
     "background-color: #111; color: #eee; line-height: 1.5; text-align: center; "
     "max-width: 600px"),
    ("font:bold 14px/20px 'Helvetica Neue', Arial;text-decoration:none;display:inline-block",
     "font: bold 14px/20px 'Helvetica Neue', Arial; text-decoration: none; "
     "display: inline-block"),
    ("background:linear-gradient(#0a0, rgba(0,0,0,.5));color:#fff",
     "background: linear-gradient(#0a0, rgba(0,0,0,.5)); color: #fff"),
    ("color:#fff !important;background-color:#000 ! IMPORTANT",
     "color: #fff !important; background-color: #000 !important"),
    # resource loading, scripts and escapes go; a background's colour is kept alone
    ("background:#000 url(https://t.example/p.png) no-repeat;color:#fff",
     "background-color: #000; color: #fff"),
    ("background:image-set('a.png' 1x) rgb(1, 2, 3);color:#fff",
     "background-color: rgb(1, 2, 3); color: #fff"),
    ("background-image:url(x);background-color:#222;color:#eee",
     "background-color: #222; color: #eee"),
    ("width:expression(alert(1));color:red", "color: red"),
    ("color:u\\72l(x);padding:1px", "padding: 1px"),
    ("font-family:attr(title);margin:0", "margin: 0"),
    ("position:fixed;top:0;left:0;z-index:-1;color:red", "color: red"),
    ("margin:-9999px 0 0;padding:2px", "padding: 2px"),
    ("display:contents;color:red", "color: red"),
    ("/* ; */color:red/*;background:url(x)*/;x", "color: red"),
    ("content:'x';list-style:url(x);list-style-type:disc", "list-style-type: disc"),
    # partner rule: no text colour without the background it was chosen for, and back
    ("background:url(https://t.example/dark.jpg);color:#fff;padding:4px", "padding: 4px"),
    ("background-image:url(dark.jpg);color:#fff", None),
    ("background-image:url(light.jpg);color:#333 !important", None),
    ("background:url(x);color:red;padding:1px", "color: red; padding: 1px"),  # reads on both
    ("background:url(x);color:rgb(0, 0, 255)", None),  # too dark for a dark page
    ("background-color:#000;background:url(light.png);color:#333", None),
    ("color:var(--brand);background:#000;padding:1px", "padding: 1px"),
    ("", None),
    ("x" * (MAX_STYLE_CHARS + 1), None),
])  # fmt: skip
def test_declarations_kept(style: str, expected: str | None) -> None:
    assert sanitize_style(style) == expected


_PIECES = st.sampled_from([
    "color", "background", "background-color", "background-image", "padding", "margin",
    "display", "font-family", "width", ":", ";", " ", "#fff", "#000", "red", "url(", ")",
    "(", "'", '"', "/*", "*/", "\\", "!important", "-", "rgb(0,0,0)", "expression",
    "image-set(", "calc(", "linear-gradient(", "attr(", "inline-block", "fixed", "@import",
])  # fmt: skip
_STYLES = st.lists(_PIECES, max_size=40).map("".join) | st.text(max_size=80)


@FUZZ
@given(_STYLES)
def test_nothing_dangerous_survives_and_output_is_stable(style: str) -> None:
    out = sanitize_style(style)
    if out is None:
        return
    lowered = out.lower()
    assert not any(bad in lowered for bad in DANGER), out
    assert sanitize_style(out) == out  # a second pass changes nothing


@FUZZ
@given(st.sampled_from(["url(x)", "image-set('a' 1x)", "-webkit-image-set(x)", "attr(x)",
                        "var(--bg)", "expression(x)"]),
       st.sampled_from(["#fff", "white", "rgb(255,255,255)", "#eee !important"]),
       st.booleans())
def test_light_text_never_outlives_its_background(bad: str, colour: str, first: bool) -> None:
    decls = [f"background: {bad}", f"color: {colour}", "padding: 4px"]
    style = ";".join(decls if first else reversed(decls))
    out = sanitize_style(style) or ""
    assert "color" not in out and "background" not in out
    assert "padding: 4px" in out


@pytest.mark.parametrize("make", [
    lambda n: "/*" + "a" * n,  # an unterminated comment
    lambda n: "color:" + "(" * n,
    lambda n: "background:" + "a(" * n,
    lambda n: "background:" + "a" * n,
    lambda n: "font-family:'" + "a;" * n,
    lambda n: "color:red;" * n,
    lambda n: "background:#000 url(x) " + "#" * n + ";color:#fff",
    lambda n: "margin" + ":-1px;" * n,
])  # fmt: skip
def test_sanitize_style_is_linear(make: Callable[[int], str]) -> None:
    assert_linear(css._sanitize, make, 1_000)  # the unbounded core: growth shows


def _mail(n: int) -> bytes:
    cell = '<td style="background:#000 url(x);color:#fff;padding:1px">a</td>'
    return (b"From: a@example.org\r\nTo: b@example.test\r\nSubject: s\r\n"
            b"Content-Type: text/html\r\n\r\n<table><tr>" + cell.encode() * n + b"</tr></table>")


def test_sanitized_html_with_many_styles_is_linear() -> None:
    assert_linear(lambda raw: sanitized_html(parse_message(raw)), _mail, 200)


def test_styled_body_becomes_a_div() -> None:
    raw = (b"From: a@example.org\r\nTo: b@example.test\r\nSubject: s\r\n"
           b"Content-Type: text/html\r\n\r\n<html><body style=\"background:#121212;color:#eee\""
           b" onload=\"x()\"><a href=\"https://x.example/\" style=\"color:#8ab4f8\">go</a>"
           b"</body></html>")
    out = sanitized_html(parse_message(raw))
    assert '<div style="background:#121212;color:#eee">' in out
    assert "onload" not in out
