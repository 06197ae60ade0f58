"""Accounts, users, reserved addresses, custom domains, inbox aliases; message ownership.

Existing keys move to a "default" account; message rows gain ``account_id`` (the owner of
private mail, NULL for public mail) plus the indexes the account-wide queries need.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_NOW = sa.func.now()


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("email", sa.Text, nullable=True),
        sa.Column("message_limit", sa.Integer, nullable=False, server_default="10000"),
        sa.Column("private_address_credits", sa.Integer, nullable=False, server_default="100"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
    )
    op.execute("INSERT INTO accounts (id) VALUES ('default')")
    op.create_table(
        "users",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("account_id", sa.Text, sa.ForeignKey("accounts.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("username", sa.Text, nullable=False, unique=True),
        sa.Column("email", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
    )
    op.add_column("api_keys", sa.Column("account_id", sa.Text,
                                        sa.ForeignKey("accounts.id", ondelete="CASCADE"),
                                        nullable=False, server_default="default"))
    op.alter_column("api_keys", "account_id", server_default=None)
    op.add_column("api_keys", sa.Column("user_id", sa.BigInteger,
                                        sa.ForeignKey("users.id", ondelete="SET NULL"),
                                        nullable=True))
    op.add_column("api_keys", sa.Column("is_admin", sa.Boolean, nullable=False,
                                        server_default=sa.text("false")))
    op.create_table(
        "domains",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("account_id", sa.Text, sa.ForeignKey("accounts.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("enablews", sa.Boolean, nullable=False, server_default=sa.text("false")),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
    )
    op.create_table(
        "addresses",
        sa.Column("id", sa.Text, primary_key=True),  # the inbox, or *@domain for a catch-all
        sa.Column("account_id", sa.Text, sa.ForeignKey("accounts.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("forward", sa.Text, nullable=True),
        sa.Column("enablews", sa.Boolean, nullable=False, server_default=sa.text("false")),
        sa.Column("webhook", sa.Text, nullable=True),
        sa.Column("webhook_slack", sa.Text, nullable=True),
        sa.Column("webhook_slack_to_from", sa.Boolean, nullable=False,
                  server_default=sa.text("false")),
        sa.Column("catch_all", sa.Text, nullable=True),
        sa.Column("info", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
    )
    op.create_index("ix_addresses_account", "addresses", ["account_id"])
    op.create_table(
        "inbox_aliases",
        sa.Column("alias", sa.Text, primary_key=True),  # local part "inbox-<hex>"
        sa.Column("inbox", sa.Text, nullable=False, unique=True),
    )
    op.add_column("messages", sa.Column("account_id", sa.Text, nullable=True))
    # Account-wide listings (GET /api/inbox, messageLimit recycling).
    op.create_index("ix_messages_account_received", "messages",
                    ["account_id", sa.text("received DESC")],
                    postgresql_where=sa.text("account_id IS NOT NULL"))
    op.create_index("ix_messages_saved_by", "messages", ["saved_by", sa.text("received DESC")],
                    postgresql_where=sa.text("saved_by IS NOT NULL"))
    op.create_index("ix_messages_domain_received", "messages",
                    ["domain", sa.text("received DESC")])
    # Age-based recycling of public mail walks this partial index oldest first.
    op.create_index("ix_messages_public_received", "messages", ["received"],
                    postgresql_where=sa.text("account_id IS NULL AND saved_by IS NULL"))


def downgrade() -> None:
    for index in ("ix_messages_public_received", "ix_messages_domain_received",
                  "ix_messages_saved_by", "ix_messages_account_received"):
        op.drop_index(index, table_name="messages")
    op.drop_column("messages", "account_id")
    op.drop_table("inbox_aliases")
    op.drop_index("ix_addresses_account", table_name="addresses")
    op.drop_table("addresses")
    op.drop_table("domains")
    op.drop_column("api_keys", "is_admin")
    op.drop_column("api_keys", "user_id")
    op.drop_column("api_keys", "account_id")
    op.drop_table("users")
    op.drop_table("accounts")
