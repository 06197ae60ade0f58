"""Templates, their filters, and the one extra body rendering the viewer needs.

The "remote images" body variant is :func:`mailsac.mime.sanitized_html` with
``remote_images=True``: ``<img src>`` may also be an ``http(s)`` URL. It is only produced when the
reader asks for it, and it is served with a sandboxing CSP that allows images and never
scripts, so it is as inert as the default body apart from the images it loads.
"""

from __future__ import annotations

import urllib.parse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from starlette.templating import Jinja2Templates

from mailsac.mime import sanitized_html
from mailsac.mime.htmlscan import has_remote_images as _html_has_remote_images
from mailsac.mime.parse import ParsedMessage
from mailsac.timeutil import iso_ms

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
SPAM_THRESHOLD = 0.5

def html_with_remote_images(msg: ParsedMessage) -> str:
    """Sanitized HTML that keeps ``http(s)`` image sources (and nothing else more)."""
    return sanitized_html(msg, remote_images=True)


def has_remote_images(msg: ParsedMessage) -> bool:
    """Whether the HTML part refers to images on other servers (shows the toggle)."""
    return _html_has_remote_images(msg.html)  # a linear scan (see mailsac.mime.htmlscan)


def path_part(value: str) -> str:
    """``value`` quoted for one path segment of a URL."""
    return urllib.parse.quote(value, safe="@+!$&'*=~")


def human_size(size: int | None) -> str:
    if size is None:
        return ""
    value = float(size)
    for unit in ("bytes", "KB", "MB"):
        if value < 1024 or unit == "MB":
            return f"{int(value)} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} bytes"  # pragma: no cover


def when(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def addresses(value: list[dict[str, str]] | None) -> str:
    """``[{name, address}]`` -> ``Name <address>, other@x`` (escaped by the template)."""
    parts = []
    for item in value or []:
        name, address = item.get("name", ""), item.get("address", "")
        parts.append(f"{name} <{address}>" if name and address else name or address)
    return ", ".join(parts)


def is_spam(record: Any) -> bool:
    spam = getattr(record, "spam", None)
    return getattr(record, "folder", "") == "spam" or (spam is not None
                                                       and spam > SPAM_THRESHOLD)


def is_web_url(value: str) -> bool:
    return value.lower().startswith(("http://", "https://"))


def spam_score(value: float | None) -> str:
    return "not scored" if value is None else f"{value:.2f}"


def make_templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(
        q=path_part, size=human_size, when=when, iso=iso_ms, addrs=addresses,
        spam_score=spam_score,
    )
    env.tests["spam"] = is_spam
    env.tests["web_url"] = is_web_url
    return Jinja2Templates(env=env)
