"""The asyncio client against the real session server (same flows as the sync one)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from mailsac.client import (
    AsyncClient,
    AsyncMessage,
    NotFoundError,
    UnauthorizedError,
    WaitTimeout,
)
from tests.helpers import ServerHandle, deliver, new_account, unique_inbox


async def test_async_inbox_round_trip(server: ServerHandle) -> None:
    email = unique_inbox()
    async with AsyncClient(server.http_url, key=server.key) as client:
        inbox = client.inbox(email)
        waiter = asyncio.create_task(inbox.wait(subject="hello", timeout=30))
        await asyncio.sleep(0.2)
        await asyncio.to_thread(deliver, server, email, subject="Hello async",
                                body="line one\nhttps://example.test/x")
        msg = await waiter
        assert isinstance(msg, AsyncMessage) and msg.subject == "Hello async"
        assert "line one" in await msg.text()
        assert "Subject: Hello async" in (await msg.raw()).decode()
        assert (await msg.headers())["subject"] == ["Hello async"]
        assert await msg.attachments() == []
        assert [m.id for m in await inbox.messages()] == [msg.id]
        assert await inbox.count() == 1
        assert (await inbox.get(msg.id)).subject == "Hello async"
        assert await msg.add_label("x") == ["x"]
        assert await msg.mark_read() is True
        assert await msg.move("spam") == "spam"
        await inbox.purge()
        assert await inbox.count() == 0
        with pytest.raises(NotFoundError):
            await inbox.get(msg.id)


async def test_async_expect_wait_many_and_timeout(server: ServerHandle) -> None:
    email = unique_inbox()
    async with AsyncClient(server.http_url, key=server.key) as client:
        inbox = client.inbox(email)
        await asyncio.to_thread(deliver, server, email, subject="code old")
        async with inbox.expect(subject="code", timeout=30) as pending:
            await asyncio.to_thread(deliver, server, email, subject="code new")
        assert (await pending.result()).subject == "code new"
        with pytest.raises(WaitTimeout) as timed_out:
            await inbox.wait(subject="never", timeout=0.3)
        assert "'code new'" in str(timed_out.value) and "'code old'" in str(timed_out.value)


async def test_async_account_and_errors(server: ServerHandle) -> None:
    account, key = new_account(server, "async")
    email = unique_inbox()
    async with AsyncClient(server.http_url, key=key) as client:
        assert (await client.me()).id == account
        reserved = await client.inbox(email).reserve(info="async")
        assert reserved.owner == account
        assert [a.email for a in await client.addresses()] == [email]
        assert (await client.validate("a@example.test")).valid_format is True
        assert (await client.stats()).addresses == [email]
        released = await client.inbox(email).release()
        assert released.email == email
    async with AsyncClient(server.http_url, key=f"k_{uuid.uuid4().hex}") as wrong:
        with pytest.raises(UnauthorizedError):
            await wrong.me()
