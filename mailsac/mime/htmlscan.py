"""Linear-time scans of untrusted HTML: text extraction, remote-image detection and an
estimate of how deep an HTML5 tree builder would nest the document.

Every loop here moves forward through the document; a regular expression is only ever
matched at one position and its open-ended runs stop at a delimiter that cannot occur in
them (``<`` or ``>``), so each character is looked at a bounded number of times.
"""

from __future__ import annotations

import html
import re

__all__ = ["has_remote_images", "html_to_text", "markup_depth"]

_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9:-]*)[^<>]*>?")
_TAG_START = re.compile(r"<[A-Za-z/!?]")
_WS = re.compile(r"[ \t\r\n\f\v]+")
_SKIP_CONTENT = {
    name: re.compile(rf"</{name}[^<>]*>", re.IGNORECASE)
    for name in ("script", "style", "title", "template", "noscript", "xml")
}
# markup_depth follows the HTML5 tokenizer more closely than the text scan needs to: a
# tag name runs to whitespace, "/" or ">" (so "<script</table>" opens an element named
# "script<", not a script), and only raw-text, RCDATA and script elements hide their
# content, which ends at "</name" followed by whitespace, "/" or ">". <template>, <xml>
# and <noscript> content is markup to the sanitizer's parser, so it is counted.
_DEPTH_TAG = re.compile(r"<(/?)([A-Za-z][^\t\n\f\r />]*)[^<>]*>?")
_RAW_TEXT = {
    name: re.compile(rf"</{name}(?=[\t\n\f\r />])", re.IGNORECASE)
    for name in ("script", "style", "title", "textarea", "xmp", "iframe", "noembed",
                 "noframes")
}
_PARAGRAPH = frozenset({"p", "h1", "h2", "h3", "h4", "h5", "h6", "table", "blockquote"})
_LINE = frozenset(
    {
        "div", "li", "tr", "ul", "ol", "dl", "dt", "dd", "hr", "section", "article",
        "header", "footer", "nav", "aside", "main", "form", "caption", "center",
        "address", "figure", "figcaption", "details", "summary", "body", "html",
    }
)  # fmt: skip


class _TextOut:
    """Accumulates text with HTML whitespace semantics (collapsed runs, explicit breaks)."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.newlines = 0
        self.space = False
        self.length = 0  # characters of text so far (separators not counted)

    def _flush(self, leading_space: bool) -> None:
        if self.parts and self.newlines:
            self.parts.append("\n" * self.newlines)
        elif self.parts and (self.space or leading_space):
            self.parts.append(" ")
        self.newlines = 0
        self.space = False

    def text(self, chunk: str) -> None:
        chunk = _WS.sub(" ", html.unescape(chunk) if "&" in chunk else chunk)
        stripped = chunk.strip(" ")
        if not stripped:
            self.space = self.space or bool(chunk)
            return
        self._flush(chunk[0] == " ")
        self.parts.append(stripped)
        self.length += len(stripped)
        self.space = chunk[-1] == " "

    def preformatted(self, chunk: str) -> None:
        chunk = html.unescape(chunk) if "&" in chunk else chunk
        if chunk:
            self._flush(False)
            self.parts.append(chunk.replace("\r\n", "\n"))
            self.length += len(chunk)

    def breaks(self, count: int, additive: bool = False) -> None:
        self.newlines = self.newlines + count if additive else max(self.newlines, count)

    def result(self) -> str:
        return "".join(self.parts).replace("\xa0", " ").strip()


def html_to_text(doc: str, limit: int = 0) -> str:
    """Strip tags (dropping script/style content), decode entities, keep line structure.

    With ``limit``, stop once at least that many characters of text are collected (the
    result then starts exactly like the full conversion). An unclosed ``<script>`` (or
    style, title, ...) hides the rest of the document, as it does in a browser.
    """
    out = _TextOut()
    pos, end, pre = 0, len(doc), 0
    while pos < end:
        if limit and out.length >= limit:
            break
        lt = doc.find("<", pos)
        if lt < 0:
            lt = end
        if lt > pos:
            (out.preformatted if pre else out.text)(doc[pos:lt])
        if lt >= end:
            break
        if doc.startswith("<!--", lt):
            close = doc.find("-->", lt + 4)
            pos = end if close < 0 else close + 3
            continue
        m = _TAG.match(doc, lt)
        if m is None:
            if doc.startswith(("<!", "<?"), lt):  # doctype, CDATA, processing instruction
                close = doc.find(">", lt)
                pos = end if close < 0 else close + 1
            else:  # a stray "<": it and everything up to the next plausible tag is text
                nxt = _TAG_START.search(doc, lt + 1)
                pos = end if nxt is None else nxt.start()
                (out.preformatted if pre else out.text)(doc[lt:pos])
            continue
        pos = m.end()
        closing, name = m.group(1) == "/", m.group(2).lower()
        if name in _SKIP_CONTENT and not closing:
            skip = _SKIP_CONTENT[name].search(doc, pos)
            pos = end if skip is None else skip.end()  # unclosed: nothing more is text
        elif name == "br":
            out.breaks(1, additive=True)
        elif name == "pre":
            pre = max(0, pre - 1) if closing else pre + 1
            out.breaks(1)
        elif name in _PARAGRAPH:
            out.breaks(2)
        elif name in _LINE:
            out.breaks(1)
        elif name in ("td", "th") and not closing:
            out.space = True
    return out.result()


# ---------------------------------------------------------------------------------------
# Remote images

_IMG_OPEN = re.compile(r"<img(?![A-Za-z0-9:-])", re.IGNORECASE)
# Possessive quantifiers: no backtracking between the whitespace runs.
_REMOTE_SRC = re.compile(r"""(?<![\w-])src\s*+=\s*+["']?+\s*+https?:""", re.IGNORECASE)


