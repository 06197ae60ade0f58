"""This process's identity among the nodes that share one database.

Several ``mailsac serve`` processes (``--processes N``, or machines behind a balancer) act
as one service through PostgreSQL. Each picks a random id when it starts, so what it
publishes to the others (``NOTIFY`` payloads, shared throttle counts) can be told apart
from what it receives, and a restarted process never mistakes its predecessor's rows for
its own.
"""

from __future__ import annotations

import os
import secrets
import socket

NODE_ID: str = secrets.token_hex(6)
"""12 hex characters, new for every process start."""


def describe() -> str:
    """``host:pid:id``, for logs and the health endpoint."""
    return f"{socket.gethostname()}:{os.getpid()}:{NODE_ID}"
