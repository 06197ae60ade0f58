"""Waits that match (our extension): hold a request until messages matching criteria are
in one inbox, a custom domain or anywhere in the caller's account.

``GET /api/addresses/{email}/messages/wait``, ``GET /api/domains/{domain}/messages/wait``
and ``GET /api/messages/wait`` take ``subject``, ``from``, ``to``, ``contains``, ``since``,
``timeout`` and ``count``. Race-free: the wait subscribes to the hub *before* it looks in
the database for messages received since ``since``, so a message stored in between is seen
at least once (ids de-duplicate it). A flooded subscription (the hub dropped it) looks in
the database again. An incoming message reaches only the waiters of its inbox, domain or
owning account (the hub's indexes); each checks the metadata criteria first and asks for
the body (shared per message: :class:`mailsac.matching.BodyMatcher`) only if those pass.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime

from starlette.requests import Request
from starlette.responses import Response

from mailsac.api.context import ApiContext, ctx, date_param, domain_param, inbox_param, require_key
from mailsac.api.errors import BadRequest
from mailsac.api.hangup import unless_disconnected
from mailsac.api.limits import STREAMS, client_ip
from mailsac.api.responses import FastJSONResponse
from mailsac.events import MessageStored
from mailsac.fairgate import FairGate
from mailsac.forwarding.hub import SubscriptionClosed
from mailsac.matching import BodyMatcher, Criteria, Scope
from mailsac.messagejson import message_json
from mailsac.storage.keys import ApiKey
from mailsac.storage.messages import MessageRecord
from mailsac.timeutil import iso_ms, now_ms

MAX_WAIT = 300.0  # seconds a wait may hold a request
MAX_COUNT = 100  # messages one wait may ask for
SCAN_LIMIT = 500  # stored rows one look into the database considers (oldest first)
BODY_CHECKS = 100  # stored messages whose bodies one look may search for ``contains``
QUEUE = 1000  # hub events a waiter may fall behind by before it re-reads the database
DB_LOOKS = 4  # waits looking in the database at once (a burst of waits queues here rather
# than taking the whole connection pool from the rest of the service), served round-robin
# across accounts: one account's burst does not queue ahead of another account's wait

log = logging.getLogger(__name__)


class _Shared:
    """What every wait of one application shares: the body matcher and the database turns."""

    def __init__(self, context: ApiContext) -> None:
        renderings = context.mailboxes.renderings

        async def haystack(record: MessageRecord) -> str:
            return str(await renderings.get(record, "match"))

        def ready(record: MessageRecord) -> str | None:
            found = renderings.cache.get((record.blob_key, "match"))
            return found if isinstance(found, str) else None

        self.matcher = BodyMatcher(haystack, ready)
        self.db_looks = FairGate(DB_LOOKS)


def _shared(request: Request, context: ApiContext) -> _Shared:
    shared: _Shared | None = getattr(request.app.state, "waits_shared", None)
    if shared is None:
        shared = request.app.state.waits_shared = _Shared(context)
    return shared


class _Wait:
    """One wait's state: the matches found so far (by id), until ``count`` of them."""

    def __init__(self, context: ApiContext, shared: _Shared, key: ApiKey, scope: Scope,
                 criteria: Criteria, since: datetime, count: int) -> None:
        self.context, self.shared, self.key = context, shared, key
        self.scope, self.criteria, self.since, self.count = scope, criteria, since, count
        self.found: dict[str, MessageRecord] = {}

    @property
    def done(self) -> bool:
        return len(self.found) >= self.count

    def result(self) -> list[MessageRecord]:
        """The first ``count`` matches, oldest first."""
        return sorted(self.found.values(), key=lambda r: (r.received, r.id))[:self.count]

    async def run(self, deadline: float) -> bool:
        """True once ``count`` messages matched; False when ``deadline`` passes first."""
        hub = self.context.hub
        while True:
            # Subscribe first, then look in the database: nothing can slip between the two.
            subscription = self.scope.subscribe(hub, QUEUE)
            try:
                await self._look_in_database()
                if self.done:
                    return True
                try:
                    async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                        while not self.done:
                            event = await subscription.get()
                            if isinstance(event, MessageStored) and \
                                    event.record.id not in self.found and \
                                    await self._matches(event.record):
                                self.found[event.record.id] = event.record
                except TimeoutError:
                    if time.monotonic() < deadline:  # uvloop's timers can fire a little early
                        continue
                    return False
                return True
            except SubscriptionClosed:
                continue  # flooded: look in the database again
            finally:
                hub.unsubscribe(subscription)

    async def _look_in_database(self) -> None:
        async with self.shared.db_looks.slot(self.key.account_id):
            rows = await self.context.mailboxes.stored_matches(
                self.key, self.scope, self.criteria, since=self.since, limit=SCAN_LIMIT)
        body_checks = 0
        for record in rows:
            if self.done:
                return
            if record.id in self.found or not self.criteria.cheap_match(record):
                continue
            if self.criteria.contains:
                if body_checks >= BODY_CHECKS:
                    return
                body_checks += 1
                if not await self._body_contains(record):
                    continue
            self.found[record.id] = record

    async def _matches(self, record: MessageRecord) -> bool:
        # Cheapest first: where it is, when, metadata; the body only if all those pass.
        if record.received < self.since or not self.scope.holds(record) \
                or not self.criteria.cheap_match(record):
            return False
        return not self.criteria.contains or await self._body_contains(record)

    async def _body_contains(self, record: MessageRecord) -> bool:
        assert self.criteria.contains is not None
        try:
            return await self.shared.matcher.contains(record, self.criteria.contains)
        except Exception as exc:  # unreadable blob, hostile MIME: it does not match
            log.info("wait: body of %s not searchable (%s)", record.id, exc)
            return False


