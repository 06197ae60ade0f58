"""An httpx transport that connects only to the address the egress guard checked.

The URL keeps its hostname, so the ``Host`` header, TLS SNI and certificate verification
all use the name; only the TCP connect is redirected to the checked IP. The address is
passed per request through a context variable (httpcore connects in the requesting
task). A connect attempt without a matching pin fails closed: nothing here ever resolves
a name itself, so DNS rebinding between check and connect cannot change the target.
"""

from __future__ import annotations

import contextvars
import ssl
import typing
from collections.abc import Iterator
from contextlib import contextmanager

import httpcore
import httpx

from mailsac.forwarding.egress import Checked

_PIN: contextvars.ContextVar[Checked | None] = contextvars.ContextVar("webhook_pin", default=None)


class UncheckedDestination(httpcore.ConnectError):
    """A connection was attempted to a host/port that was not checked first."""


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """Network backend whose ``connect_tcp`` goes to the pinned, checked address."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self, host: str, port: int, timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        pin = _PIN.get()
        if pin is None or pin.host != host.strip("[]").lower() or pin.port != port:
            raise UncheckedDestination("destination was not checked")
        for ip in pin.ips[:-1]:  # e.g. ::1 then 127.0.0.1: the next checked one on failure
            try:
                return await self._inner.connect_tcp(
                    ip, port, timeout=timeout, local_address=local_address,
                    socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout):
                continue
        return await self._inner.connect_tcp(
            pin.ips[-1], port, timeout=timeout, local_address=local_address,
            socket_options=socket_options)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise UncheckedDestination("unix sockets are not a webhook destination")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class PinnedTransport(httpx.AsyncHTTPTransport):
    """``httpx.AsyncHTTPTransport`` whose connection pool uses :class:`PinnedBackend`.

    Connections are pooled per origin (scheme, host, port) as usual; a pooled connection
    was made to an address that passed the guard when it was opened, and every request is
    checked again before it may use the pool.
    """

    def __init__(self, *, max_connections: int = 100, keepalive: int = 20,
                 backend: httpcore.AsyncNetworkBackend | None = None,
                 verify: ssl.SSLContext | None = None) -> None:
        super().__init__(trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(
            # Certificates are verified against the URL's hostname (SNI too), not the IP.
            ssl_context=verify or httpx.create_ssl_context(),  # honours SSL_CERT_FILE/DIR
            max_connections=max_connections, max_keepalive_connections=keepalive,
            keepalive_expiry=5.0, network_backend=PinnedBackend(backend))


@contextmanager
def pinned(checked: Checked) -> Iterator[None]:
    """Within this block, connections to ``checked.host:port`` go to ``checked.ip``."""
    token = _PIN.set(checked)
    try:
        yield
    finally:
        _PIN.reset(token)


def origin(url: httpx.URL) -> tuple[str, int]:
    """(host, port) of ``url`` as httpcore will see them (IDNA host, default ports)."""
    port = url.port or (443 if url.scheme == "https" else 80)
    return url.raw_host.decode("ascii").strip("[]").lower(), port
