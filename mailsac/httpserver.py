"""The HTTP listener's connection guard: caps, a header-read timeout and the open-file limit.

uvicorn's HTTP protocols read forever from a client that never finishes its request
headers and accept connections until the process runs out of file descriptors; its
httptools protocol also buffers a request head of any size. The protocol class built by
:func:`guarded_protocol` (on httptools, or h11 where httptools is missing) adds, per
connection:

- a cap on open connections in total and per client IP (an IPv6 client counts per /64):
  over a cap the connection gets a minimal ``503`` JSON answer and is closed at once.
  Connections from a trusted load balancer (``MAILSAC_TRUSTED_PROXIES``) count only
  towards the total: they carry many clients, whose address is known per request (from
  ``X-Forwarded-For``), not per connection, so per-client connection fairness is the
  balancer's job (HAProxy ``maxconn``, stick tables), while the per-IP caps on streams and
  web sessions (:mod:`mailsac.api.limits`) still see each real client;
- a header deadline: a connection that has not sent complete request headers within
  ``header_timeout`` seconds of opening, or of its previous response (keep-alive), is
  closed. Trickling bytes does not extend the deadline;
- a bound on the request head: over 64 KiB without a complete head, ``431`` and close.

:func:`raise_nofile_limit` lifts the soft ``RLIMIT_NOFILE`` to the hard limit at start-up.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from mailsac.api.limits import ip_key

log = logging.getLogger(__name__)

# File descriptors kept out of the HTTP cap: SMTP, POP3, the database pool, blobs, workers.
FD_RESERVE = 0.5
# A request's line and headers: h11's own default bound is 16 KiB; browsers send < 8 KiB.
MAX_HEAD_BYTES = 64 * 1024
_HEAD_TOO_LARGE = (b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                   b"content-type: application/json\r\ncontent-length: 101\r\n"
                   b"connection: close\r\n\r\n"
                   b'{"message": "the request line and headers exceed 64 KiB", '
                   b'"error": "Request Header Fields Too Large"}')


def _busy_response(message: str) -> bytes:
    body = json.dumps({"message": message, "error": "Service Unavailable"}).encode()
    head = (f"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nretry-after: 5\r\nconnection: close\r\n\r\n")
    return head.encode() + body


class ConnectionGuard:
    """Counts the HTTP listener's open connections, in total and per client IP."""

    def __init__(self, max_total: int, max_per_ip: int, header_timeout: float,
                 trusted: Callable[[str], bool] = lambda _: False) -> None:
        self.max_total = max_total
        self.max_per_ip = max_per_ip
        self.header_timeout = header_timeout
        self.trusted = trusted  # peer address -> a load balancer (no per-IP cap)
        self.total = 0
        self.refused = 0
        self.header_timeouts = 0
        self.oversized_heads = 0
        self._per_ip: Counter[str] = Counter()

    def admit(self, ip: str | None) -> str | None:
        """Count a new connection from ``ip`` (None: a load balancer, counted only in the
        total); the refusal reason when a cap is reached."""
        if self.total >= self.max_total:
            self.refused += 1
            return "the server has too many open connections; retry shortly"
        if ip is not None and self._per_ip[ip] >= self.max_per_ip:
            self.refused += 1
            return (f"too many open connections from your address (at most "
                    f"{self.max_per_ip}); close some first")
        self.total += 1
        if ip is not None:
            self._per_ip[ip] += 1
        return None

    def release(self, ip: str | None) -> None:
        self.total -= 1
        if ip is None:
            return
        self._per_ip[ip] -= 1
        if self._per_ip[ip] <= 0:
            del self._per_ip[ip]

    def from_ip(self, ip: str) -> int:
        return self._per_ip[ip]


