"""The webhook SSRF guard: which addresses are refused, name resolution, and the pinned
connection (the request goes to the checked address, whatever the name resolves to)."""

from __future__ import annotations

import asyncio
import ipaddress
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpcore
import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailsac.forwarding.egress import (
    Checked,
    DestinationRefused,
    EgressGuard,
    ResolveFailed,
    is_refused,
)
from mailsac.forwarding.pinned import PinnedTransport, UncheckedDestination, origin, pinned

REFUSED = [
    "127.0.0.1", "127.1.2.3", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254",
    "100.64.0.1", "100.127.255.254", "0.0.0.0", "0.1.2.3", "255.255.255.255", "224.0.0.1",
    "239.255.255.250", "240.0.0.1", "192.0.2.1", "198.51.100.7", "203.0.113.9", "198.18.0.1",
    "192.0.0.8", "::", "::1", "fe80::1", "fc00::1", "fd00::1", "ff02::1", "fec0::1",
    "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "::ffff:0.0.0.0",
    "::127.0.0.1", "::10.0.0.1", "::8.8.8.8",  # IPv4-compatible (obsolete) forms
    "64:ff9b::7f00:1", "64:ff9b::a00:1", "64:ff9b::a9fe:a9fe", "64:ff9b:1::1",  # NAT64
    "2002:7f00:1::", "2002:a00:1::1", "2002:a9fe:a9fe::",  # 6to4
    "2001::1", "2001:db8::1", "100::1",  # Teredo, documentation, discard
]
ALLOWED = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111",
           "2a00:1450:4001:80b::200e", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"]


@pytest.mark.parametrize("address", REFUSED)
def test_private_and_special_addresses_are_refused(address: str) -> None:
    assert is_refused(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_are_allowed(address: str) -> None:
    assert not is_refused(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "10.0.0.1", "::ffff:192.168.0.1",
                                     "169.254.169.254", "fd00::1", "100.64.0.1"])
def test_allow_private_lets_private_ranges_through(address: str) -> None:
    assert not is_refused(ipaddress.ip_address(address), allow_private=True)


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "224.0.0.1", "ff02::1",
                                     "255.255.255.255", "::ffff:0.0.0.0"])
def test_allow_private_still_refuses_multicast_and_unspecified(address: str) -> None:
    assert is_refused(ipaddress.ip_address(address), allow_private=True)


@given(st.integers(min_value=0, max_value=2**32 - 1))
@settings(max_examples=300, deadline=None)
def test_embedded_ipv4_forms_agree_with_the_ipv4_address(value: int) -> None:
    """Mapped, NAT64 and 6to4 spellings of an IPv4 address are refused exactly when it is."""
    v4 = ipaddress.IPv4Address(value)
    expected = is_refused(v4)
    for form in (value | 0xFFFF << 32, 0x64FF9B << 96 | value, 0x2002 << 112 | value << 80):
        assert is_refused(ipaddress.IPv6Address(form)) == expected


def test_embedded_private_ipv4_is_always_refused() -> None:
    for private in ("127.0.0.1", "10.1.2.3", "169.254.169.254", "100.64.0.1"):
        value = int(ipaddress.IPv4Address(private))
        for form in (value | 0xFFFF << 32, 0x64FF9B << 96 | value, 0x2002 << 112 | value << 80,
                     value):
            assert is_refused(ipaddress.IPv6Address(form)), ipaddress.IPv6Address(form)


def _check(guard: EgressGuard, host: str, port: int = 80) -> Checked:
    async def run() -> Checked:
        return await guard.check(host, port)

    return asyncio.run(run())


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "[::1]", "::ffff:127.0.0.1",
                                  "2130706433", "0x7f.1", "0177.0.0.1", "LOCALHOST"])
def test_names_and_odd_spellings_of_loopback_are_refused(host: str) -> None:
    guard = EgressGuard()
    try:
        with pytest.raises(DestinationRefused):
            _check(guard, host)
    finally:
        guard.close()


def test_allow_private_resolves_localhost_to_a_loopback_address() -> None:
    guard = EgressGuard(allow_private=True)
    try:
        checked = _check(guard, "localhost", 8080)
    finally:
        guard.close()
    assert checked.ips and all(ipaddress.ip_address(ip).is_loopback for ip in checked.ips)
    assert (checked.host, checked.port) == ("localhost", 8080)


