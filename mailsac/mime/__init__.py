"""MIME parsing for mailsac: raw RFC 5322 bytes -> what the Mailsac API serves."""

from __future__ import annotations

from mailsac.mime.bodies import dirty_html, html_to_text, sanitized_html, text_body
from mailsac.mime.links import extract_links
from mailsac.mime.parse import (
    Address,
    Attachment,
    ParsedMessage,
    find_attachment,
    headers_json,
    headers_ordered,
    headers_plain,
    parse_message,
)

__all__ = [
    "Address",
    "Attachment",
    "ParsedMessage",
    "dirty_html",
    "extract_links",
    "find_attachment",
    "headers_json",
    "headers_ordered",
    "headers_plain",
    "html_to_text",
    "parse_message",
    "sanitized_html",
    "text_body",
]