class _Guarded:
    """Connection caps, header deadline and header-size bound for a uvicorn protocol.

    Mixed into uvicorn's httptools protocol (the default: its C parser costs a fraction
    of h11's pure-Python one per request) and into its h11 protocol (the fallback where
    httptools is not installed). Both keep ``transport``, ``cycle``, ``client`` and
    ``loop`` and call ``on_response_complete``, which is all this relies on."""

    guard: ConnectionGuard  # set on the subclass made by guarded_protocol()
    transport: asyncio.Transport
    cycle: Any
    client: Any
    loop: asyncio.AbstractEventLoop

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._counted = False  # this connection holds a slot of the guard
        self._ip_key: str | None = None  # its per-IP key (None: a load balancer's)
        self._header_timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0  # bytes received while waiting for request headers

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        host = str(self.client[0]) if self.client else ""
        ip = None if self.guard.trusted(host) else ip_key(host)
        refusal = self.guard.admit(ip)
        if refusal is not None:
            transport.write(_busy_response(refusal))
            transport.close()
            return
        self._counted, self._ip_key = True, ip
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        self._release()
        super().connection_lost(exc)  # type: ignore[misc]

    def data_received(self, data: bytes) -> None:
        waiting = self._awaiting_headers()
        super().data_received(data)  # type: ignore[misc]
        if waiting and self._awaiting_headers():
            # Still no complete head: httptools, unlike h11, has no bound of its own on
            # how much it buffers for one (a chunk that completes the head may also hold
            # body bytes, so only bytes that left the head incomplete are counted).
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self.guard.oversized_heads += 1
                self.transport.write(_HEAD_TOO_LARGE)
                self.transport.close()
                return
        self._update_header_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        self._head_bytes = 0
        self._update_header_timer()

    def handle_websocket_upgrade(self, *args: Any) -> None:
        # The WebSocket protocol takes over the transport (this one's connection_lost is
        # never called again): hand it the release of this connection's slot.
        self._cancel_header_timer()
        super().handle_websocket_upgrade(*args)  # type: ignore[misc]
        successor = self.transport.get_protocol()
        lost = successor.connection_lost

        def connection_lost(exc: Exception | None) -> None:
            self._release()
            lost(exc)

        successor.connection_lost = connection_lost  # type: ignore[method-assign]

    def _release(self) -> None:
        if self._counted:
            self.guard.release(self._ip_key)
            self._counted, self._ip_key = False, None

    def _awaiting_headers(self) -> bool:
        if self.transport is None or self.transport.is_closing():
            return False
        protocol: Any = self.transport.get_protocol()
        if protocol is not self:
            return False  # upgraded to a WebSocket
        return self.cycle is None or self.cycle.response_complete

    def _update_header_timer(self) -> None:
        if self._awaiting_headers():
            if self._header_timer is None:  # a fixed deadline: trickling does not extend it
                self._arm_header_timer()
        else:
            self._cancel_header_timer()
            self._head_bytes = 0

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.guard.header_timeout,
                                                  self._header_timeout)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self._awaiting_headers():
            self.guard.header_timeouts += 1
            self.transport.close()


def _parser_protocol() -> type[Any]:
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # httptools missing (e.g. no wheel for this platform)
        return H11Protocol
    return HttpToolsProtocol


def guarded_protocol(guard: ConnectionGuard, parser: str = "auto") -> type[Any]:
    """A protocol class for ``uvicorn.Config(http=...)`` bound to ``guard``: uvicorn's
    httptools protocol when available (``parser="auto"``), else (or with ``"h11"``) h11."""
    base = H11Protocol if parser == "h11" else _parser_protocol()
    return type("GuardedHttpProtocol", (_Guarded, base), {"guard": guard})


def raise_nofile_limit() -> int | None:
    """Raise the soft open-file limit to the hard limit; the soft limit now in force
    (None where resource limits do not exist)."""
    try:
        import resource
    except ImportError:  # not on this platform
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard:
        log.info("open-file limit: %s (already the hard limit)", soft)
        return None if soft == resource.RLIM_INFINITY else int(soft)
    target = 1_048_576 if hard == resource.RLIM_INFINITY else hard
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:
        log.warning("could not raise the open-file limit from %d to %d (%s): the HTTP "
                    "connection cap is sized to the lower limit; raise it with ulimit -n "
                    "or LimitNOFILE=", soft, target, exc)
        return int(soft)
    log.info("open-file limit raised from %d to %d (hard limit %s)", soft, target, hard)
    return int(target)


def http_connection_cap(wanted: int, nofile: int | None) -> int:
    """``wanted``, lowered to a share of the open-file limit so that HTTP alone can never
    exhaust the process's file descriptors (SMTP, POP3 and the database need some too)."""
    if nofile is None:
        return wanted
    budget = max(16, int(nofile * FD_RESERVE))
    if wanted > budget:
        log.warning("MAILSAC_HTTP_MAX_CONNECTIONS=%d is above half the open-file limit "
                    "(%d): using %d", wanted, nofile, budget)
        return budget
    return wanted
