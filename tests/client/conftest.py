"""Fixtures of the client tests: :class:`mailsac.client.Client` on the session server."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from mailsac.client import Client
from tests.helpers import ServerHandle, new_account


@dataclass
class Tenant:
    """A fresh account of the session server and a client with its key."""

    account: str
    key: str
    client: Client


@pytest.fixture()
def admin_client(server: ServerHandle) -> Iterator[Client]:
    """The operator's key (the session server's admin key)."""
    with Client(server.http_url, key=server.key) as client:
        yield client


@pytest.fixture()
def tenant(server: ServerHandle) -> Iterator[Tenant]:
    account, key = new_account(server, "client")
    with Client(server.http_url, key=key) as client:
        yield Tenant(account, key, client)
