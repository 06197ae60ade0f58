"""HTTP request limits: a capped, time-limited request body, and caps on long-lived streams.

:class:`BodyLimit` is an ASGI middleware in front of every route (API and web viewer). A
request whose ``Content-Length`` exceeds the cap is answered ``413`` before a byte of its
body is read; a body without a length (chunked) is counted as it streams and the request
is answered ``413`` as soon as it passes the cap, so no handler ever holds more than the
cap (plus one chunk). A body that stalls longer than ``body_timeout`` between chunks is
answered ``408``. Both responses close the connection.

:class:`StreamCaps` counts the long-lived streams (Server-Sent Events, WebSocket feeds,
long-poll waits) per client IP and per API key; over a cap the caller answers ``429``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mailsac.api.errors import RequestRefused, error_response

# What the stream caps count, together: one pool per client IP and one per key.
STREAMS = "waits, WebSocket feeds and live-update streams"


@dataclass(frozen=True)
class HttpLimits:
    """The HTTP limits the application enforces (set from :class:`~mailsac.config.Settings`)."""

    max_body: int = 1024 * 1024
    body_timeout: float = 30.0
    streams_per_ip: int = 1024
    streams_per_key: int = 1024
    web_sessions: int = 10_000
    web_sessions_per_ip: int = 20
    web_session_idle: float = 4 * 3600.0


def client_ip(scope: Scope) -> str:
    """The request's client address as a counting key (see :func:`ip_key`)."""
    client = scope.get("client")
    return ip_key(str(client[0]) if client else "")


def ip_key(host: str) -> str:
    """The per-IP counting key: the address itself, or its /64 for IPv6 (one host usually
    holds a whole /64); an IPv4-mapped address counts as its IPv4 address."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class BodyLimit:
    """ASGI middleware: refuse oversized bodies from ``Content-Length``, cap streamed ones."""

    def __init__(self, app: ASGIApp, max_body: int = 1024 * 1024,
                 body_timeout: float = 30.0) -> None:
        self.app = app
        self.max_body = max_body
        self.body_timeout = body_timeout

    def _too_large(self) -> RequestRefused:
        return RequestRefused(413, f"the request body is larger than the limit of "
                                   f"{self.max_body} bytes")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = None
                break
        if declared is not None and declared > self.max_body:
            refusal = self._too_large()
            response = error_response(refusal.status, str(refusal), refusal.headers)
            await response(scope, receive, send)
            return
        received = 0
        done = False

        async def capped_receive() -> Message:
            nonlocal received, done
            if done:  # the body is complete: only a disconnect can follow (SSE waits here)
                return await receive()
            try:
                async with asyncio.timeout(self.body_timeout):
                    message = await receive()
            except TimeoutError:
                raise RequestRefused(408, f"the request body stalled for more than "
                                          f"{self.body_timeout:g} seconds") from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise self._too_large()
                done = not message.get("more_body", False)
            else:
                done = True
            return message

        await self.app(scope, capped_receive, send)


class TooManyStreams(RequestRefused):
    """Over a per-IP or per-key cap of long-lived streams (429)."""

    def __init__(self, message: str) -> None:
        super().__init__(429, message, {"Retry-After": "10"})


class StreamCaps:
    """Counts open long-lived streams per client IP and per API key id."""

    def __init__(self, per_ip: int, per_key: int) -> None:
        self.per_ip = per_ip
        self.per_key = per_key
        self._ips: Counter[str] = Counter()
        self._keys: Counter[int] = Counter()

    @property
    def open(self) -> int:
        return sum(self._ips.values())

    def acquire(self, ip: str, key_id: int | None, what: str) -> None:
        """Count one stream, or raise :class:`TooManyStreams` with the reason."""
        if self._ips[ip] >= self.per_ip:
            raise TooManyStreams(f"too many open {what} from your address (at most "
                                 f"{self.per_ip} streams per client IP); close some first")
        if key_id is not None and self._keys[key_id] >= self.per_key:
            raise TooManyStreams(f"too many open {what} for this API key (at most "
                                 f"{self.per_key} streams per key); close some first")
        self._ips[ip] += 1
        if key_id is not None:
            self._keys[key_id] += 1

    def release(self, ip: str, key_id: int | None) -> None:
        self._ips[ip] -= 1
        if self._ips[ip] <= 0:
            del self._ips[ip]
        if key_id is not None:
            self._keys[key_id] -= 1
            if self._keys[key_id] <= 0:
                del self._keys[key_id]

    @contextlib.contextmanager
    def hold(self, ip: str, key_id: int | None, what: str) -> Iterator[None]:
        """Count a stream for the duration of the block (raises before entering)."""
        self.acquire(ip, key_id, what)
        try:
            yield
        finally:
            self.release(ip, key_id)
