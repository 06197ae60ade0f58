"""The outage journal: message metadata kept durably on disk while PostgreSQL is away.

When a metadata commit fails because the database is unreachable, the batch is appended
to ``journal/<sequence>.jsonl`` (written, fsynced, renamed, directory fsynced) and the
messages are acknowledged: their blobs are already durable, and this file is enough to
index them later. While anything is journaled, new batches are journaled too, so the
order of arrival is kept. A replayer inserts the files in order once the database is
back, with ``ON CONFLICT DO NOTHING`` on every primary key (idempotent: a crash during
replay just replays the file again), then deletes each file.

Limits: the journal refuses new batches once the outage is older than ``max_age`` or the
files exceed ``max_bytes``; SMTP then answers 421 instead of promising what it cannot keep.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from mailsac.errors import JournalFull, StorageUnavailable
from mailsac.storage.messages import MessageRecord
from mailsac.storage.models import messages
from mailsac.storage.webhooks import NewDelivery
from mailsac.storage.webhooks import insert_rows as insert_delivery_rows

log = logging.getLogger(__name__)


def _encode(record: MessageRecord) -> dict[str, Any]:
    row = asdict(record)
    row["received"] = record.received.isoformat()
    return row


def _decode(row: dict[str, Any]) -> MessageRecord:
    row = dict(row)
    row["received"] = datetime.fromisoformat(row["received"])
    return MessageRecord(**row)


def _encode_line(entry: dict[str, Any]) -> bytes:
    return (json.dumps(entry, separators=(",", ":")) + "\n").encode()


def _read_batches(path: Path) -> list[dict[str, Any]]:
    batches = [json.loads(line) for line in path.read_bytes().splitlines() if line]
    for batch in batches:
        for row in batch["deliveries"]:
            if "payload" in row:  # written by a version that kept payloads as objects
                row["payload_json"] = json.dumps(row.pop("payload"))
    return batches


def pending_under(root: Path) -> bool:
    """Does any journal in ``root`` or below it (``serve --processes N`` gives each child
    its own sub-directory) still hold batches? Their blobs have no rows yet."""
    return root.is_dir() and any(root.rglob("*.jsonl"))


class Journal:
    """Append-only, fsynced batches of rows awaiting the database."""

    def __init__(self, directory: Path, *, max_age: float = 600.0,
                 max_bytes: int = 512 * 1024 * 1024) -> None:
        self.directory = Path(directory)
        self.max_age = max_age
        self.max_bytes = max_bytes
        self.outage_since: float | None = None
        self._sequence = 0
        self.replayed_batches = 0

    def files(self) -> list[Path]:
        if not self.directory.exists():
            return []
        return sorted(self.directory.glob("*.jsonl"))

    @property
    def pending(self) -> bool:
        return bool(self.files())

    def size(self) -> int:
        return sum(p.stat().st_size for p in self.files())

    def _write_sync(self, lines: bytes) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        existing = self.files()
        if existing:
            self._sequence = max(self._sequence, int(existing[-1].stem))
        self._sequence += 1
        final = self.directory / f"{self._sequence:012d}.jsonl"
        tmp = final.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(lines)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return final

    async def append(self, records: Sequence[MessageRecord],
                     deliveries: Sequence[NewDelivery]) -> None:
        """Durably keep one batch; raise JournalFull beyond the configured limits."""
        now = time.monotonic()
        if self.outage_since is None:
            self.outage_since = now
            log.error("database unavailable: journaling incoming mail in %s", self.directory)
        if now - self.outage_since > self.max_age:
            raise JournalFull("the database has been unavailable for too long")
        entry = {"messages": [_encode(r) for r in records],
                 "deliveries": [d.as_row() for d in deliveries]}
        # Webhook payloads hold whole messages: encode off the event loop.
        line = await asyncio.to_thread(_encode_line, entry)
        if self.size() + len(line) > self.max_bytes:
            raise JournalFull("the outage journal is full")
        try:
            await asyncio.to_thread(self._write_sync, line)
        except OSError as exc:
            raise StorageUnavailable(f"cannot write the outage journal: {exc}") from exc

    async def replay(self, engine: AsyncEngine) -> int:
        """Index every journaled batch in order; return how many files were replayed."""
        replayed = 0
        for path in self.files():
            batches = await asyncio.to_thread(_read_batches, path)
            async with engine.begin() as conn:
                for batch in batches:
                    rows = [_decode(m).as_row() for m in batch["messages"]]
                    if not rows:
                        continue
                    inserted = {r[0] for r in await conn.execute(
                        insert(messages).values(rows).on_conflict_do_nothing()
                        .returning(messages.c.id))}
                    # Deliveries only for rows this replay inserted: replaying a file twice
                    # (a crash before its deletion) must not send a webhook twice.
                    fresh = [d for d in batch["deliveries"] if d["message_id"] in inserted]
                    await insert_delivery_rows(conn, fresh)
            await asyncio.to_thread(path.unlink)
            replayed += 1
            self.replayed_batches += 1
        if replayed:
            log.info("outage journal replayed: %d file(s) indexed", replayed)
        if not self.files():
            self.outage_since = None
        return replayed
