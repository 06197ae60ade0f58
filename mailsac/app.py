"""Composition root: build every service from settings (:func:`build_services`) and wire
them together; :mod:`mailsac.lifecycle` starts them on one event loop and stops them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
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
from mailsac.capture import Capture
from mailsac.chaos import Chaos
from mailsac.cluster_events import ClusterEvents
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
)
from mailsac.listeners.admission import Admission
from mailsac.listeners.proxy import TrustedProxies
from mailsac.listeners.tls import CertificateStore
from mailsac.loopmon import LoopMonitor
from mailsac.mailbox import Mailboxes
from mailsac.node import describe
from mailsac.pop3 import Pop3Listener, build_pop3
from mailsac.smtp.auth import build_auth as build_smtp_auth
from mailsac.smtp.budget import DataBudget
from mailsac.smtp.handler import MailsacHandler
from mailsac.smtp.listener import SmtpListener
from mailsac.spam_autolearn import AutoLearner
from mailsac.spam_feedback import SpamFeedback
from mailsac.storage import BlobStore, MetadataWriter
from mailsac.storage.blobs_select import create_blob_store
from mailsac.storage.db import connect_options, create_engine, known_unavailable, liveness
from mailsac.storage.joblock import retention_key
from mailsac.storage.journal import Journal
from mailsac.storage.readpool import ReadPool
from mailsac.storage.retention import RetentionPolicy, RetentionSweeper
from mailsac.visibility import Visibility

log = logging.getLogger(__name__)


@dataclass
class Services:
    """Everything the running service consists of."""

    settings: Settings
    engine: AsyncEngine
    reads: ReadPool
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
    http: uvicorn.Server | None = None
    http_guard: ConnectionGuard | None = None
    nofile_limit: int | None = None
    reuse_port: bool = False  # a --processes child: its siblings bind the same ports
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    cluster: ClusterEvents | None = None  # other nodes' message changes → hub
    autolearn: AutoLearner | None = None  # MAILSAC_SPAM_AUTOLEARN
    chaos: Chaos | None = None  # SMTP failure-injection rules (issue 19)
    draining: bool = False  # SIGTERM came: GET /readyz answers 503 (MAILSAC_DRAIN_SECONDS)

    def ready(self) -> bool:
        """May a load balancer send this node traffic? Not once it is draining."""
        return not self.draining and self.smtp.listening

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
            "throttle_sync": self.gate.sync_metrics(),
            "loop_lag": self.loop_monitor.lag,
            "db_commits": self.writer.batches,
            "db_commit_seconds": self.writer.commit_seconds,
            "writer_queue": self.writer.queue_depth,
            "hub_subscribers": self.hub.subscriber_count,
            "hub_dropped": self.hub.dropped,
            "retention_passes": self.retention.passes,
            "retention_skipped": self.retention.skipped,
            "cluster_notifications": self.cluster.received if self.cluster else 0,
            "cluster_published": self.cluster.published if self.cluster else 0,
            "webhooks": dict(self.webhooks.outcomes),
            "smtp_auth": dict(handler.auth.outcomes) if handler.auth else {},
            "spam_followed": self.spam.followed,
            "spam_autolearn": dict(self.autolearn.outcomes) if self.autolearn else {},
            "cache_bytes": self.mailboxes.cache.bytes,
            "render_cache_bytes": self.mailboxes.renderings.cache.bytes,
            "data_memory_used": self.smtp.budget.used,
            "data_memory_refused": self.smtp.budget.refused,
            "http_connections": self.http_guard.total if self.http_guard else 0,
            "http_refused": self.http_guard.refused if self.http_guard else 0,
            "http_header_timeouts": self.http_guard.header_timeouts if self.http_guard else 0,
            "http_oversized_heads": self.http_guard.oversized_heads if self.http_guard else 0,
            "db_available": not known_unavailable(self.engine),
            "chaos": self.chaos.metrics() if self.chaos else {},
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
                "database": db, "smtp": smtp, "journal": journal, "node": describe()}


def build_services(settings: Settings, database_url: str,
                   journal_dir: Path | None = None) -> Services:
    engine = create_engine(database_url, pool_size=settings.db_pool_size,
                           connect_timeout=settings.db_connect_timeout, cluster=settings.cluster)
    reads = ReadPool(engine, connect_options(connect_timeout=settings.db_connect_timeout,
                                             cluster=settings.cluster))
    blobs = create_blob_store(settings, engine)
    writer = MetadataWriter(engine, Journal(
        journal_dir or settings.data_dir / "journal", max_age=settings.journal_max_age,
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
                      settings.throttle_max_entries, database_url=database_url,
                      cluster=settings.cluster, sync_interval=settings.throttle_sync_interval)
    directory.also_reload.append(gate.reload)
    loop_monitor = LoopMonitor()
    auth = KeyAuthenticator(engine)
    # SMTP AUTH (account name + API key) turns a session into Email Capture.
    handler = MailsacHandler(
        delivery, settings.domains, gate, directory.owner_of_inbox,
        auth=build_smtp_auth(settings, auth, directory.owner_of_inbox, gate),
        capture=Capture(engine, star_limit=visibility.star_limit),
        chaos=Chaos(engine, database_url, owner_of_inbox=directory.owner_of_inbox,
                    domain_owner=lambda d: getattr(directory.domains.get(d), "account_id",
                                                   None)))
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
                        proxies=TrustedProxies(settings.trusted_proxies),
                        proxy_timeout=settings.proxy_timeout,
                        auth_require_tls=False)  # the handler decides (mailsac.smtp.auth)
    loop_monitor.on_tick.append(smtp.check_pressure)
    mailboxes = Mailboxes(engine, reads, blobs, settings.cache_bytes, visibility, hub, spam,
                          render_cache_bytes=settings.render_cache_bytes)
    addresses = Addresses(engine, directory, mailboxes.drop_blobs,
                          max_aliases=settings.max_aliases_per_account)
    retention = RetentionSweeper(engine, mailboxes.drop_blobs, RetentionPolicy(
        public_inbox_limit=settings.public_inbox_limit,
        public_max_age=timedelta(hours=settings.public_max_age_hours),
        webhook_payload_max_age=timedelta(hours=settings.webhook_payload_retention_hours),
        webhook_history_max_age=timedelta(hours=settings.webhook_history_retention_hours)))
    retention.lock_key = retention_key(settings.cluster)  # one runner per service
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
        settings=settings, engine=engine, reads=reads, blobs=blobs, writer=writer,
        delivery=delivery, mailboxes=mailboxes, auth=auth, smtp=smtp, directory=directory,
        addresses=addresses,
        account_mail=AccountMail(engine, directory, visibility, mailboxes.drop_blobs),
        admin=Admin(engine, addresses, auth), retention=retention, hub=hub, webhooks=webhooks,
        spam=spam, gate=gate, loop_monitor=loop_monitor, analyzer=analyzer, tls=tls,
        cluster=ClusterEvents(engine, database_url, hub, directory,
                              touched=retention.touched_items, cluster=settings.cluster),
        chaos=handler.chaos,
    )

    if settings.spam_autolearn:
        services.autolearn = AutoLearner(
            spam, blobs.read, spam_at=settings.spam_autolearn_spam,
            ham_at=settings.spam_autolearn_ham, per_hour=settings.spam_autolearn_per_hour)
        delivery.add_listener(services.autolearn.offer)

    def pop3_denied(ip: str) -> str | None:  # the gate's deny-list, current after reloads
        entry = gate.deny.match_ip(ip)
        return None if entry is None else (entry.reason or "deny-listed")

    services.pop3 = build_pop3(settings, auth=auth, mailboxes=mailboxes,
                               loop_monitor=loop_monitor, denied=pop3_denied, tls=tls)
    return services
