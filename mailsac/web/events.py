"""Live updates of an inbox page: Server-Sent Events fed by the message hub.

The stream carries signals, not mail: ``event: message`` (with the new message's id) when
a message the viewer may see lands in the inbox, ``event: changed`` when one is deleted.
The page then fetches its message list again, through the same visibility rules as every
page. The subscription is made before the response starts, so a client that reloads the
list when the stream opens misses nothing, and it is always removed in ``finally`` (client
gone, stream lifetime over, or the hub dropping a slow subscriber). Open streams are
counted per client IP and per key (:class:`~mailsac.api.limits.StreamCaps`); over a cap
the request is answered ``429`` with the reason.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from mailsac.api.errors import error_response
from mailsac.api.hangup import until_disconnect
from mailsac.api.limits import STREAMS, StreamCaps, TooManyStreams, client_ip
from mailsac.events import MessageDeleted, MessageStored
from mailsac.forwarding.hub import MessageHub, Subscription, SubscriptionClosed
from mailsac.policy import normalize_inbox
from mailsac.visibility import record_visible
from mailsac.web.state import Handlers, html_errors

HEARTBEAT = 15.0  # seconds between keep-alive comments (they also reveal a gone client)
LIFETIME = 300.0  # seconds before the server ends a stream; EventSource reconnects
RETRY_MS = 2000


class EventStream(Response):
    """A ``text/event-stream`` response of one inbox's events visible to one account."""

    def __init__(self, hub: MessageHub, inbox: str, account_id: str, *,
                 alive: Callable[[], bool] = lambda: True,
                 heartbeat: float = HEARTBEAT, lifetime: float = LIFETIME,
                 caps: StreamCaps | None = None, key_id: int | None = None) -> None:
        self.status_code = 200
        self.background = None
        self.raw_headers = [  # no Content-Length: the body is open-ended
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-store"),
            (b"x-accel-buffering", b"no"),
        ]
        self.hub = hub
        self.inbox = inbox
        self.account_id = account_id
        self.alive = alive  # False once the viewer's key session has ended
        self.heartbeat = heartbeat
        self.lifetime = lifetime
        self.caps = caps
        self.key_id = key_id  # None for an anonymous viewer: only the per-IP cap applies

    def _frame(self, event: object) -> bytes | None:
        if isinstance(event, MessageStored):
            record = event.record
            if record.inbox != self.inbox or not record_visible(record, self.account_id):
                return None
            return f"event: message\ndata: {json.dumps({'id': record.id})}\n\n".encode()
        if isinstance(event, MessageDeleted) and event.inbox == self.inbox:
            return b"event: changed\ndata: {}\n\n"
        return None

    async def _pump(self, subscription: Subscription, send: Send) -> None:
        while True:
            try:
                async with asyncio.timeout(self.heartbeat):  # (wait_for can eat a cancel)
                    event = await subscription.get()
            except TimeoutError:
                await send({"type": "http.response.body", "body": b": keep-alive\n\n",
                            "more_body": True})
                continue
            except SubscriptionClosed:
                return  # dropped as too slow: end the stream, the client reconnects
            if not self.alive():
                return  # signed out meanwhile: the client reconnects as who it is now
            frame = self._frame(event)
            if frame is not None:
                await send({"type": "http.response.body", "body": frame, "more_body": True})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.caps is None:
            await self._stream(scope, receive, send)
            return
        ip = client_ip(scope)
        try:
            self.caps.acquire(ip, self.key_id, STREAMS)
        except TooManyStreams as exc:
            await error_response(exc.status, str(exc), exc.headers)(scope, receive, send)
            return
        try:
            await self._stream(scope, receive, send)
        finally:
            self.caps.release(ip, self.key_id)

    async def _stream(self, scope: Scope, receive: Receive, send: Send) -> None:
        subscription = self.hub.subscribe([self.inbox], maxsize=100)
        try:
            await send({"type": "http.response.start", "status": self.status_code,
                        "headers": self.raw_headers})
            await send({"type": "http.response.body",
                        "body": f"retry: {RETRY_MS}\n: listening\n\n".encode(),
                        "more_body": True})
            pump = asyncio.create_task(self._pump(subscription, send))
            gone = asyncio.create_task(until_disconnect(receive))
            try:
                done, _ = await asyncio.wait({pump, gone}, timeout=self.lifetime,
                                             return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (pump, gone):
                    task.cancel()
                await asyncio.gather(pump, gone, return_exceptions=True)
            if pump in done and (error := pump.exception()) is not None:
                raise error
            if gone not in done:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            return  # the client went away while we were writing
        finally:
            self.hub.unsubscribe(subscription)


class Events(Handlers):
    """``GET /inbox/{email}/events``."""

    @html_errors
    async def stream(self, request: Request) -> Response:
        viewer = await self.ui.viewer(request)
        inbox = normalize_inbox(request.path_params["email"])
        mailboxes = self.ui.ctx(request).mailboxes
        await mailboxes.count_messages(viewer.key, inbox)  # 403 for another account's inbox
        sessions, sid = self.ui.sessions, viewer.session_id
        context = self.ui.ctx(request)
        return EventStream(context.hub, inbox, viewer.key.account_id,
                           alive=lambda: sid is None or sessions.get(sid) is not None,
                           caps=context.streams,
                           key_id=viewer.key.id if viewer.signed_in else None)