def test_unresolvable_name_is_a_resolve_failure() -> None:
    guard = EgressGuard()
    try:
        with pytest.raises(ResolveFailed):
            _check(guard, "no-such-host.invalid")
    finally:
        guard.close()


# -- the pinned connection ---------------------------------------------------------------


@pytest.fixture()
def local_http() -> Iterator[tuple[int, list[str]]]:
    """A real HTTP server on 127.0.0.1 that records the Host header of each request."""
    hosts: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            hosts.append(self.headers.get("Host", ""))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], hosts
    server.shutdown()
    server.server_close()


def _post(url: str, pin: Checked | None) -> int:
    async def run() -> int:
        async with httpx.AsyncClient(transport=PinnedTransport(), trust_env=False) as client:
            if pin is None:
                return (await client.post(url, content=b"x")).status_code
            with pinned(pin):
                return (await client.post(url, content=b"x")).status_code

    return asyncio.run(run())


def test_pinned_request_goes_to_the_checked_address_with_the_original_host_header(
    local_http: tuple[int, list[str]]
) -> None:
    port, hosts = local_http
    # The name does not resolve at all: only the pin can make the connection succeed.
    url = f"http://hook.example.invalid:{port}/x"
    assert _post(url, Checked("hook.example.invalid", port, ("127.0.0.1",))) == 204
    assert hosts == [f"hook.example.invalid:{port}"]


def test_request_without_a_matching_pin_never_connects(local_http: tuple[int, list[str]]) -> None:
    port, hosts = local_http
    with pytest.raises(httpx.ConnectError):
        _post(f"http://127.0.0.1:{port}/x", None)
    with pytest.raises(httpx.ConnectError):  # pinned for another host or port
        _post(f"http://127.0.0.1:{port}/x", Checked("127.0.0.1", port + 1, ("127.0.0.1",)))
    with pytest.raises(httpx.ConnectError):
        _post(f"http://localhost:{port}/x", Checked("127.0.0.1", port, ("127.0.0.1",)))
    assert hosts == []
    assert issubclass(UncheckedDestination, httpcore.ConnectError)


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=20),
       st.sampled_from(["http", "https"]), st.integers(min_value=1, max_value=65535))
@settings(max_examples=100, deadline=None)
def test_origin_matches_what_the_connection_pool_asks_for(name: str, scheme: str,
                                                          port: int) -> None:
    host = f"{name}.example"
    url = httpx.URL(f"{scheme}://{host.upper()}:{port}/p")
    assert origin(url) == (host, port)
    default = httpx.URL(f"{scheme}://{host}/p")
    assert origin(default) == (host, 443 if scheme == "https" else 80)


def test_pinned_connection_falls_back_to_the_next_checked_address(
    local_http: tuple[int, list[str]]
) -> None:
    port, hosts = local_http  # listens on 127.0.0.1 only: ::1 is refused or unreachable
    pin = Checked("localhost", port, ("::1", "127.0.0.1"))
    assert _post(f"http://localhost:{port}/x", pin) == 204
    assert hosts == [f"localhost:{port}"]


@pytest.fixture()
def tls_server(tmp_path: Path) -> Iterator[tuple[int, Path, list[str | None]]]:
    """HTTPS on 127.0.0.1 with a self-signed certificate for the name hook.test."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=hook.test", "-addext", "subjectAltName=DNS:hook.test",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    names: list[str | None] = []
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    def remember_sni(sock: object, name: str | None, ctx: object) -> None:
        names.append(name)

    context.sni_callback = remember_sni  # type: ignore[assignment]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], cert, names
    server.shutdown()
    server.server_close()


def test_tls_is_verified_against_the_hostname_not_the_pinned_address(
    tls_server: tuple[int, Path, list[str | None]]
) -> None:
    port, cert, names = tls_server
    trust = ssl.create_default_context(cafile=str(cert))

    async def post(host: str) -> int:
        transport = PinnedTransport(verify=trust)
        async with httpx.AsyncClient(transport=transport, trust_env=False) as client:
            with pinned(Checked(host, port, ("127.0.0.1",))):
                return (await client.post(f"https://{host}:{port}/x", content=b"x")).status_code

    assert asyncio.run(post("hook.test")) == 204
    assert names[-1] == "hook.test"  # SNI carries the name
    with pytest.raises(httpx.ConnectError):  # same address, certificate for another name
        asyncio.run(post("other.test"))
