"""Push: the WebSocket feed and webhook delivery history (waits: :mod:`mailsac.api.waits`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.websockets import WebSocket, WebSocketDisconnect

from mailsac.api.context import ApiContext, inbox_param, require_key
from mailsac.api.limits import STREAMS, TooManyStreams, client_ip
from mailsac.errors import InvalidAddress, StorageUnavailable, Unauthorized
from mailsac.events import MessageStored
from mailsac.forwarding.hub import SubscriptionClosed
from mailsac.forwarding.payload import encode_json, message_payload
from mailsac.mime import ParsedMessage
from mailsac.policy import normalize_domain, normalize_inbox
from mailsac.storage.messages import MessageRecord
from mailsac.timeutil import iso_ms

log = logging.getLogger(__name__)


def _ctx(conn: Request | WebSocket) -> ApiContext:
    context: ApiContext = conn.app.state.ctx
    return context


async def _refuse(ws: WebSocket, status: int, message: str) -> None:
    await ws.send_json({"status": status, "msg": message})
    await ws.close(code=4000 + status, reason=message[:120])


def _watchable(context: ApiContext, account_id: str, items: list[str]
               ) -> tuple[list[str], list[str], str | None]:
    """Split into (addresses, domains); the error text if one may not be watched."""
    addresses, domains = [], []
    directory = context.addresses.directory
    for item in items:
        if "@" in item:
            inbox = normalize_inbox(item)
            record = directory.addresses.get(inbox)
            if record is None or record.account_id != account_id:
                return [], [], f"{inbox} is not a private address of your account"
            if not record.enablews:
                return [], [], f"{inbox} does not have enablews turned on"
            addresses.append(inbox)
        else:
            item = normalize_domain(item)
            domain = directory.domains.get(item)
            if domain is None or domain.account_id != account_id:
                return [], [], f"{item} is not a domain of your account"
            if not domain.enablews:
                return [], [], f"{item} does not have web sockets enabled"
            domains.append(item)
    return addresses, domains, None


async def incoming_messages(ws: WebSocket) -> None:
    """Mailsac's ``/incoming-messages?key=…&addresses=a@x,b@y,domain.test`` feed."""
    await ws.accept()
    context = _ctx(ws)
    key_text = ws.query_params.get("key") or ws.query_params.get("_mailsacKey") \
        or ws.headers.get("mailsac-key")
    try:
        key = await context.auth.authenticate(key_text)
    except (Unauthorized, StorageUnavailable) as exc:
        await _refuse(ws, 401 if isinstance(exc, Unauthorized) else 503, str(exc))
        return
    items = [x.strip().lower() for x in ws.query_params.get("addresses", "").split(",")
             if x.strip()]
    if not items:
        await _refuse(ws, 400, "addresses is required: a comma list of addresses or domains")
        return
    try:
        addresses, domains, problem = _watchable(context, key.account_id, items)
    except InvalidAddress as exc:
        await _refuse(ws, 400, f"Invalid address or domain {exc.address[:100]!r}: {exc.reason}")
        return
    if problem:
        await _refuse(ws, 403, problem)
        return
    ip = client_ip(ws.scope)
    try:
        context.streams.acquire(ip, key.id, STREAMS)
    except TooManyStreams as exc:
        await _refuse(ws, 429, str(exc))  # close code 4429
        return
    subscription = context.hub.subscribe(addresses, domains, maxsize=100)
    try:
        await ws.send_json({"status": 200, "msg": "Listening", "addresses": addresses,
                            "domains": domains})
        await _pump(ws, context, subscription, key.account_id)
    finally:
        context.hub.unsubscribe(subscription)
        context.streams.release(ip, key.id)


async def _pump(ws: WebSocket, context: ApiContext, subscription: Any, account_id: str) -> None:
    closed = asyncio.create_task(_until_disconnect(ws))
    try:
        while True:
            getter = asyncio.create_task(subscription.get())
            done, _ = await asyncio.wait({getter, closed}, return_when=asyncio.FIRST_COMPLETED)
            if closed in done:
                getter.cancel()
                return
            try:
                event = getter.result()
            except SubscriptionClosed as exc:
                await _refuse(ws, 429, f"disconnected: {exc}")
                return
            if not isinstance(event, MessageStored):
                continue
            record = event.record
            if record.account_id is not None and record.account_id != account_id:
                continue
            parsed = await context.mailboxes.parsed(record)
            raw = await context.mailboxes.raw(record)
            text = await context.mailboxes.renderings.text(record)  # cached, shared
            # The frame carries the whole message: built and encoded off the loop.
            frame = await asyncio.to_thread(_frame, record, parsed, raw, text)
            try:
                await asyncio.wait_for(ws.send_text(frame), context.ws_send_timeout)
            except TimeoutError:
                # Too slow: stop feeding it. Returning closes the transport; the close frame
                # itself may not fit into a full buffer, so it gets only a moment.
                log.info("closing a WebSocket client that stopped reading")
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.close(code=1013, reason="client too slow"), 1.0)
                return
    except (WebSocketDisconnect, RuntimeError):
        return
    finally:
        closed.cancel()


def _frame(record: MessageRecord, parsed: ParsedMessage, raw: bytes, text: str) -> str:
    return encode_json({"status": 200, "email": message_payload(record, parsed, raw, text)})


async def _until_disconnect(ws: WebSocket) -> None:
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return


async def webhook_deliveries(request: Request) -> Response:
    key = await require_key(request)
    deliveries = await _ctx(request).addresses.webhook_deliveries(key, inbox_param(request))
    return JSONResponse([{
        "id": d.id, "messageId": d.message_id, "kind": d.kind, "url": d.url,
        "status": d.status, "attempts": d.attempts, "lastStatusCode": d.last_status_code,
        "lastError": d.last_error, "nextAttemptAt": iso_ms(d.next_attempt_at),
        "created": iso_ms(d.created_at), "updated": iso_ms(d.updated_at),
    } for d in deliveries])
