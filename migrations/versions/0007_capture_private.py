"""Email Capture: the account flag ``capturePrivate`` (mail its SMTP AUTH sessions send is
starred for the account, so private to it and kept from recycling).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A constant default: PostgreSQL adds the column without rewriting the table.
    op.add_column("accounts", sa.Column("capture_private", sa.Boolean, nullable=False,
                                        server_default=sa.text("false")))


def downgrade() -> None:
    op.drop_column("accounts", "capture_private")
