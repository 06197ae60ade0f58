"""Tenant isolation: webhook deliveries belong to an account and lose their payload when
the message goes; inbox aliases are charged to the account that asked for them; starred
mail taken over by a reservation goes back to the account that starred it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# Every path that deletes message rows (API delete, purge, release, retention, the orphan
# sweep, and anything added later) drops the payload of their webhook deliveries: one
# statement-level trigger with a transition table, so a bulk delete costs one join.
_DROP_PAYLOADS = """
CREATE FUNCTION mailsac_drop_webhook_payloads() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE webhook_deliveries AS d
       SET payload = NULL,
           status = CASE WHEN d.status = 'pending' THEN 'cancelled' ELSE d.status END,
           last_error = CASE WHEN d.status = 'pending'
                             THEN 'message deleted before delivery' ELSE d.last_error END,
           updated_at = now()
      FROM gone
     WHERE d.message_id = gone.id AND d.payload IS NOT NULL;
    RETURN NULL;
END $$;
"""

_TRIGGER = """
CREATE TRIGGER messages_drop_webhook_payloads
AFTER DELETE ON messages REFERENCING OLD TABLE AS gone
FOR EACH STATEMENT EXECUTE FUNCTION mailsac_drop_webhook_payloads();
"""


def upgrade() -> None:
    op.add_column("webhook_deliveries", sa.Column("account_id", sa.Text, nullable=True))
    # Existing rows: the current holder of the address is the best guess; rows of
    # addresses nobody holds any more stay NULL and are shown to nobody.
    op.execute("UPDATE webhook_deliveries AS d SET account_id = a.account_id "
               "FROM addresses AS a WHERE a.id = d.address")
    op.alter_column("webhook_deliveries", "payload", nullable=True)
    op.create_index("ix_webhook_deliveries_message", "webhook_deliveries", ["message_id"])
    op.create_index("ix_webhook_deliveries_payload_age", "webhook_deliveries", ["created_at"],
                    postgresql_where=sa.text("payload IS NOT NULL"))
    op.create_index("ix_webhook_deliveries_finished", "webhook_deliveries", ["updated_at"],
                    postgresql_where=sa.text("status <> 'pending'"))
    # Payloads of messages that are already gone.
    op.execute("UPDATE webhook_deliveries AS d SET payload = NULL, "
               "status = CASE WHEN d.status = 'pending' THEN 'cancelled' ELSE d.status END "
               "WHERE NOT EXISTS (SELECT 1 FROM messages AS m WHERE m.id = d.message_id)")
    op.execute(_DROP_PAYLOADS)
    op.execute(_TRIGGER)

    op.add_column("inbox_aliases", sa.Column("created_by", sa.Text, nullable=True))
    op.create_index("ix_inbox_aliases_created_by", "inbox_aliases", ["created_by"],
                    postgresql_where=sa.text("created_by IS NOT NULL"))

    # Starred mail a reservation took from the account that starred it (finding 9).
    op.execute("UPDATE messages SET account_id = NULL WHERE saved_by IS NOT NULL "
               "AND account_id IS NOT NULL AND saved_by <> account_id")

    op.create_index("ix_spam_feedback_account", "spam_feedback", ["account_id", "is_spam"])


def downgrade() -> None:
    op.drop_index("ix_spam_feedback_account", table_name="spam_feedback")
    op.drop_index("ix_inbox_aliases_created_by", table_name="inbox_aliases")
    op.drop_column("inbox_aliases", "created_by")
    op.execute("DROP TRIGGER messages_drop_webhook_payloads ON messages")
    op.execute("DROP FUNCTION mailsac_drop_webhook_payloads()")
    op.drop_index("ix_webhook_deliveries_finished", table_name="webhook_deliveries")
    op.drop_index("ix_webhook_deliveries_payload_age", table_name="webhook_deliveries")
    op.drop_index("ix_webhook_deliveries_message", table_name="webhook_deliveries")
    op.execute("DELETE FROM webhook_deliveries WHERE payload IS NULL")
    op.alter_column("webhook_deliveries", "payload", nullable=False)
    op.drop_column("webhook_deliveries", "account_id")
