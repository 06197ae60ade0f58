"""Body renderings served by the API: plain text, "dirty" HTML and sanitized HTML."""

from __future__ import annotations

import base64
import html
import re
import urllib.parse
from collections.abc import Callable

import nh3

from mailsac.mime.css import STYLE_PROPERTIES, sanitize_style
from mailsac.mime.htmlscan import has_remote_images, html_to_text, markup_depth
from mailsac.mime.links import iter_text_urls
from mailsac.mime.parse import Attachment, ParsedMessage

__all__ = [
    "MAX_MARKUP_DEPTH", "dirty_html", "has_remote_images", "html_to_text", "output_limit",
    "sanitized_html", "text_body", "text_to_html",
]

# The sanitizer's HTML5 tree builder costs O(depth) per tag; deeper documents are shown
# as their text instead (real mail nests a few dozen levels).
MAX_MARKUP_DEPTH = 256
# No rendering may be larger than this multiple of what it was made from (plus a floor):
# sanitizing adds attributes to every link, so "<a>" * n would otherwise grow ~19x.
OUTPUT_FACTOR = 4
OUTPUT_FLOOR = 1024 * 1024


def output_limit(source_chars: int) -> int:
    """Largest rendering (in characters) made from ``source_chars`` characters."""
    return OUTPUT_FLOOR + OUTPUT_FACTOR * source_chars

def text_body(msg: ParsedMessage) -> str:
    """The text part, or text derived from the HTML part, or ""."""
    if msg.text and msg.text.strip():
        return msg.text
    if msg.html:
        return html_to_text(msg.html)
    return msg.text or ""


# ---------------------------------------------------------------------------------------
# Dirty HTML

# Possessive/bounded runs: each candidate "src" is scanned a bounded distance, once.
_CID_SRC = re.compile(
    r"""(\bsrc\s*+=\s*+)(?:"\s*+cid:([^"]{0,1000})"|'\s*+cid:([^']{0,1000})'"""
    r"""|cid:([^\s>"']{0,1000}))""",
    re.IGNORECASE,
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
    attachments; generated from the text part when there is no HTML part.

    Each attachment is inlined at most once (its first reference); later references to it
    stay ``cid:`` as sent. So the result is at most the HTML part plus 4/3 of the
    attachments' bytes: a message cannot multiply itself by repeating a reference.
    """
    if msg.html is None or (not msg.html.strip() and msg.text):
        return text_to_html(msg.text) if msg.text else ""
    index = _cid_index(msg)
    if not index or "cid:" not in msg.html.lower():
        return msg.html
    inlined: set[str] = set()

    def replace(m: re.Match[str]) -> str:
        ref = next((g for g in m.groups()[1:] if g is not None), "").strip()
        att = None
        for key in (ref, urllib.parse.unquote(ref)):
            att = index.get(key) or index.get(key.lower())
            if att is not None:
                break
        if att is None or att.checksum in inlined:
            return m.group(0)
        inlined.add(att.checksum)
        return f'{m.group(1)}"{_data_uri(att)}"'

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
    "hr": {"color", "size", "noshade"},
    "col": {"bgcolor"},
    "ol": {"type"},
    "ul": {"type"},
}.items():
    _ATTRS.setdefault(_tag, set()).update(_extra)
_ATTRS.pop("area", None)
# A <body> with attributes (a dark-mode mail's background and text colour) becomes a <div>:
# the fragment parser drops <body> and its attributes, which would leave the mail's light
# text colours on the viewer's white.
_BODY_WITH_ATTRIBUTES = re.compile(r"<body(?=[\s/])", re.IGNORECASE)
_LINK_SCHEMES = ("http:", "https:", "mailto:", "tel:", "#")


def _attribute_filter(tag: str, attr: str, value: str) -> str | None:
    if attr == "style":
        # Value-level CSS filtering (mailsac.mime.css); nh3 then re-checks property names.
        return sanitize_style(value)
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
        filter_style_properties=STYLE_PROPERTIES,
    )


_CLEANER = _cleaner(_attribute_filter)
_REMOTE_IMAGES_CLEANER = _cleaner(_remote_image_filter)


def sanitized_html(msg: ParsedMessage, *, remote_images: bool = False) -> str:
    """``dirty_html`` with scripts, event handlers, resource-loading CSS and remote images
    removed; links open in a new tab with rel="noopener noreferrer nofollow".

    Documents nested deeper than :data:`MAX_MARKUP_DEPTH` are rendered from their text (the
    sanitizer would take quadratic time), and the result never exceeds
    :func:`output_limit` of the input.

    ``remote_images`` keeps http(s) image sources (the web viewer's opt-in variant).
    """
    doc = dirty_html(msg)
    if not doc:
        return ""
    doc = _body_as_div(doc)
    if markup_depth(doc, stop_at=MAX_MARKUP_DEPTH) >= MAX_MARKUP_DEPTH:
        return _text_fallback(msg)
    try:
        clean = (_REMOTE_IMAGES_CLEANER if remote_images else _CLEANER).clean(doc)
    except BaseException as exc:  # a Rust panic surfaces as a BaseException subclass
        if type(exc).__name__ != "PanicException":
            raise
        return _text_fallback(msg)
    return _truncate_html(clean, output_limit(len(doc)))


def _body_as_div(doc: str) -> str:
    """``doc`` with its first ``<body ...>`` renamed ``<div ...>`` if it carries a style
    or a background colour (at most 4096 characters of the tag are looked at)."""
    found = _BODY_WITH_ATTRIBUTES.search(doc)
    if found is None:
        return doc
    tag = doc[found.end() : found.end() + 4096].partition(">")[0].lower()
    if "style" not in tag and "bgcolor" not in tag:
        return doc
    return f"{doc[: found.start()]}<div{doc[found.end():]}"


def _text_fallback(msg: ParsedMessage) -> str:
    """The text body as (already safe) HTML, for documents the sanitizer cannot take."""
    text = text_body(msg)
    return _truncate_html(text_to_html(text), output_limit(len(text)))


def _truncate_html(doc: str, limit: int) -> str:
    """``doc`` cut before the last tag that starts within ``limit`` characters."""
    if len(doc) <= limit:
        return doc
    cut = doc.rfind("<", 0, limit)
    return doc[: cut if cut > 0 else limit]
