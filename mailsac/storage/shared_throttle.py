"""The ``throttle_shared`` table: per-node, per-bucket throttle counts (migration 0009).

Soft state in an UNLOGGED table (lost on a database crash, which only forgets recent counts).
One row per ``(cluster, namespace, key hash, bucket, node)``; a node only ever writes its own
rows, with absolute counts, so writes are idempotent and never contend with other nodes'.
Rows are read back summed over the other nodes, and deleted once their bucket has left the
window. Uses a plain asyncpg connection (the sync task's own, not the pool's).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Row = tuple[str, int, int, int, float, float]
"""``(namespace, key hash, bucket, count, bucket end, expiry)``; times in epoch seconds."""

TABLE = "throttle_shared"

_PUSH = f"""
INSERT INTO {TABLE} AS t (cluster, namespace, key_hash, bucket, node, count, ends_at, expires_at)
SELECT $1, r.ns, r.h, r.b, $2, r.c, r.e, r.x
FROM unnest($3::text[], $4::bigint[], $5::bigint[], $6::int[], $7::float8[], $8::float8[])
     AS r(ns, h, b, c, e, x)
ON CONFLICT (cluster, namespace, key_hash, bucket, node)
DO UPDATE SET count = EXCLUDED.count
"""

_PULL = f"""
SELECT namespace, key_hash, bucket, min(ends_at) AS ends_at, max(expires_at) AS expires_at,
       sum(count)::int AS count
FROM {TABLE}
WHERE cluster = $1 AND node <> $2 AND expires_at > $3
GROUP BY namespace, key_hash, bucket
ORDER BY count DESC
LIMIT $4
"""

_PURGE = f"""
DELETE FROM {TABLE} WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM {TABLE} WHERE expires_at < $1 LIMIT $2))
"""


async def push(conn: Any, cluster: str, node: str, rows: Sequence[Row]) -> None:
    """Upsert this node's ``rows`` (distinct per namespace, key hash and bucket)."""
    if rows:
        columns = (list(column) for column in zip(*rows, strict=True))
        await conn.execute(_PUSH, cluster, node, *columns)


async def pull(conn: Any, cluster: str, node: str, now: float, limit: int) -> list[Row]:
    """The other nodes' live counts in ``cluster``, summed per key and bucket, largest first,
    at most ``limit`` rows."""
    records = await conn.fetch(_PULL, cluster, node, now, limit)
    return [(r["namespace"], r["key_hash"], r["bucket"], r["count"], r["ends_at"],
             r["expires_at"]) for r in records]


async def purge(conn: Any, before: float, limit: int = 10_000) -> int:
    """Delete up to ``limit`` rows (of any cluster) that expired before ``before``."""
    status: str = await conn.execute(_PURGE, before, limit)
    return int(status.rsplit(" ", 1)[-1])
