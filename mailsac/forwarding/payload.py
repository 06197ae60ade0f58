"""The JSON a push channel sends: the message object plus bodies, raw source and headers
(Mailsac's WebSocket/webhook payload, contract §2.1 and §3).

Building and encoding a payload costs time in proportion to the message (its text body may
be derived from megabytes of HTML; the raw source is part of it), so callers run
:func:`encode_message_payload` and :func:`encode_json` in a worker thread, never on the
event loop.
"""

from __future__ import annotations

import json
from typing import Any

from mailsac.messagejson import message_json
from mailsac.mime import ParsedMessage, text_body
from mailsac.storage import MessageRecord


def headers_object(parsed: ParsedMessage) -> dict[str, str | list[str]]:
    """Lower-cased header names; a string, or a list when the header repeats."""
    out: dict[str, str | list[str]] = {}
    for name, value in parsed.headers:
        key = name.lower()
        current = out.get(key)
        if current is None:
            out[key] = value
        elif isinstance(current, list):
            current.append(value)
        else:
            out[key] = [current, value]
    return out


def message_payload(record: MessageRecord, parsed: ParsedMessage, raw: bytes,
                    text: str | None = None) -> dict[str, Any]:
    """The payload object; ``text`` is the text body when the caller already has it."""
    payload = message_json(record)
    payload.update(
        text=text_body(parsed) if text is None else text,
        html=parsed.html or "",
        raw=raw.decode("utf-8", errors="replace"),
        headers=headers_object(parsed),
        messageId=parsed.message_id,
    )
    return payload


def encode_json(value: Any) -> str:
    """Compact JSON text (for payloads: in a worker thread when they can be large)."""
    return json.dumps(value, separators=(",", ":"))


def encode_message_payload(record: MessageRecord, parsed: ParsedMessage, raw: bytes,
                           text: str | None = None) -> str:
    """:func:`message_payload` as JSON text."""
    return encode_json(message_payload(record, parsed, raw, text))


def slack_payload(record: MessageRecord, link: str, to_from: bool) -> dict[str, Any]:
    """A Slack incoming-webhook body: subject, sender and a link to the web viewer."""
    sender = ", ".join(a.get("address", "") for a in record.from_addrs) or "(no sender)"
    subject = record.subject or "(no subject)"
    lines = [f"*New mail for {record.inbox}*", f"*Subject:* {subject}"]
    if to_from:
        recipients = ", ".join(a.get("address", "") for a in record.to_addrs) or record.inbox
        lines += [f"*From:* {sender}", f"*To:* {recipients}"]
    lines.append(f"<{link}|Open the message>")
    return {"text": "\n".join(lines),
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}}]}
