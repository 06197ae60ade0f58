"""Cluster fixtures: several ``mailsac serve`` nodes on the session database.

``cluster(n, env)`` starts ``n`` nodes (in parallel) that share the session's PostgreSQL
and, unless ``share_blobs=False``, one local blob directory (so any node can read any
message; pass ``MAILSAC_BLOB_BACKEND`` & co. in ``env`` for another shared store), and
one ``MAILSAC_CLUSTER`` name (one service: shared throttle counts, one retention runner;
pass another in ``env`` to start a second service). Every
node is stopped at the end of the test; a node a test killed is just cleaned up. Remember
that every server of the session (the session-wide ``server`` too) shares the database:
use unique inboxes.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.helpers import ServerHandle, start_private_server, stop_private_server

StartCluster = Callable[..., list[ServerHandle]]


@pytest.fixture()
def cluster(database_url: str) -> Iterator[StartCluster]:
    started: list[ServerHandle] = []
    blob_dir = tempfile.mkdtemp(prefix="mailsac-test-cluster-blobs-")
    name = f"test-cluster-{uuid.uuid4().hex[:12]}"

    def start(n: int = 3, env: dict[str, str] | None = None, *,
              share_blobs: bool = True) -> list[ServerHandle]:
        settings = {"MAILSAC_CLUSTER": name}
        if share_blobs:
            settings["MAILSAC_BLOB_DIR"] = blob_dir
        settings.update(env or {})
        with ThreadPoolExecutor(n) as pool:
            futures = [pool.submit(start_private_server, database_url, settings,
                                   "mailsac-test-node-") for _ in range(n)]
            errors: list[BaseException] = []
            for future in futures:
                try:
                    started.append(future.result())
                except Exception as exc:  # the others still get stopped at teardown
                    errors.append(exc)
            if errors:
                raise errors[0]
        return started[-n:]

    yield start
    problems = []
    for node in started:
        if node.proc.poll() is not None:  # killed by the test
            shutil.rmtree(node.data_dir, ignore_errors=True)
            continue
        try:
            stop_private_server(node)
        except AssertionError as exc:
            problems.append(str(exc))
    shutil.rmtree(blob_dir, ignore_errors=True)
    assert not problems, "\n".join(problems)



@pytest.fixture(params=["local", "postgres", "s3"])
def shared_store(request: pytest.FixtureRequest) -> dict[str, str]:
    """Settings of one shared blob store for every node of a cluster, for each backend:
    the fixture's shared directory (``local``), PostgreSQL itself, or the test S3 server."""
    if request.param == "local":
        return {}
    if request.param == "postgres":
        return {"MAILSAC_BLOB_BACKEND": "postgres"}
    return dict(request.getfixturevalue("s3_endpoint"))
