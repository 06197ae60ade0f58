"""Initial schema: API keys and message metadata.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_EMPTY_JSON = sa.text("'[]'::jsonb")


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("key_hash", sa.LargeBinary, nullable=False, unique=True),
        sa.Column("key_prefix", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "messages",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("inbox", sa.Text, nullable=False),
        sa.Column("original_inbox", sa.Text, nullable=False),
        sa.Column("domain", sa.Text, nullable=False),
        sa.Column("received", sa.DateTime(timezone=True), nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("blob_key", sa.Text, nullable=False),
        sa.Column("subject", sa.Text, nullable=False, server_default=""),
        sa.Column("from_addrs", JSONB, nullable=False, server_default=_EMPTY_JSON),
        sa.Column("to_addrs", JSONB, nullable=False, server_default=_EMPTY_JSON),
        sa.Column("cc_addrs", JSONB, nullable=False, server_default=_EMPTY_JSON),
        sa.Column("bcc_addrs", JSONB, nullable=False, server_default=_EMPTY_JSON),
        sa.Column("attachments", JSONB, nullable=True),
        sa.Column("links", JSONB, nullable=False, server_default=_EMPTY_JSON),
        sa.Column("ip", sa.Text, nullable=False, server_default=""),
        sa.Column("via", sa.Text, nullable=False, server_default=""),
        sa.Column("mail_from", sa.Text, nullable=False, server_default=""),
        sa.Column("message_id", sa.Text, nullable=True),
        sa.Column("folder", sa.Text, nullable=False, server_default="inbox"),
        sa.Column("labels", JSONB, nullable=False, server_default=_EMPTY_JSON),
        sa.Column("read", sa.Boolean, nullable=False, server_default=sa.text("false")),
        sa.Column("rtls", sa.Boolean, nullable=False, server_default=sa.text("false")),
        sa.Column("saved_by", sa.Text, nullable=True),
        sa.Column("spam", sa.REAL, nullable=True),
    )
    # Inbox listing: newest first, `until` pagination walks this index backwards.
    op.create_index(
        "ix_messages_inbox_received", "messages",
        ["inbox", sa.text("received DESC"), sa.text("id DESC")],
    )
    # Deleting a row must find the other rows sharing its blob; the orphan sweep too.
    op.create_index("ix_messages_blob_key", "messages", ["blob_key"])


def downgrade() -> None:
    op.drop_index("ix_messages_blob_key", table_name="messages")
    op.drop_index("ix_messages_inbox_received", table_name="messages")
    op.drop_table("messages")
    op.drop_table("api_keys")
