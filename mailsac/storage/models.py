"""SQLAlchemy Core table definitions (the schema itself is owned by Alembic migrations)."""

from __future__ import annotations

from sqlalchemy import (
    REAL,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("name", Text, nullable=False),
    # sha256 of the key: keys are 130+ random bits, so a fast hash is enough (no brute force).
    Column("key_hash", LargeBinary, nullable=False, unique=True),
    Column("key_prefix", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
)

messages = Table(
    "messages",
    metadata,
    Column("id", Text, primary_key=True),
    Column("inbox", Text, nullable=False),
    Column("original_inbox", Text, nullable=False),
    Column("domain", Text, nullable=False),
    Column("received", DateTime(timezone=True), nullable=False),
    Column("size", Integer, nullable=False),
    # Raw bytes live in the blob directory under this key; one blob may serve several rows
    # (one per recipient of the same SMTP transaction).
    Column("blob_key", Text, nullable=False),
    Column("subject", Text, nullable=False, server_default=""),
    Column("from_addrs", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("to_addrs", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("cc_addrs", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("bcc_addrs", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("attachments", JSONB, nullable=True),
    Column("links", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("ip", Text, nullable=False, server_default=""),
    Column("via", Text, nullable=False, server_default=""),
    Column("mail_from", Text, nullable=False, server_default=""),
    Column("message_id", Text, nullable=True),
    Column("folder", Text, nullable=False, server_default="inbox"),
    Column("labels", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("read", Boolean, nullable=False, server_default=text("false")),
    Column("rtls", Boolean, nullable=False, server_default=text("false")),
    Column("saved_by", Text, nullable=True),
    Column("spam", REAL, nullable=True),
)