def has_remote_images(doc: str | None) -> bool:
    """Whether some ``<img>`` tag has an ``http(s):`` ``src`` (the viewer's image toggle).

    Each tag is searched from its ``<img`` to its ``>`` and the scan resumes after that
    ``>``, so no character is searched twice (``"<img " * n`` costs O(n)).
    """
    if not doc:
        return False
    pos, end = 0, len(doc)
    while pos < end:
        m = _IMG_OPEN.search(doc, pos)
        if m is None:
            return False
        close = doc.find(">", m.end())
        stop = end if close < 0 else close
        if _REMOTE_SRC.search(doc, m.end(), stop) is not None:
            return True
        pos = stop + 1
    return False


# ---------------------------------------------------------------------------------------
# Nesting estimate (guards the HTML5 tree builder of the sanitizer, which costs O(depth)
# per tag: a deeply nested document is quadratic to sanitize)

_VOID = frozenset(
    {
        "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
        "param", "source", "track", "wbr", "basefont", "bgsound", "frame", "keygen",
        "image", "isindex",
    }
)  # fmt: skip
# Elements whose next sibling closes them (<p>, <li>, ...): never counted as nesting.
_SIBLINGS = frozenset(
    {"p", "li", "dt", "dd", "option", "optgroup", "tr", "tbody", "thead", "tfoot",
     "colgroup", "rb", "rt", "rp", "rtc"}
)
_CELLS = frozenset({"td", "th", "caption"})  # markers in the active formatting list
_BOUNDARIES = _CELLS | {"table", "html", "template", "applet", "object", "marquee"}
_FORMATTING = frozenset(
    {"a", "b", "big", "code", "em", "font", "i", "nobr", "s", "small", "strike",
     "strong", "tt", "u"}
)


class _Level:
    """Formatting elements a tree builder keeps for re-opening after they were closed by
    an ancestor's end tag, between two table-cell markers (at most three alike, as the
    builder's "Noah's Ark" clause keeps)."""

    def __init__(self) -> None:
        self.alike: dict[str, int] = {}
        self.count = 0

    def add(self, tag: str) -> None:
        seen = self.alike.get(tag, 0)
        if seen < 3:
            self.alike[tag] = seen + 1
            self.count += 1


class _Nesting:
    """Open elements (with per-name positions for O(1) scope checks) plus, per table-cell
    level, the formatting elements that would be re-opened."""

    def __init__(self) -> None:
        self.stack: list[tuple[str, str]] = []  # (name, tag text)
        self.where: dict[str, list[int]] = {}
        self.boundaries: list[int] = []
        self.levels = [_Level()]

    def depth(self) -> int:
        return len(self.stack) + self.levels[-1].count

    def push(self, name: str, tag: str) -> None:
        self.where.setdefault(name, []).append(len(self.stack))
        if name in _BOUNDARIES:
            self.boundaries.append(len(self.stack))
        if name in _CELLS:
            self.levels.append(_Level())
        self.stack.append((name, tag))

    def pop_to(self, index: int) -> None:
        """Pop every element at ``index`` and above; formatting elements among them (but
        the one at ``index``, which its own end tag closes) stay to be re-opened."""
        while len(self.stack) > index:
            name, tag = self.stack.pop()
            self.where[name].pop()
            if name in _BOUNDARIES:
                self.boundaries.pop()
            if name in _CELLS:
                self.levels.pop()
            elif name in _FORMATTING and len(self.stack) > index:
                self.levels[-1].add(tag)

    def in_scope(self, name: str) -> int | None:
        """Index of the innermost open ``name`` not hidden behind a boundary element."""
        positions = self.where.get(name)
        if not positions:
            return None
        index = positions[-1]
        if self.boundaries and self.boundaries[-1] > index:
            return None
        return index

    def close_cell(self) -> None:
        for cell in ("td", "th", "caption"):
            index = self.in_scope(cell)
            if index is not None:
                self.pop_to(index)

    def start(self, name: str, tag: str) -> None:
        if name in _CELLS or name == "tr":  # a new cell or row closes the open cell
            self.close_cell()
        elif name in ("a", "nobr"):  # a link inside a link closes the outer one
            index = self.in_scope(name)
            if index is not None:
                self.pop_to(index)
        if name not in _VOID and name not in _SIBLINGS:
            self.push(name, tag)

    def end(self, name: str) -> None:
        if name in _CELLS or name == "tr" or name == "table":
            self.close_cell()
        index = self.in_scope(name)
        if index is not None:
            self.pop_to(index)


def markup_depth(doc: str, stop_at: int = 0) -> int:
    """Estimate the deepest element nesting (open elements plus formatting elements that
    would be re-opened) an HTML5 tree builder reaches for ``doc``; linear time.

    The estimate errs high for sloppy markup and counts what the builder re-scans per
    token. With ``stop_at``, the scan ends as soon as that depth is reached.
    """
    nesting = _Nesting()
    deepest, pos, end = 0, 0, len(doc)
    while pos < end:
        lt = doc.find("<", pos)
        if lt < 0:
            break
        m = _DEPTH_TAG.match(doc, lt)
        if m is None:
            pos = lt + 1
            continue
        pos = m.end()
        name = m.group(2).lower()
        if m.group(1):
            nesting.end(name)
            continue
        if name in _RAW_TEXT:
            skip = _RAW_TEXT[name].search(doc, pos)
            pos = end if skip is None else skip.end()
            continue
        nesting.start(name, m.group(0).lower())
        deepest = max(deepest, nesting.depth())
        if stop_at and deepest >= stop_at:
            break
    return deepest