def _timeout(request: Request) -> float:
    try:
        timeout = float(request.query_params.get("timeout", "30"))
    except ValueError:
        raise BadRequest("timeout must be a number of seconds") from None
    if not 0 <= timeout <= MAX_WAIT:  # also refuses nan and inf
        raise BadRequest(f"timeout must be between 0 and {MAX_WAIT:g} seconds")
    return timeout


def _count(request: Request) -> int | None:
    raw = request.query_params.get("count")
    if raw is None:
        return None
    if not raw.strip().isdigit() or not 1 <= int(raw) <= MAX_COUNT:
        raise BadRequest(f"count must be an integer between 1 and {MAX_COUNT}")
    return int(raw)


async def _serve(request: Request, key: ApiKey, scope: Scope) -> Response:
    context = ctx(request)
    params = request.query_params
    timeout, count = _timeout(request), _count(request)
    since = date_param(request, "since") or now_ms()
    criteria = Criteria.of(subject=params.get("subject"), sender=params.get("from"),
                           to=params.get("to"), contains=params.get("contains"))
    wait = _Wait(context, _shared(request, context), key, scope, criteria, since, count or 1)
    with context.streams.hold(client_ip(request.scope), key.id, STREAMS):
        # A client that hangs up frees its slot and subscription now, not at the timeout.
        done = await unless_disconnected(request.receive, wait.run(time.monotonic() + timeout))
    if done is None:
        return Response(status_code=499)  # nobody is there to read it (nginx's "closed")
    if not done:
        return Response(status_code=204, headers={
            "X-Mailsac-Waited-Until": iso_ms(now_ms()),
            "X-Mailsac-Matched": str(len(wait.found))})
    found = wait.result()
    if count is None:
        return FastJSONResponse(message_json(found[0]))
    return FastJSONResponse({"messages": [message_json(record) for record in found]})


async def wait_in_inbox(request: Request) -> Response:
    """``GET /api/addresses/{email}/messages/wait``: one inbox (403 if another account's)."""
    key = await require_key(request)
    return await _serve(request, key, Scope("inbox", inbox_param(request), key.account_id))


async def wait_in_domain(request: Request) -> Response:
    """``GET /api/domains/{domain}/messages/wait``: a custom domain of the caller's account."""
    key = await require_key(request)
    return await _serve(request, key, Scope("domain", domain_param(request), key.account_id))


async def wait_in_account(request: Request) -> Response:
    """``GET /api/messages/wait``: every private address and custom domain of the account."""
    key = await require_key(request)
    return await _serve(request, key, Scope("account", key.account_id, key.account_id))
