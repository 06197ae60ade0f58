"""Index for the operator already-taught lookup on spam_feedback.

``SpamFeedback._taught`` asks, before every operator teaching (admin feedback, the
``spam learn`` CLI, ``POST /api/admin/spam/learn``), whether the operator already taught
this message with this label::

    SELECT id FROM spam_feedback
    WHERE account_id IS NULL AND message_id = :id AND is_spam = :label LIMIT 1

Without an index that is a scan of up to ``MAILSAC_SPAM_FEEDBACK_MAX_ROWS`` rows per
message taught (bulk seeding of N messages: O(N * rows)). A partial index over the
operator's rows only (``account_id IS NULL``) keyed by ``(message_id, is_spam)`` answers it
with one index probe and stays out of the way of tenant feedback, which
``ix_spam_feedback_account`` already serves.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_spam_feedback_operator_taught",
        "spam_feedback",
        ["message_id", "is_spam"],
        postgresql_where=sa.text("account_id IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_spam_feedback_operator_taught", table_name="spam_feedback")
