"""Cluster-wide change notifications: committed and deleted message rows are announced
with ``NOTIFY mailsac_messages`` so every node's real-time subscribers hear of them.

One statement-level trigger per operation (with a transition table) sends, in the
committing transaction, JSON payloads of ``[id, inbox, account_id]`` items, split below
8000 bytes and tagged with the sending connection's ``mailsac.node`` and
``mailsac.cluster`` settings (each node sets them when it connects, see
:func:`mailsac.storage.db.create_engine`), so a node can skip its own and tell its
service's nodes from other services on the database. Being a trigger, it covers every
writer: the group-commit writer's COPY, the outage journal's replay, every delete path
(API, purge, release, retention) and anything added later.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# Items are grouped by their running byte length: a group holds < 6000 bytes plus one
# item (an id, an inbox and an account: a few hundred bytes), well under NOTIFY's 8000.
_NOTIFY = """
CREATE FUNCTION mailsac_notify_messages() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('mailsac_messages',
                      '{"n":' || to_json(coalesce(current_setting('mailsac.node', true), ''))::text
                      || ',"c":'
                      || to_json(coalesce(current_setting('mailsac.cluster', true), ''))::text
                      || ',"op":"' || CASE TG_OP WHEN 'INSERT' THEN 's' ELSE 'd' END
                      || '","m":[' || string_agg(item, ',' ORDER BY id) || ']}')
       FROM (SELECT id, item, sum(octet_length(item) + 1) OVER (ORDER BY id) / 6000 AS grp
               FROM (SELECT id, json_build_array(id, inbox, account_id)::text AS item
                       FROM changed) AS i
            ) AS g
      GROUP BY grp;
    RETURN NULL;
END $$;
"""


def upgrade() -> None:
    op.execute(_NOTIFY)
    op.execute("CREATE TRIGGER messages_notify_stored AFTER INSERT ON messages "
               "REFERENCING NEW TABLE AS changed FOR EACH STATEMENT "
               "EXECUTE FUNCTION mailsac_notify_messages()")
    op.execute("CREATE TRIGGER messages_notify_deleted AFTER DELETE ON messages "
               "REFERENCING OLD TABLE AS changed FOR EACH STATEMENT "
               "EXECUTE FUNCTION mailsac_notify_messages()")


def downgrade() -> None:
    op.execute("DROP TRIGGER messages_notify_deleted ON messages")
    op.execute("DROP TRIGGER messages_notify_stored ON messages")
    op.execute("DROP FUNCTION mailsac_notify_messages()")
