"""Composition root: build every service from settings and run them on one event loop.

Start order: database engine → blob dir → metadata writer → SMTP listener → HTTP server
→ background sweeps. Shutdown runs in reverse: stop accepting SMTP (in-flight DATA gets
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
import time
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import uvicorn
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from mailsac import __version__
from mailsac.access import KeyAuthenticator
from mailsac.account_mail import AccountMail
from mailsac.addresses import Addresses
from mailsac.admin import Admin
from mailsac.analysis import Analyzer
from mailsac.api.app import create_app
from mailsac.api.context import ApiContext
from mailsac.api.limits import HttpLimits, StreamCaps
from mailsac.capture import Capture
from mailsac.config import Settings
from mailsac.delivery import Delivery
from mailsac.directory import Directory
from mailsac.forwarding.egress import EgressGuard
from mailsac.forwarding.fairness import FairnessLimits
from mailsac.forwarding.hub import MessageHub
from mailsac.forwarding.webhooks import RetryPolicy, WebhookDispatcher
from mailsac.gate import SenderGate, parse_limit_overrides
from mailsac.httpserver import (
    ConnectionGuard,
    guarded_protocol,
    http_connection_cap,
    raise_nofile_limit,
)
from mailsac.listeners.admission import Admission
from mailsac.listeners.tls import CertificateStore
from mailsac.loopmon import LoopMonitor
from mailsac.mailbox import Mailboxes
from mailsac.pop3 import Pop3Listener, build_pop3
from mailsac.smtp.auth import build_auth as build_smtp_auth
from mailsac.smtp.budget import DataBudget
from mailsac.smtp.handler import MailsacHandler
from mailsac.smtp.listener import SmtpListener
from mailsac.spam_feedback import SpamFeedback
from mailsac.storage import BlobStore, MetadataWriter
from mailsac.storage.accounts import ADMIN_ACCOUNT, ensure_account
from mailsac.storage.db import LivenessProbe, create_engine, known_unavailable, liveness
from mailsac.storage.journal import Journal
from mailsac.storage.keys import any_keys, create_key, ensure_key
from mailsac.storage.retention import RetentionPolicy, RetentionSweeper
from mailsac.storage.sweeper import sweep_forever
from mailsac.storage.writer import replay_forever
from mailsac.visibility import Visibility

log = logging.getLogger(__name__)


class _EmbeddedUvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: the composition root owns shutdown."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class Services:
    """Everything the running service consists of."""

    settings: Settings
    engine: AsyncEngine
    blobs: BlobStore
    writer: MetadataWriter
    delivery: Delivery
    mailboxes: Mailboxes
    auth: KeyAuthenticator
    smtp: SmtpListener
    directory: Directory
    addresses: Addresses
    account_mail: AccountMail
    admin: Admin
    retention: RetentionSweeper
    hub: MessageHub
    webhooks: WebhookDispatcher
    spam: SpamFeedback
    analyzer: Analyzer
    gate: SenderGate
    loop_monitor: LoopMonitor
    smtp_port: int = 0
    http_port: int = 0
    pop3_port: int = 0
    smtps_port: int = -1  # -1: off
    capture_port: int = -1  # -1: off
    tls: CertificateStore | None = None
    pop3: Pop3Listener | None = None
    http: _EmbeddedUvicorn | None = None
    http_guard: ConnectionGuard | None = None
    nofile_limit: int | None = None
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    def journal_pending(self) -> bool:
        return self.writer.journal is not None and self.writer.journal.pending

    def metrics(self) -> dict[str, Any]:
        """Plain numbers for /metrics (labels stay bounded: see mailsac.api.metrics)."""
        handler = self.smtp.handler
        counter = self.gate.counter
        return {
            "accepted": handler.metrics.accepted,
            "rejections": dict(handler.metrics.rejections),
            "bytes_received": handler.metrics.bytes_received,
            "sessions_active": self.smtp.admission.active,
            "sessions_waiting": self.smtp.admission.waiting,
            "sessions_refused": self.smtp.admission.refused,
            "throttle": self.gate.limiter.metrics(),
            "throttle_entries": len(counter),
            "throttle_evictions": counter.evictions,
            "loop_lag": self.loop_monitor.lag,
            "db_commits": self.writer.batches,
            "db_commit_seconds": self.writer.commit_seconds,
            "writer_queue": self.writer.queue_depth,
            "hub_subscribers": self.hub.subscriber_count,
            "hub_dropped": self.hub.dropped,
            "webhooks": dict(self.webhooks.outcomes),
            "cache_bytes": self.mailboxes.cache.bytes,
            "render_cache_bytes": self.mailboxes.renderings.cache.bytes,
            "data_memory_used": self.smtp.budget.used,
            "data_memory_refused": self.smtp.budget.refused,
            "http_connections": self.http_guard.total if self.http_guard else 0,
            "http_refused": self.http_guard.refused if self.http_guard else 0,
            "http_header_timeouts": self.http_guard.header_timeouts if self.http_guard else 0,
            "db_available": not known_unavailable(self.engine),
        }

    async def health(self) -> dict[str, Any]:
        started = time.perf_counter()
        db: dict[str, Any]
        try:
            probe = liveness(self.engine)
            if probe is not None:
                # The probe pings on its own connection twice a second: its verdict is
                # fresh, costs nothing, and a burst of requests queueing for pooled
                # connections cannot make a healthy database look down.
                if not probe.alive:
                    raise TimeoutError
                latency = probe.latency
            else:
                async with asyncio.timeout(2.0):
                    async with self.engine.connect() as conn:
                        await conn.execute(text("SELECT 1"))
                latency = time.perf_counter() - started
            db = {"ok": True, "latencyMs": round(latency * 1000, 2)}
        except Exception as exc:  # any failure means "not ready"
            db = {"ok": False, "error": type(exc).__name__}
        smtp = {"listening": self.smtp.listening, "port": self.smtp_port}
        journal = {"pending": self.journal_pending()}
        ok = bool(db["ok"]) and self.smtp.listening and not journal["pending"]
        return {"status": "ok" if ok else "degraded", "version": __version__,
                "database": db, "smtp": smtp, "journal": journal}


def build_services(settings: Settings, database_url: str) -> Services:
    engine = create_engine(database_url, pool_size=settings.db_pool_size,
                           connect_timeout=settings.db_connect_timeout)
    blobs = BlobStore(settings.blob_dir)
    writer = MetadataWriter(engine, Journal(
        settings.data_dir / "journal", max_age=settings.journal_max_age,
        max_bytes=settings.journal_max_bytes), commit_timeout=settings.db_commit_timeout)
    hostname = settings.effective_hostname()
    directory = Directory(engine, database_url)
    visibility = Visibility(directory, max_starred=settings.max_starred_per_account)
    hub = MessageHub()
    web_url = settings.public_url or f"http://{settings.bind}:{settings.http_port}"
    spam = SpamFeedback(engine, max_rows=settings.spam_feedback_max_rows,
                        per_account=settings.spam_feedback_per_account)
    analyzer = Analyzer(spam.model, settings.analysis_workers)
    delivery = Delivery(blobs, writer, hostname, directory, hub, web_url, analyzer)
    gate = SenderGate(engine, parse_limit_overrides(settings.limits),
                      settings.throttle_max_entries)
    directory.also_reload.append(gate.reload)
    loop_monitor = LoopMonitor()
    auth = KeyAuthenticator(engine)
    # SMTP AUTH (account name + API key) turns a session into Email Capture.
    handler = MailsacHandler(
        delivery, settings.domains, gate, directory.owner_of_inbox,
        auth=build_smtp_auth(settings, auth, directory.owner_of_inbox, gate),
        capture=Capture(engine, star_limit=visibility.star_limit))
    admission = Admission(
        max_total=settings.max_connections, max_per_ip=settings.max_connections_per_ip,
        max_per_network=settings.max_connections_per_network,
        max_per_supernet=settings.max_connections_per_supernet,
        wait_timeout=settings.admission_timeout,
        overloaded=lambda: loop_monitor.lag > 1.0 or writer.queue_depth > 5000)
    loop_monitor.on_tick.append(admission.poke)
    # One certificate for SMTP (STARTTLS), SMTPS and POP3 (STLS): configured, or generated.
    tls = CertificateStore.from_settings(settings)
    tls.load()
    smtp = SmtpListener(handler, hostname=hostname, max_message_size=settings.max_message_size,
                        timeout=settings.smtp_timeout, admission=admission, gate=gate,
                        pressure_timeout=settings.pressure_timeout,
                        max_data_seconds=settings.max_data_seconds,
                        max_commands=settings.max_commands,
                        budget=DataBudget(settings.data_memory_budget),
                        max_session_seconds=settings.smtp_max_session_seconds,
                        pressure_session_seconds=settings.smtp_pressure_session_seconds,
                        tls=tls, require_tls=settings.smtp_require_tls,
                        tls_handshake_timeout=settings.tls_handshake_timeout,
                        auth_require_tls=False)  # the handler decides (mailsac.smtp.auth)
    loop_monitor.on_tick.append(smtp.check_pressure)
    mailboxes = Mailboxes(engine, blobs, settings.cache_bytes, visibility, hub, spam,
                          render_cache_bytes=settings.render_cache_bytes)
    addresses = Addresses(engine, directory, mailboxes.drop_blobs,
                          max_aliases=settings.max_aliases_per_account)
    retention = RetentionSweeper(engine, mailboxes.drop_blobs, RetentionPolicy(
        public_inbox_limit=settings.public_inbox_limit,
        public_max_age=timedelta(hours=settings.public_max_age_hours),
        webhook_payload_max_age=timedelta(hours=settings.webhook_payload_retention_hours),
        webhook_history_max_age=timedelta(hours=settings.webhook_history_retention_hours)))
    delivery.add_listener(retention.touched)

    def secret_for(address: str) -> str | None:
        record = directory.addresses.get(address)
        return record.webhook_secret if record is not None else None

    webhooks = WebhookDispatcher(
        engine, secret_for, policy=RetryPolicy(
            max_attempts=settings.webhook_max_attempts, base_delay=settings.webhook_retry_base,
            timeout=settings.webhook_timeout),
        # Fairness lanes are per owning account (the delivery row's, else the directory's).
        account_for=directory.owner_of_inbox,
        guard=EgressGuard(allow_private=settings.webhook_allow_private),
        limits=FairnessLimits(
            total=settings.webhook_concurrency, per_account=settings.webhook_per_account,
            per_host=settings.webhook_per_host,
            breaker_failures=settings.webhook_breaker_failures,
            breaker_cooldown=settings.webhook_breaker_cooldown))
    delivery.on_new_deliveries = webhooks.wake
    services = Services(
        settings=settings, engine=engine, blobs=blobs, writer=writer, delivery=delivery,
        mailboxes=mailboxes, auth=auth, smtp=smtp, directory=directory, addresses=addresses,
        account_mail=AccountMail(engine, directory, visibility, mailboxes.drop_blobs),
        admin=Admin(engine, addresses, auth), retention=retention, hub=hub, webhooks=webhooks,
        spam=spam, gate=gate, loop_monitor=loop_monitor, analyzer=analyzer, tls=tls,
    )

    def pop3_denied(ip: str) -> str | None:  # the gate's deny-list, current after reloads
        entry = gate.deny.match_ip(ip)
        return None if entry is None else (entry.reason or "deny-listed")

    services.pop3 = build_pop3(settings, auth=auth, mailboxes=mailboxes,
                               loop_monitor=loop_monitor, denied=pop3_denied, tls=tls)
    return services


def _http_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY when sock.proto says TCP, and
    # without it every keep-alive response waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


async def start(services: Services) -> None:
    settings = services.settings
    services.nofile_limit = raise_nofile_limit()  # before any listener accepts
    services.blobs.ensure_root()
    async with services.engine.begin() as conn:
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
    await services.directory.start()
    await services.spam.load()
    await services.analyzer.start()
    services.writer.start()
    services.smtp_port = await services.smtp.start(settings.bind, settings.smtp_port)
    if settings.smtps_port >= 0:
        services.smtps_port = await services.smtp.start(settings.bind, settings.smtps_port,
                                                        implicit_tls=True)
    if settings.capture_port >= 0:  # Email Capture: the same SMTP, AUTH before MAIL
        services.capture_port = await services.smtp.start(settings.bind, settings.capture_port,
                                                          require_auth=True)
    if services.pop3 is not None:
        services.pop3_port = await services.pop3.start(settings.bind, settings.pop3_port)
    context = ApiContext(
        mailboxes=services.mailboxes, auth=services.auth, health=services.health,
        addresses=services.addresses, account_mail=services.account_mail,
        admin=services.admin, hub=services.hub, gate=services.gate,
        metrics=services.metrics, accepted_domains=settings.domains,
        ws_send_timeout=settings.ws_send_timeout,
        limits=HttpLimits(
            max_body=settings.http_max_body, body_timeout=settings.http_body_timeout,
            streams_per_ip=settings.max_streams_per_ip,
            streams_per_key=settings.max_streams_per_key, web_sessions=settings.web_sessions,
            web_sessions_per_ip=settings.web_sessions_per_ip,
            web_session_idle=settings.web_session_idle),
        streams=StreamCaps(settings.max_streams_per_ip, settings.max_streams_per_key))
    app = create_app(context, ui_domain=settings.ui_domain, ui_public=settings.ui_public)
    sock = _http_socket(settings.bind, settings.http_port)
    services.http_port = int(sock.getsockname()[1])
    guard = services.http_guard = ConnectionGuard(
        http_connection_cap(settings.http_max_connections, services.nofile_limit),
        settings.http_max_connections_per_ip, settings.http_header_timeout)
    config = uvicorn.Config(app, lifespan="off", access_log=False, log_config=None,
                            timeout_graceful_shutdown=5, server_header=False,
                            http=guarded_protocol(guard),
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
        sweep_forever(services.engine, services.blobs, settings.orphan_sweep_interval,
                      paused=services.journal_pending),
        name="orphan-sweep"))
    services.tasks.append(asyncio.create_task(
        replay_forever(services.writer, services.engine), name="journal-replay"))
    services.tasks.append(asyncio.create_task(
        services.retention.run_forever(settings.retention_interval), name="retention"))
    services.tasks.append(asyncio.create_task(services.webhooks.run(), name="webhooks"))
    services.tasks.append(asyncio.create_task(services.loop_monitor.run(), name="loop-monitor"))
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
    await _step("metadata writer", services.writer.stop())
    await _step("analysis workers", _stop_analyzer(services))
    await _step("webhooks", services.webhooks.close())
    await _step("directory", services.directory.stop())
    await _step("database", services.engine.dispose())
    log.info("mailsac stopped")


async def serve(settings: Settings, database_url: str) -> None:
    """Run until SIGINT/SIGTERM, then shut down in order."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    services = build_services(settings, database_url)
    reloads: set[asyncio.Task[bool]] = set()

    def reload_certificate() -> None:  # SIGHUP
        if services.tls is not None:
            task = asyncio.create_task(services.tls.reload("SIGHUP"), name="tls-reload")
            reloads.add(task)
            task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, reload_certificate)
    try:
        await start(services)
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
    finally:
        await stop(services)
