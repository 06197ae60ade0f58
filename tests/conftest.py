"""Shared fixtures: one embedded PostgreSQL per test session and one real server process.

The server runs as ``python -m mailsac serve`` in a subprocess (real SMTP and HTTP sockets
on loopback), pointed at the session's PostgreSQL through ``DATABASE_URL``. Tests isolate
themselves by using unique inbox addresses, so nothing needs cleaning between tests.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import settings

from mailsac.bench.s3local import LocalS3
from mailsac.storage.embedded import FAST_SETTINGS, EmbeddedPostgres
from tests.helpers import ServerHandle, start_server, stop_server, unique_inbox

# No per-example deadline: CI machines are shared and noisy, and one example slowed by a
# neighbour is not a bug. Where cost matters, tests measure its growth (tests/timing.py).
settings.register_profile("mailsac", deadline=None)
settings.load_profile("mailsac")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[EmbeddedPostgres]:
    # Under /tmp, not pytest's tmp_path: its 0700 parent would break "account" mode.
    directory = tempfile.mkdtemp(prefix="mailsac-test-pg-")
    server = EmbeddedPostgres(directory, settings=FAST_SETTINGS)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def database_url(pg_server: EmbeddedPostgres) -> str:
    """A migrated database, shared by the server process and in-process tests."""
    import asyncio

    from mailsac.storage.db import ensure_database, run_migrations

    url = os.environ.get("TEST_DATABASE_URL") or pg_server.url("mailsac_test")
    asyncio.run(ensure_database(url))
    run_migrations(url)
    return url


@pytest.fixture(scope="session")
def server(database_url: str) -> Iterator[ServerHandle]:
    data_dir = Path(tempfile.mkdtemp(prefix="mailsac-test-data-"))
    handle = start_server(data_dir, {"DATABASE_URL": database_url})
    yield handle
    code = stop_server(handle)
    assert code == 0, f"server exited with {code}:\n{handle.log()}"
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture()
def api(server: ServerHandle) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.http_url, headers={"Mailsac-Key": server.key},
                      timeout=30) as client:
        yield client


@pytest.fixture()
def anon(server: ServerHandle) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.http_url, timeout=30) as client:
        yield client


@pytest.fixture()
def inbox() -> str:
    return unique_inbox()




@pytest.fixture(scope="session")
def s3_server() -> Iterator[LocalS3]:
    """An S3 API server (moto) on 127.0.0.1 with one bucket, for the s3 blob backend."""
    s3 = LocalS3(bucket="mailsac-test")
    s3.start()
    yield s3
    s3.stop()


@pytest.fixture(scope="session")
def s3_endpoint(s3_server: LocalS3) -> dict[str, str]:
    """The MAILSAC_* settings (an env dict) of a node storing blobs in :func:`s3_server`."""
    return s3_server.env()
