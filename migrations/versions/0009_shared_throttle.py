"""Throttle counts shared between nodes (mailsac.storage.shared_throttle).

UNLOGGED: the counts are soft state (a crash only forgets the last minute of counts), and
writing them costs no WAL. A low fillfactor leaves room for HOT updates: a node rewrites
the count of its current bucket about once per second while a sender is busy.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE UNLOGGED TABLE throttle_shared (
            cluster text NOT NULL,
            namespace text NOT NULL,
            key_hash bigint NOT NULL,
            bucket bigint NOT NULL,
            node text NOT NULL,
            count integer NOT NULL,
            ends_at double precision NOT NULL,
            expires_at double precision NOT NULL,
            PRIMARY KEY (cluster, namespace, key_hash, bucket, node)
        ) WITH (fillfactor = 50)
    """)
    op.execute("CREATE INDEX throttle_shared_live ON throttle_shared (cluster, expires_at)")


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS throttle_shared")
