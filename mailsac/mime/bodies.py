"""Body renderings served by the API: plain text, "dirty" HTML and sanitized HTML."""

from __future__ import annotations

import base64
import html
import re
import urllib.parse
from collections.abc import Callable

import nh3

from mailsac.mime.links import iter_text_urls
from mailsac.mime.parse import Attachment, ParsedMessage

__all__ = ["dirty_html", "html_to_text", "sanitized_html", "text_body", "text_to_html"]

# ---------------------------------------------------------------------------------------
# HTML -> text (a small linear-time scanner; no regex can backtrack past the next "<")

_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9:-]*)[^<>]*>?")
_TAG_START = re.compile(r"<[A-Za-z/!?]")
_WS = re.compile(r"[ \t\r\n\f\v]+")
_SKIP_CONTENT = {
    name: re.compile(rf"</{name}[^<>]*>", re.IGNORECASE)
    for name in ("script", "style", "title", "template", "noscript", "xml")
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
    result then starts exactly like the full conversion).
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
            pos = end if skip is None else skip.end()
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


def text_body(msg: ParsedMessage) -> str:
    """The text part, or text derived from the HTML part, or ""."""
    if msg.text and msg.text.strip():
        return msg.text
    if msg.html:
        return html_to_text(msg.html)
    return msg.text or ""


# ---------------------------------------------------------------------------------------
# Dirty HTML

_CID_SRC = re.compile(
    r"""(\bsrc\s*=\s*)(?:"\s*cid:([^"]*)"|'\s*cid:([^']*)'|cid:([^\s>"']*))""", re.IGNORECASE
)
_MIME_TOKEN = re.compile(r"[A-Za-z0-9][\w!#$&^.+-]{0,126}/[A-Za-z0-9][\w!#$&^.+-]{0,126}", re.ASCII)


def text_to_html(text: str) -> str:
    """Plain text -> HTML: escaped, preformatted, with http(s) links made clickable."""
    parts = ['<pre style="white-space: pre-wrap; word-wrap: break-word">']
    pos = 0
    for start, stop in iter_text_urls(text):
        url = html.escape(text[start:stop])
        parts.append(html.escape(text[pos:start], quote=False))
        parts.append(f'<a href="{url}">{url}</a>')
        pos = stop
    parts.append(html.escape(text[pos:], quote=False))
    parts.append("</pre>")
    return "".join(parts)


def _data_uri(att: Attachment) -> str:
    ctype = att.content_type if _MIME_TOKEN.fullmatch(att.content_type) else None
    ctype = ctype or "application/octet-stream"
    return f"data:{ctype};base64,{base64.b64encode(att.data).decode('ascii')}"


def _cid_index(msg: ParsedMessage) -> dict[str, Attachment]:
    index: dict[str, Attachment] = {}
    for att in msg.attachments:
        if att.content_id:
            for key in (att.content_id, att.content_id.lower()):
                index.setdefault(key, att)
    return index


def dirty_html(msg: ParsedMessage) -> str:
    """The HTML as sent, with ``src="cid:..."`` inlined as data: URIs of the matching
    attachments; generated from the text part when there is no HTML part."""
    if msg.html is None or (not msg.html.strip() and msg.text):
        return text_to_html(msg.text) if msg.text else ""
    index = _cid_index(msg)
    if not index or "cid:" not in msg.html.lower():
        return msg.html
    cache: dict[str, str] = {}

    def replace(m: re.Match[str]) -> str:
        ref = next((g for g in m.groups()[1:] if g is not None), "").strip()
        att = None
        for key in (ref, urllib.parse.unquote(ref)):
            att = index.get(key) or index.get(key.lower())
            if att is not None:
                break
        if att is None:
            return m.group(0)
        uri = cache.get(att.checksum)
        if uri is None:
            uri = cache[att.checksum] = _data_uri(att)
        return f'{m.group(1)}"{uri}"'

    return _CID_SRC.sub(replace, msg.html)


# ---------------------------------------------------------------------------------------
# Sanitized HTML

