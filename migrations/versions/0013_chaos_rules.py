"""SMTP failure-injection rules (issue 19) and the record of injected failures.

``chaos_rules``: one row per rule (scope address/domain/global, the stage and action,
``times_left`` decremented atomically by whichever node fires it, ``fired`` counted).
``chaos_events``: recent injected failures per owned inbox, trimmed by the chaos service
(at most a bounded number per inbox, and nothing older than a week).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "chaos_rules",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("account_id", sa.Text, sa.ForeignKey("accounts.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("target", sa.Text, nullable=True),
        sa.Column("stage", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("code", sa.Integer, nullable=True),
        sa.Column("message", sa.Text, nullable=True),
        sa.Column("delay_seconds", sa.REAL, nullable=True),
        sa.Column("probability", sa.REAL, nullable=True),
        sa.Column("times_left", sa.Integer, nullable=True),
        sa.Column("fired", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("scope IN ('address', 'domain', 'global')", name="ck_chaos_scope"),
        sa.CheckConstraint("stage IN ('connect', 'mail', 'rcpt', 'data')",
                           name="ck_chaos_stage"),
        sa.CheckConstraint("action IN ('reply', 'delay', 'drop')", name="ck_chaos_action"),
    )
    op.create_index("ix_chaos_rules_target", "chaos_rules", ["scope", "target"])
    op.create_index("ix_chaos_rules_account", "chaos_rules", ["account_id"])
    op.create_index("ix_chaos_rules_expires", "chaos_rules", ["expires_at"])
    op.create_table(
        "chaos_events",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("inbox", sa.Text, nullable=False),
        sa.Column("account_id", sa.Text, sa.ForeignKey("accounts.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("rule_id", sa.Text, nullable=False),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("stage", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("reply", sa.Text, nullable=True),
        sa.Column("sender", sa.Text, nullable=True),
        sa.Column("client_ip", sa.Text, nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_chaos_events_inbox", "chaos_events", ["inbox", "id"])
    op.create_index("ix_chaos_events_at", "chaos_events", ["at"])


def downgrade() -> None:
    op.drop_table("chaos_events")
    op.drop_table("chaos_rules")
