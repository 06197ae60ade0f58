"""Mailsac's message object, shared by the HTTP API, WebSocket frames and webhooks."""

from __future__ import annotations

from typing import Any

from mailsac.storage import MessageRecord
from mailsac.timeutil import iso_ms


def message_json(record: MessageRecord) -> dict[str, Any]:
    """Mailsac's message object (§2.1 of the API contract)."""
    return {
        "_id": record.id,
        "from": record.from_addrs,
        "to": record.to_addrs,
        "cc": record.cc_addrs,
        "bcc": record.bcc_addrs,
        "subject": record.subject,
        "savedBy": record.saved_by,
        "originalInbox": record.original_inbox,
        "inbox": record.inbox,
        "domain": record.domain,
        "received": iso_ms(record.received),
        "size": record.size,
        "attachments": record.attachments,
        "ip": record.ip,
        "via": record.via,
        "folder": record.folder,
        "labels": record.labels,
        "read": record.read,
        "rtls": record.rtls,
        "links": record.links,
        # REAL column: round away float32 noise (0.6923000216 -> 0.6923).
        "spam": None if record.spam is None else round(record.spam, 4),
    }
