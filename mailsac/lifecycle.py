"""Running the service: start every part in order on one event loop, stop in reverse.

Start order: database engine → blob store → metadata writer → SMTP listener → HTTP server
→ background sweeps. Shutdown (after ``MAILSAC_DRAIN_SECONDS`` of answering ``/readyz``
with 503 while still serving) runs in reverse: stop accepting SMTP (in-flight DATA gets
``shutdown_grace`` seconds), stop HTTP, flush the metadata writer, dispose the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any

import uvicorn
from sqlalchemy.ext.asyncio import AsyncEngine

from mailsac import __version__
from mailsac.api.app import create_app
from mailsac.api.context import ApiContext
from mailsac.api.limits import HttpLimits, StreamCaps
from mailsac.app import Services, build_services
from mailsac.config import Settings
from mailsac.extract.service import Extracts
from mailsac.gctune import settle_heap
from mailsac.httpserver import (
    ConnectionGuard,
    guarded_protocol,
    http_connection_cap,
    raise_nofile_limit,
)
from mailsac.listeners.proxy import TrustedProxies
from mailsac.storage.accounts import ADMIN_ACCOUNT, ensure_account
from mailsac.storage.db import LivenessProbe
from mailsac.storage.joblock import orphan_sweep_key, run_exclusively
from mailsac.storage.journal import pending_under
from mailsac.storage.keys import any_keys, create_key, ensure_key
from mailsac.storage.sweeper import sweep_orphans
from mailsac.storage.writer import replay_forever

log = logging.getLogger(__name__)


class _EmbeddedUvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: the composition root owns shutdown."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _http_socket(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY when sock.proto says TCP, and
    # without it every keep-alive response waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:  # --processes: the kernel spreads connections over the children
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


async def ensure_first_key(engine: AsyncEngine, settings: Settings) -> None:
    """Register ``MAILSAC_ADMIN_KEY``, or on first start create and print an admin key (the
    ``--processes`` supervisor calls this once before its children start)."""
    async with engine.begin() as conn:
        await ensure_account(conn, ADMIN_ACCOUNT)
        if settings.admin_key:
            await ensure_key(conn, "admin", settings.admin_key, account_id=ADMIN_ACCOUNT,
                             is_admin=True)
        elif not await any_keys(conn):
            # First start: make the service usable at once; the key is shown only here.
            _, plain = await create_key(conn, "initial", account_id=ADMIN_ACCOUNT,
                                        is_admin=True)
            # Printed, not logged: log lines never carry keys (mailsac.logredact masks them).
            print(f"no API key existed, so one was created (shown only once): {plain}",
                  file=sys.stderr, flush=True)
            log.warning("create more with: python -m mailsac keys create --name NAME")


async def start(services: Services) -> None:
    settings = services.settings
    services.nofile_limit = raise_nofile_limit()  # before any listener accepts
    await services.blobs.start()
    await ensure_first_key(services.engine, settings)
    await services.directory.start()
    if services.chaos is not None:  # rules loaded before SMTP listens
        await services.chaos.start()
    if services.cluster is not None:
        services.cluster.start()
    await services.spam.load()
    await services.analyzer.start()
    services.writer.start()
    shared = services.reuse_port
    services.smtp_port = await services.smtp.start(settings.bind, settings.smtp_port,
                                                   reuse_port=shared)
    if settings.smtps_port >= 0:
        services.smtps_port = await services.smtp.start(settings.bind, settings.smtps_port,
                                                        implicit_tls=True, reuse_port=shared)
    if settings.capture_port >= 0:  # Email Capture: the same SMTP, AUTH before MAIL
        services.capture_port = await services.smtp.start(settings.bind, settings.capture_port,
                                                          require_auth=True, reuse_port=shared)
    if services.pop3 is not None:
        services.pop3_port = await services.pop3.start(settings.bind, settings.pop3_port,
                                                       reuse_port=shared)
    context = ApiContext(
        mailboxes=services.mailboxes, auth=services.auth, health=services.health,
        ready=services.ready,
        addresses=services.addresses, account_mail=services.account_mail,
        admin=services.admin, hub=services.hub, gate=services.gate,
        metrics=services.metrics, accepted_domains=settings.domains, chaos=services.chaos,
        extracts=Extracts(services.engine, services.mailboxes, services.analyzer),
        ws_send_timeout=settings.ws_send_timeout,
        limits=HttpLimits(
            max_body=settings.http_max_body, body_timeout=settings.http_body_timeout,
            streams_per_ip=settings.max_streams_per_ip,
            streams_per_key=settings.max_streams_per_key, web_sessions=settings.web_sessions,
            web_sessions_per_ip=settings.web_sessions_per_ip,
            web_session_idle=settings.web_session_idle),
        streams=StreamCaps(settings.max_streams_per_ip, settings.max_streams_per_key))
    app = create_app(context, ui_domain=settings.ui_domain, ui_public=settings.ui_public)
    sock = _http_socket(settings.bind, settings.http_port, services.reuse_port)
    services.http_port = int(sock.getsockname()[1])
    proxies = TrustedProxies(settings.trusted_proxies)
    guard = services.http_guard = ConnectionGuard(
        http_connection_cap(settings.http_max_connections, services.nofile_limit),
        settings.http_max_connections_per_ip, settings.http_header_timeout,
        trusted=proxies.trusts)
    config = uvicorn.Config(app, lifespan="off", access_log=False, log_config=None,
                            timeout_graceful_shutdown=5, server_header=False,
                            http=guarded_protocol(guard),
                            # X-Forwarded-For/-Proto only from MAILSAC_TRUSTED_PROXIES
                            # (uvicorn would trust 127.0.0.1 or $FORWARDED_ALLOW_IPS).
                            proxy_headers=bool(proxies),
                            forwarded_allow_ips=proxies.cidrs,
                            # The WebSocket feed only sends: what a client sends is read
                            # and dropped, so small frames and a short queue suffice
                            # (uvicorn's defaults let one socket buffer 32 x 16 MiB).
                            ws_max_size=64 * 1024, ws_max_queue=4)
    services.http = _EmbeddedUvicorn(config)
    services.tasks.append(asyncio.create_task(services.http.serve(sockets=[sock]), name="http"))
    while not services.http.started:
        if services.tasks[-1].done():
            services.tasks[-1].result()  # re-raise why the HTTP server could not start
        await asyncio.sleep(0.01)
    services.tasks.append(asyncio.create_task(
        # One node per blob directory at a time (mailsac.storage.joblock).
        run_exclusively(services.engine, orphan_sweep_key(services.blobs.identity),
            settings.orphan_sweep_interval, lambda: sweep_orphans(
                services.engine, services.blobs,
                # any journal on this machine: --processes siblings share the blobs
                paused=lambda: pending_under(settings.data_dir / "journal")),
            "orphan sweep"),
        name="orphan-sweep"))
    services.tasks.append(asyncio.create_task(
        replay_forever(services.writer, services.engine), name="journal-replay"))
    services.tasks.append(asyncio.create_task(
        services.retention.run_forever(settings.retention_interval), name="retention"))
    services.tasks.append(asyncio.create_task(services.webhooks.run(), name="webhooks"))
    services.tasks.append(asyncio.create_task(services.loop_monitor.run(), name="loop-monitor"))
    services.tasks.append(asyncio.create_task(  # lessons taught through other nodes
        services.spam.follow_forever(settings.spam_follow_interval), name="spam-follow"))
    if services.autolearn is not None:
        services.tasks.append(asyncio.create_task(services.autolearn.run(), name="autolearn"))
    if services.gate.sync is not None:  # throttle counts shared with the cluster
        services.tasks.append(asyncio.create_task(services.gate.sync.run(),
                                                  name="throttle-sync"))
    if services.tls is not None and settings.tls_reload_interval > 0:
        services.tasks.append(asyncio.create_task(
            services.tls.watch(settings.tls_reload_interval), name="tls-watch"))
    services.tasks.append(asyncio.create_task(LivenessProbe(
        services.engine, timeout=settings.db_commit_timeout).run(), name="db-probe"))
    log.info("mailsac %s ready: SMTP %s:%d%s, HTTP http://%s:%d", __version__, settings.bind,
             services.smtp_port,
             f" (SMTPS {services.smtps_port})" if services.smtps_port >= 0 else "",
             settings.bind, services.http_port)


async def _step(name: str, action: Awaitable[Any]) -> None:
    """One shutdown step: a failure is logged and the remaining steps still run."""
    try:
        await action
    except Exception:
        log.exception("shutdown step %r failed", name)


STOP_TASKS_TIMEOUT = 10.0


async def _stop_tasks(services: Services) -> None:
    if services.http is not None:
        services.http.should_exit = True
    for task in services.tasks:
        if task.get_name() != "http":
            task.cancel()
    if not services.tasks:
        return
    # A task that ignores its cancellation must not keep the process alive: name it.
    done, stuck = await asyncio.wait(services.tasks, timeout=STOP_TASKS_TIMEOUT)
    for task in done:  # retrieve what they ended with (no "never retrieved" noise)
        if not task.cancelled():
            task.exception()
    for task in stuck:
        frames = "; ".join(f"{f.f_code.co_filename}:{f.f_lineno}" for f in task.get_stack())
        log.error("task %s did not stop within %s s (at %s)", task.get_name(),
                  STOP_TASKS_TIMEOUT, frames)


async def _stop_analyzer(services: Services) -> None:
    services.analyzer.stop()


async def stop(services: Services) -> None:
    grace = services.settings.shutdown_grace
    if services.pop3 is not None:
        await _step("pop3", services.pop3.stop(grace))
    await _step("smtp", services.smtp.stop(grace))
    await _step("tasks", _stop_tasks(services))
    if services.chaos is not None:  # its last counts and events
        await _step("chaos", services.chaos.stop())
    await _step("metadata writer", services.writer.stop())
    await _step("analysis workers", _stop_analyzer(services))
    await _step("webhooks", services.webhooks.close())
    if services.cluster is not None:
        await _step("cluster events", services.cluster.stop())
    await _step("directory", services.directory.stop())
    await _step("blob store", services.blobs.close())
    await _step("read pool", services.reads.close())
    await _step("database", services.engine.dispose())
    log.info("mailsac stopped")


async def _drain(services: Services, seconds: float) -> None:
    """Turn unready (GET /readyz: 503) and keep serving for ``seconds``, so a load
    balancer moves new connections elsewhere before the listeners close. A second
    SIGINT/SIGTERM cuts it short."""
    services.draining = True
    if seconds <= 0:
        return
    log.info("draining: unready for %g s before closing the listeners", seconds)
    loop = asyncio.get_running_loop()
    hurry = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, hurry.set)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(hurry.wait(), seconds)


async def serve(settings: Settings, database_url: str, *, reuse_port: bool = False,
                journal_dir: Path | None = None) -> None:
    """Run until SIGINT/SIGTERM, then shut down in order. A ``--processes`` child passes
    ``reuse_port`` (share the ports with its siblings) and its own ``journal_dir``."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    services = build_services(settings, database_url, journal_dir)
    services.reuse_port = reuse_port
    reloads: set[asyncio.Task[bool]] = set()

    def reload_certificate() -> None:  # SIGHUP
        if services.tls is not None:
            task = asyncio.create_task(services.tls.reload("SIGHUP"), name="tls-reload")
            reloads.add(task)
            task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, reload_certificate)
    try:
        await start(services)
        settle_heap()  # before the first request: later collections skip the start-up heap
        if settings.ready_file:
            # Write then rename, so a watcher never reads a half-written file.
            partial = f"{settings.ready_file}.partial"
            with open(partial, "w") as f:
                json.dump({"smtp_port": services.smtp_port, "http_port": services.http_port,
                           "pop3_port": services.pop3_port,
                           "smtps_port": services.smtps_port,
                           "capture_port": services.capture_port}, f)
            os.replace(partial, settings.ready_file)
        await stopping.wait()
        log.info("shutdown requested")
        await _drain(services, settings.drain_seconds)
    finally:
        await stop(services)
