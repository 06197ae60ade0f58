"""Serialisers: records → Mailsac's JSON shapes (key names and order as Mailsac sends them)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from mailsac.storage import MessageRecord


def iso_ms(value: datetime) -> str:
    """``2026-11-24T22:51:48.123Z``: UTC, millisecond precision, Z suffix."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


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
        "spam": record.spam,
    }
