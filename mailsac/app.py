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
import signal
import socket
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
from mailsac.config import Settings
from mailsac.delivery import Delivery
from mailsac.directory import Directory
from mailsac.forwarding.hub import MessageHub
from mailsac.forwarding.webhooks import RetryPolicy, WebhookDispatcher
from mailsac.gate import SenderGate, parse_limit_overrides
from mailsac.loopmon import LoopMonitor
from mailsac.mailbox import Mailboxes
from mailsac.pop3 import Pop3Listener, build_pop3
from mailsac.smtp.admission import Admission
from mailsac.smtp.handler import MailsacHandler
from mailsac.smtp.server import SmtpListener
from mailsac.spam_feedback import SpamFeedback
from mailsac.storage import BlobStore, MetadataWriter
from mailsac.storage.accounts import ADMIN_ACCOUNT, ensure_account
from mailsac.storage.db import create_engine
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
    pop3: Pop3Listener | None = None
    http: _EmbeddedUvicorn | None = None
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
        }

    async def health(self) -> dict[str, Any]:
        started = time.perf_counter()
        db: dict[str, Any]
        try:
            async with asyncio.timeout(2.0):
                async with self.engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
            db = {"ok": True, "latencyMs": round((time.perf_counter() - started) * 1000, 2)}
        except Exception as exc:  # any failure means "not ready"
            db = {"ok": False, "error": type(exc).__name__}
        smtp = {"listening": self.smtp.listening, "port": self.smtp_port}
        journal = {"pending": self.journal_pending()}
        ok = bool(db["ok"]) and self.smtp.listening and not journal["pending"]
        return {"status": "ok" if ok else "degraded", "version": __version__,
                "database": db, "smtp": smtp, "journal": journal}


def build_services(settings: Settings, database_url: str) -> Services:
    engine = create_engine(database_url, pool_size=settings.db_pool_size)
    blobs = BlobStore(settings.blob_dir)
    writer = MetadataWriter(engine, Journal(
        settings.data_dir / "journal", max_age=settings.journal_max_age,
        max_bytes=settings.journal_max_bytes))
    hostname = settings.effective_hostname()
    directory = Directory(engine, database_url)
    visibility = Visibility(directory)
    hub = MessageHub()
    web_url = settings.public_url or f"http://{settings.bind}:{settings.http_port}"
    spam = SpamFeedback(engine)
    analyzer = Analyzer(spam.model, settings.analysis_workers)
    delivery = Delivery(blobs, writer, hostname, directory, hub, web_url, analyzer)
    gate = SenderGate(engine, parse_limit_overrides(settings.limits),
                      settings.throttle_max_entries)
    directory.also_reload.append(gate.reload)
    loop_monitor = LoopMonitor()
    handler = MailsacHandler(delivery, settings.domains, gate,
                             lambda inbox: directory.owner_of_inbox(inbox) is not None)
    admission = Admission(
        max_total=settings.max_connections, max_per_ip=settings.max_connections_per_ip,
        max_per_network=settings.max_connections_per_network,
        wait_timeout=settings.admission_timeout,
        overloaded=lambda: loop_monitor.lag > 1.0 or writer.queue_depth > 5000)
    loop_monitor.on_tick.append(admission.poke)
    smtp = SmtpListener(handler, hostname=hostname, max_message_size=settings.max_message_size,
                        timeout=settings.smtp_timeout, admission=admission, gate=gate,
                        pressure_timeout=settings.pressure_timeout,
                        max_data_seconds=settings.max_data_seconds,
                        max_commands=settings.max_commands)
    mailboxes = Mailboxes(engine, blobs, settings.cache_bytes, visibility, hub, spam)
    addresses = Addresses(engine, directory, mailboxes.drop_blobs)
    auth = KeyAuthenticator(engine)
    retention = RetentionSweeper(engine, mailboxes.drop_blobs, RetentionPolicy(
        public_inbox_limit=settings.public_inbox_limit,
        public_max_age=timedelta(hours=settings.public_max_age_hours)))
    delivery.add_listener(retention.touched)

    def secret_for(address: str) -> str | None:
        record = directory.addresses.get(address)
        return record.webhook_secret if record is not None else None

    webhooks = WebhookDispatcher(engine, secret_for, policy=RetryPolicy(
        max_attempts=settings.webhook_max_attempts, base_delay=settings.webhook_retry_base,
        timeout=settings.webhook_timeout))
    delivery.on_new_deliveries = webhooks.wake
    services = Services(
        settings=settings, engine=engine, blobs=blobs, writer=writer, delivery=delivery,
        mailboxes=mailboxes, auth=auth, smtp=smtp, directory=directory, addresses=addresses,
        account_mail=AccountMail(engine, directory, visibility, mailboxes.drop_blobs),
        admin=Admin(engine, addresses, auth), retention=retention, hub=hub, webhooks=webhooks,
        spam=spam, gate=gate, loop_monitor=loop_monitor, analyzer=analyzer,
    )
    services.pop3 = build_pop3(services, settings)
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
            log.warning("no API key existed, so one was created (shown only once): %s", plain)
            log.warning("create more with: python -m mailsac keys create --name NAME")
    await services.directory.start()
    await services.spam.load()
    await services.analyzer.start()
    services.writer.start()
    services.smtp_port = await services.smtp.start(settings.bind, settings.smtp_port)
    if services.pop3 is not None:
        services.pop3_port = await services.pop3.start(settings.bind, settings.pop3_port)
    context = ApiContext(
        mailboxes=services.mailboxes, auth=services.auth, health=services.health,
        addresses=services.addresses, account_mail=services.account_mail,
        admin=services.admin, hub=services.hub, gate=services.gate,
        metrics=services.metrics, accepted_domains=settings.domains,
        ws_send_timeout=settings.ws_send_timeout)
    app = create_app(context, ui_domain=settings.ui_domain, ui_public=settings.ui_public)
    sock = _http_socket(settings.bind, settings.http_port)
    services.http_port = int(sock.getsockname()[1])
    config = uvicorn.Config(app, lifespan="off", access_log=False, log_config=None,
                            timeout_graceful_shutdown=5, server_header=False)
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
    log.info("mailsac %s ready: SMTP %s:%d, HTTP http://%s:%d", __version__, settings.bind,
             services.smtp_port, settings.bind, services.http_port)


async def _step(name: str, action: Awaitable[Any]) -> None:
    """One shutdown step: a failure is logged and the remaining steps still run."""
    try:
        await action
    except Exception:
        log.exception("shutdown step %r failed", name)


async def _stop_tasks(services: Services) -> None:
    if services.http is not None:
        services.http.should_exit = True
    for task in services.tasks:
        if task.get_name() != "http":
            task.cancel()
    await asyncio.gather(*services.tasks, return_exceptions=True)


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
    try:
        await start(services)
        if settings.ready_file:
            with open(settings.ready_file, "w") as f:
                json.dump({"smtp_port": services.smtp_port, "http_port": services.http_port,
                           "pop3_port": services.pop3_port}, f)
        await stopping.wait()
        log.info("shutdown requested")
    finally:
        await stop(services)