_TAGS = (nh3.ALLOWED_TAGS - {"map", "area"}) | {"font", "big", "tfoot", "nobr"}
_GENERIC_ATTRS = {"style", "title", "dir", "lang", "align", "valign", "width", "height"}
_ATTRS: dict[str, set[str]] = {tag: set(attrs) for tag, attrs in nh3.ALLOWED_ATTRIBUTES.items()}
_ATTRS["*"] = _GENERIC_ATTRS
for _tag, _extra in {
    "table": {"border", "cellpadding", "cellspacing", "bgcolor"},
    "td": {"bgcolor", "nowrap"},
    "th": {"bgcolor", "nowrap"},
    "tr": {"bgcolor"},
    "font": {"color", "face", "size"},
    "img": {"alt", "border"},
    "ol": {"type"},
    "ul": {"type"},
}.items():
    _ATTRS.setdefault(_tag, set()).update(_extra)
_ATTRS.pop("area", None)
# CSS properties that cannot load resources (no url(): background, list-style, content...)
_STYLE_PROPERTIES = frozenset(
    {
        "color", "background-color", "font", "font-family", "font-size", "font-style",
        "font-weight", "font-variant", "line-height", "letter-spacing", "word-spacing",
        "text-align", "text-decoration", "text-indent", "text-transform", "vertical-align",
        "white-space", "word-wrap", "word-break", "overflow-wrap", "direction",
        "margin", "margin-top", "margin-right", "margin-bottom", "margin-left",
        "padding", "padding-top", "padding-right", "padding-bottom", "padding-left",
        "border", "border-top", "border-right", "border-bottom", "border-left",
        "border-color", "border-style", "border-width", "border-collapse",
        "border-spacing", "border-radius", "width", "height", "max-width", "min-width",
        "max-height", "min-height", "display", "table-layout", "float", "clear",
        "list-style-type",
    }
)  # fmt: skip
_LINK_SCHEMES = ("http:", "https:", "mailto:", "tel:", "#")


def _attribute_filter(tag: str, attr: str, value: str) -> str | None:
    if attr == "src":
        # Only inline images survive: remote (tracking) and relative sources are dropped.
        return value if value[:11].lower() == "data:image/" else None
    if attr == "href":
        return value if value.lstrip().lower().startswith(_LINK_SCHEMES) else None
    return value


def _remote_image_filter(tag: str, attr: str, value: str) -> str | None:
    """Like :func:`_attribute_filter`, but ``<img src>`` may also be an http(s) URL."""
    if tag == "img" and attr == "src":
        lowered = value.strip().lower()
        return value if lowered.startswith(("http://", "https://", "data:image/")) else None
    return _attribute_filter(tag, attr, value)


def _cleaner(attribute_filter: Callable[[str, str, str], str | None]) -> nh3.Cleaner:
    return nh3.Cleaner(
        tags=_TAGS,
        clean_content_tags={"script", "style", "title", "template", "noscript", "xmp"},
        attributes=_ATTRS,
        attribute_filter=attribute_filter,
        strip_comments=True,
        link_rel="noopener noreferrer nofollow",
        set_tag_attribute_values={"a": {"target": "_blank"}},
        url_schemes={"http", "https", "mailto", "tel", "data"},
        filter_style_properties=_STYLE_PROPERTIES,
    )


_CLEANER = _cleaner(_attribute_filter)
_REMOTE_IMAGES_CLEANER = _cleaner(_remote_image_filter)


def sanitized_html(msg: ParsedMessage, *, remote_images: bool = False) -> str:
    """``dirty_html`` with scripts, event handlers, resource-loading CSS and remote images
    removed; links open in a new tab with rel="noopener noreferrer nofollow".

    ``remote_images`` keeps http(s) image sources (the web viewer's opt-in variant).
    """
    doc = dirty_html(msg)
    if not doc:
        return ""
    try:
        return (_REMOTE_IMAGES_CLEANER if remote_images else _CLEANER).clean(doc)
    except BaseException as exc:  # a Rust panic surfaces as a BaseException subclass
        if type(exc).__name__ != "PanicException":
            raise
        return text_to_html(text_body(msg))
