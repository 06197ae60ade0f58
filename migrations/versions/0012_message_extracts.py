"""Codes and links extracted from each message at intake (issue 19).

A table of its own rather than a column of ``messages``: message lists and lookups never
read it (their rows stay as narrow as before), and ``ON DELETE CASCADE`` removes a
message's extract with it, whichever way the message goes (API delete, purge, retention).
Messages stored before this revision have no row; the extract endpoint computes theirs on
demand and stores it then.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "message_extracts",
        sa.Column("message_id", sa.Text(),
                  sa.ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("data", postgresql.JSONB(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("message_extracts")
