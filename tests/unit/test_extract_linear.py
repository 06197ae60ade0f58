"""mailsac.extract on hostile input: cost grows linearly (cost at 4n compared with the
cost at n, never an absolute time; tests/timing.py). The internal scanners are timed
without the caps of the public entry point, which would hide super-linear growth."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from mailsac.extract import extract
from mailsac.extract.codes import _Scanner
from mailsac.extract.htmltext import html_text
from mailsac.extract.links import _html_links, _text_links
from tests.timing import assert_linear

FACTOR = 4


def _codes(text: str) -> object:
    return _Scanner(text, "text", True).candidates()


CODE_INPUTS: dict[str, Callable[[int], str]] = {
    "digit run": lambda n: "1" * (n * 8),
    "digit groups": lambda n: "123 " * (n * 2),
    "hyphen chain": lambda n: "A1-" * (n * 3),
    "many cue words": lambda n: "code " * (n * 2) + "482913",
    "cue then numbers": lambda n: "verification code 482913 order 5512 " * n,
    "letters then digit": lambda n: "a" * (n * 8) + "1",
    "one long line": lambda n: "x" * (n * 8) + " 482913 " + "y" * (n * 8),
    "punctuation glue": lambda n: "1.2,3:4/" * n,
    "cjk": lambda n: "验证码123456。" * n,
}


@pytest.mark.parametrize("name", list(CODE_INPUTS))
def test_code_scan_is_linear(name: str) -> None:
    assert_linear(_codes, CODE_INPUTS[name], 500, factor=FACTOR)


HTML_INPUTS: dict[str, Callable[[int], str]] = {
    "deep tags": lambda n: "<div>" * n + "code 482913" + "</div>" * n,
    "unclosed anchors": lambda n: "<a " * (n * 2),
    "anchors without close": lambda n: "<a href='https://x.example/'>text " * n,
    "anchor with many inner tags": lambda n: "<a href='https://x.example/'>" + "<b>" * n,
    "unclosed style": lambda n: "<style>" * n,
    "comments": lambda n: "<!--" * n + "<style>",
    "stray brackets": lambda n: "<" * (n * 4) + ">" * (n * 4),
    "long attribute": lambda n: "<a href='https://x.example/" + "a" * (n * 8),
    "entities": lambda n: "&amp;&#x41;&nbsp;" * n,
}


@pytest.mark.parametrize("name", list(HTML_INPUTS))
def test_html_scans_are_linear(name: str) -> None:
    make = HTML_INPUTS[name]
    assert_linear(html_text, make, 500, factor=FACTOR)
    assert_linear(_html_links, make, 500, factor=FACTOR)


TEXT_LINK_INPUTS: dict[str, Callable[[int], str]] = {
    "many urls": lambda n: "https://a.example/x " * n,
    "one long url": lambda n: "https://a.example/" + "a" * (n * 8),
    "urls without newlines": lambda n: "confirm " * n + "https://a.example/",
}


@pytest.mark.parametrize("name", list(TEXT_LINK_INPUTS))
def test_text_links_are_linear(name: str) -> None:
    assert_linear(_text_links, TEXT_LINK_INPUTS[name], 300, factor=FACTOR)


def test_whole_extraction_is_bounded_by_its_caps() -> None:
    """A huge body costs no more than the capped prefix: 1 MB and 4 MB cost alike."""
    def run(body: str) -> object:
        return extract("code", body, "<p>" + body + "</p>")

    assert_linear(run, lambda n: "code 48291 order 2024 " * n, 50_000, factor=FACTOR)
