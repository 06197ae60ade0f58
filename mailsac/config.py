"""Typed, immutable settings loaded once from ``MAILSAC_*`` variables and CLI flags.

Every setting is declared once, as a dataclass field whose metadata names its environment
variable and describes it. :func:`add_arguments` turns the same declarations into
``argparse`` flags (``--smtp-port`` …) whose help text shows the default, and
:func:`load_settings` merges defaults < environment < flags. No other module reads
``os.environ`` for configuration; tests build :class:`Settings` directly.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


def _setting(default: Any, env: str, help: str, *, flag: bool = True,
             secret: bool = False) -> Any:
    # A secret is kept out of repr() and usage_table() values (so out of logs).
    return field(default=default, repr=not secret,
                 metadata={"env": env, "help": help, "flag": flag, "secret": secret})


@dataclass(frozen=True)
class Settings:
    """All runtime settings of the service (see ``python -m mailsac serve --help``)."""

    data_dir: Path = _setting(
        Path("./mailsac-data"), "MAILSAC_DATA_DIR",
        "directory for raw message blobs and the embedded PostgreSQL")
    database_url: str = _setting(
        "", "DATABASE_URL",
        "PostgreSQL URL; empty starts a private embedded PostgreSQL under the data dir")
    bind: str = _setting(
        "127.0.0.1", "MAILSAC_BIND",
        "address the SMTP and HTTP listeners bind to (0.0.0.0 or :: to serve others)")
    smtp_port: int = _setting(2525, "MAILSAC_SMTP_PORT", "SMTP listener port (0 = any free)")
    smtps_port: int = _setting(
        -1, "MAILSAC_SMTPS_PORT",
        "implicit-TLS SMTP (SMTPS, 465-style) listener port (-1 = off, 0 = any free)")
    http_port: int = _setting(8080, "MAILSAC_HTTP_PORT", "HTTP API listener port (0 = any free)")
    hostname: str = _setting(
        "", "MAILSAC_HOSTNAME", "name used in the SMTP banner and Received headers "
        "(empty = this machine's FQDN)")
    domains: tuple[str, ...] = _setting(
        (), "MAILSAC_DOMAINS",
        "comma-separated domains to accept mail for; empty accepts every domain")
    max_message_size: int = _setting(
        2_621_440, "MAILSAC_MAX_MESSAGE_SIZE",
        "largest accepted message in bytes (advertised as SIZE; larger gets 552)")
    smtp_timeout: float = _setting(
        300.0, "MAILSAC_SMTP_TIMEOUT", "seconds an idle SMTP session may wait between commands")
    shutdown_grace: float = _setting(
        15.0, "MAILSAC_SHUTDOWN_GRACE",
        "seconds in-flight SMTP sessions get to finish on shutdown")
    admin_key: str = _setting(
        "", "MAILSAC_ADMIN_KEY",
        "if set, this API key is registered (hashed) at start-up, named 'admin'")
    cache_bytes: int = _setting(
        64 * 1024 * 1024, "MAILSAC_CACHE_BYTES",
        "memory budget of the parsed-message cache used by body/attachment endpoints")
    # Body renderings (issue 14): text/dirty/sanitized bodies are computed once, cached
    render_cache_bytes: int = _setting(
        64 * 1024 * 1024, "MAILSAC_RENDER_CACHE_BYTES",
        "memory budget of the cache of body renderings (text, HTML, sanitized HTML)")
    blob_root: str = _setting(
        "", "MAILSAC_BLOB_DIR",
        "directory of the local blob store (default: blobs/ under the data directory); "
        "several processes or machines may share one (e.g. a network file system)")
    orphan_sweep_interval: float = _setting(
        3600.0, "MAILSAC_ORPHAN_SWEEP_INTERVAL",
        "seconds between sweeps that delete blobs no message refers to")
    # -- blob storage backend (mailsac.storage.blobs_*; README "Blob storage backends") ---
    blob_backend: str = _setting(
        "local", "MAILSAC_BLOB_BACKEND",
        "where raw messages are stored: 'local' (the data dir), 'postgres' (the database) "
        "or 's3' (an S3-compatible bucket, MAILSAC_S3_*)")
    blob_timeout: float = _setting(
        30.0, "MAILSAC_BLOB_TIMEOUT",
        "seconds one postgres/s3 blob operation may take (then the message gets 451)")
    s3_bucket: str = _setting("", "MAILSAC_S3_BUCKET", "S3 bucket for raw messages")
    s3_endpoint_url: str = _setting(
        "", "MAILSAC_S3_ENDPOINT_URL",
        "S3 API endpoint, e.g. http://minio:9000 (empty = AWS for MAILSAC_S3_REGION)")
    s3_region: str = _setting("us-east-1", "MAILSAC_S3_REGION", "S3 region (signing scope)")
    s3_access_key_id: str = _setting(
        "", "MAILSAC_S3_ACCESS_KEY_ID",
        "S3 access key id (empty = the AWS_* environment, profile or instance role)")
    s3_secret_access_key: str = _setting(
        "", "MAILSAC_S3_SECRET_ACCESS_KEY",
        "S3 secret access key (environment only, never logged)", flag=False, secret=True)
    s3_prefix: str = _setting(
        "", "MAILSAC_S3_PREFIX", "prefix of the object names, e.g. 'mailsac/'")
    s3_path_style: bool = _setting(
        False, "MAILSAC_S3_PATH_STYLE",
        "path-style URLs (endpoint/bucket/key), as MinIO, Garage, SeaweedFS and Ceph need")
    s3_connect_timeout: float = _setting(
        5.0, "MAILSAC_S3_CONNECT_TIMEOUT", "seconds to connect to the S3 endpoint")
    s3_read_timeout: float = _setting(
        30.0, "MAILSAC_S3_READ_TIMEOUT", "seconds an S3 request may wait for data")
    s3_max_connections: int = _setting(
        50, "MAILSAC_S3_MAX_CONNECTIONS", "open HTTP connections to the S3 endpoint")
    public_inbox_limit: int = _setting(
        6, "MAILSAC_PUBLIC_INBOX_LIMIT", "newest messages a public inbox keeps (Mailsac: 6)")
    public_max_age_hours: float = _setting(
        96.0, "MAILSAC_PUBLIC_MAX_AGE_HOURS", "hours public mail is kept (Mailsac: 4 days)")
    retention_interval: float = _setting(
        60.0, "MAILSAC_RETENTION_INTERVAL", "seconds between retention sweeps")
    ui_domain: str = _setting(
        "", "MAILSAC_UI_DOMAIN", "domain pre-filled in the web viewer's address form")
    ui_public: str = _setting(
        "latest", "MAILSAC_UI_PUBLIC",
        "what the keyless web viewer shows of a public inbox: 'latest' message or 'full'")
    public_url: str = _setting(
        "", "MAILSAC_PUBLIC_URL",
        "base URL people use to reach the web UI, for links in Slack posts "
        "(empty = http://BIND:HTTP_PORT)")
    ws_send_timeout: float = _setting(
        10.0, "MAILSAC_WS_SEND_TIMEOUT",
        "seconds a WebSocket client may take to accept a frame before it is disconnected")
    webhook_timeout: float = _setting(
        10.0, "MAILSAC_WEBHOOK_TIMEOUT", "seconds a webhook receiver gets to answer")
    webhook_max_attempts: int = _setting(
        8, "MAILSAC_WEBHOOK_MAX_ATTEMPTS", "attempts before a webhook delivery is given up")
    webhook_retry_base: float = _setting(
        2.0, "MAILSAC_WEBHOOK_RETRY_BASE",
        "seconds before the first retry; doubles per attempt, capped at one hour")
    # -- webhook egress guard and fairness (mailsac.forwarding) ---------------------------
    webhook_allow_private: bool = _setting(
        False, "MAILSAC_WEBHOOK_ALLOW_PRIVATE",
        "let webhooks/Slack reach loopback, private, link-local and CGNAT addresses "
        "(self-hosted setups only; multicast and 0.0.0.0 stay refused)")
    webhook_concurrency: int = _setting(
        32, "MAILSAC_WEBHOOK_CONCURRENCY", "webhook/Slack requests in flight in total")
    webhook_per_account: int = _setting(
        4, "MAILSAC_WEBHOOK_PER_ACCOUNT", "webhook/Slack requests in flight per account")
    webhook_per_host: int = _setting(
        8, "MAILSAC_WEBHOOK_PER_HOST",
        "webhook/Slack requests in flight per destination host:port")
    webhook_breaker_failures: int = _setting(
        5, "MAILSAC_WEBHOOK_BREAKER_FAILURES",
        "consecutive connect failures/timeouts before a destination host is paused")
    webhook_breaker_cooldown: float = _setting(
        60.0, "MAILSAC_WEBHOOK_BREAKER_COOLDOWN",
        "seconds a failing destination host is paused (its deliveries wait, attempts kept)")
    limits: str = _setting(
        "", "MAILSAC_LIMITS",
        "rate-limit overrides, e.g. 'ip=600,network=1200,sender_org=300,reply_to_org=300,"
        "rcpt_public=120,rcpt_private=600,ip_connections=600,ip.window_seconds=60' (0 disables)")
    throttle_max_entries: int = _setting(
        1_000_000, "MAILSAC_THROTTLE_MAX_ENTRIES",
        "memory cap of the rate-limit counter in entries (about 43 bytes each)")
    cluster: str = _setting(
        "default", "MAILSAC_CLUSTER",
        "name of the service this node belongs to: nodes on one database with the same "
        "name share throttle counts (one service), different names never do")
    throttle_sync_interval: float = _setting(
        1.0, "MAILSAC_THROTTLE_SYNC_INTERVAL",
        "seconds between exchanges of throttle counts with the cluster's other nodes "
        "through the database (0 = each node limits on its own counts)")
    max_connections: int = _setting(
        1000, "MAILSAC_MAX_CONNECTIONS", "concurrent SMTP sessions in total")
    max_connections_per_ip: int = _setting(
        25, "MAILSAC_MAX_CONNECTIONS_PER_IP", "concurrent SMTP sessions per client IP")
    max_connections_per_network: int = _setting(
        50, "MAILSAC_MAX_CONNECTIONS_PER_NETWORK",
        "concurrent SMTP sessions per /24 (IPv4) or /56 (IPv6)")
    # -- SMTP memory and slot holding (mailsac.smtp.server, mailsac.listeners) -------------
    max_connections_per_supernet: int = _setting(
        150, "MAILSAC_MAX_CONNECTIONS_PER_SUPERNET",
        "concurrent SMTP sessions per /16 (IPv4) or /48 (IPv6)")
    data_memory_budget: int = _setting(
        128 * 1024 * 1024, "MAILSAC_DATA_MEMORY_BUDGET",
        "bytes of in-flight SMTP DATA held in memory by all sessions together (larger "
        "messages stream to disk; DATA gets 451 4.3.1 when none is free)")
    smtp_max_session_seconds: float = _setting(
        1800.0, "MAILSAC_SMTP_MAX_SESSION_SECONDS",
        "absolute lifetime of an SMTP session (then 421)")
    smtp_pressure_session_seconds: float = _setting(
        300.0, "MAILSAC_SMTP_PRESSURE_SESSION_SECONDS",
        "absolute lifetime of an SMTP session while more than half the slots are in use")
    admission_timeout: float = _setting(
        30.0, "MAILSAC_ADMISSION_TIMEOUT",
        "seconds a connection waits for a free slot before it gets 421")
    pressure_timeout: float = _setting(
        30.0, "MAILSAC_PRESSURE_TIMEOUT",
        "idle timeout of SMTP sessions while more than half the slots are in use")
    max_data_seconds: float = _setting(
        600.0, "MAILSAC_MAX_DATA_SECONDS", "longest a DATA transfer may take (then 421)")
    max_commands: int = _setting(
        1000, "MAILSAC_MAX_COMMANDS", "times one SMTP command may be sent per session")
    journal_max_age: float = _setting(
        600.0, "MAILSAC_JOURNAL_MAX_AGE",
        "seconds SMTP keeps accepting (journaling) during a database outage; then 421")
    journal_max_bytes: int = _setting(
        512 * 1024 * 1024, "MAILSAC_JOURNAL_MAX_BYTES", "size cap of the outage journal")
    # -- SMTP AUTH and Email Capture (mailsac.smtp.auth, mailsac.credentials, capture) ----
    capture_port: int = _setting(
        -1, "MAILSAC_CAPTURE_PORT",
        "Email Capture SMTP port, where MAIL needs AUTH first (Mailsac uses 5587; -1 = off, "
        "0 = any free)")
    smtp_auth_plaintext: str = _setting(
        "never", "MAILSAC_SMTP_AUTH_PLAINTEXT",
        "where SMTP AUTH is offered without TLS: 'never' (only after STARTTLS or on SMTPS), "
        "'loopback' (also to clients on 127.0.0.0/8 and ::1) or 'always'")
    smtp_auth_accept_any: bool = _setting(
        False, "MAILSAC_SMTP_AUTH_ACCEPT_ANY",
        "answer SMTP AUTH with invalid credentials 235 too, as an anonymous session (for "
        "clients that insist on AUTH; not on the capture port)")
    smtp_auth_delay: float = _setting(
        1.0, "MAILSAC_SMTP_AUTH_DELAY", "seconds before a failed SMTP AUTH is answered")
    smtp_auth_failures: int = _setting(
        10, "MAILSAC_SMTP_AUTH_FAILURES",
        "failed SMTP AUTH attempts per client IP (IPv6: /64) per window before AUTH is "
        "refused with 454 (a /24 or /56 network: 5 times as many)")
    smtp_auth_window: float = _setting(
        600.0, "MAILSAC_SMTP_AUTH_WINDOW", "window of MAILSAC_SMTP_AUTH_FAILURES in seconds")
    # -- POP3 (mailsac.pop3) and TLS ---------------------------------------------------
    pop3_port: int = _setting(1100, "MAILSAC_POP3_PORT", "POP3 listener port (0 = any free)")
    pop3_timeout: float = _setting(
        600.0, "MAILSAC_POP3_TIMEOUT",
        "seconds an idle POP3 session is kept (RFC 1939 autologout: at least 600)")
    pop3_auth_delay: float = _setting(
        1.0, "MAILSAC_POP3_AUTH_DELAY", "seconds before a failed POP3 login is answered")
    pop3_auth_failures: int = _setting(
        10, "MAILSAC_POP3_AUTH_FAILURES",
        "failed POP3 logins per client IP per window before logins are refused")
    pop3_auth_window: float = _setting(
        600.0, "MAILSAC_POP3_AUTH_WINDOW", "window of MAILSAC_POP3_AUTH_FAILURES in seconds")
    tls_cert: str = _setting(
        "", "MAILSAC_TLS_CERT", "PEM certificate chain for STARTTLS, SMTPS and STLS (empty = "
        "a self-signed certificate generated in DATA_DIR/tls)")
    tls_key: str = _setting(
        "", "MAILSAC_TLS_KEY", "PEM private key of MAILSAC_TLS_CERT (empty = generated)")
    tls_reload_interval: float = _setting(
        5.0, "MAILSAC_TLS_RELOAD_INTERVAL",
        "seconds between checks whether the certificate files changed (then they are "
        "reloaded; 0 = only on SIGHUP)")
    tls_handshake_timeout: float = _setting(
        30.0, "MAILSAC_TLS_HANDSHAKE_TIMEOUT",
        "seconds an SMTP client gets to complete a TLS handshake (STARTTLS or SMTPS)")
    smtp_require_tls: bool = _setting(
        False, "MAILSAC_SMTP_REQUIRE_TLS",
        "refuse MAIL (and all but EHLO, STARTTLS, NOOP, QUIT) before STARTTLS with 530 5.7.0")
    pop3_plaintext_loopback: bool = _setting(
        True, "MAILSAC_POP3_PLAINTEXT_LOOPBACK",
        "allow POP3 logins without STLS from loopback clients (others must use STLS)")
    pop3_login_timeout: float = _setting(
        30.0, "MAILSAC_POP3_LOGIN_TIMEOUT",
        "seconds a POP3 client has from connecting until it is logged in")
    pop3_max_session_seconds: float = _setting(
        3600.0, "MAILSAC_POP3_MAX_SESSION_SECONDS", "absolute lifetime of a POP3 session")
    pop3_prelogin_per_ip: int = _setting(
        10, "MAILSAC_POP3_PRELOGIN_PER_IP",
        "POP3 sessions not yet logged in per client IP (more are refused at once)")
    pop3_prelogin_per_network: int = _setting(
        30, "MAILSAC_POP3_PRELOGIN_PER_NETWORK",
        "POP3 sessions not yet logged in per /24 (IPv4) or /56 (IPv6)")
    pop3_prelogin_total: int = _setting(
        100, "MAILSAC_POP3_PRELOGIN_TOTAL", "POP3 sessions not yet logged in, in total")
    # -- tenant isolation and quotas (addresses, visibility, webhooks history, feedback) --
    webhook_payload_retention_hours: float = _setting(
        72.0, "MAILSAC_WEBHOOK_PAYLOAD_RETENTION_HOURS",
        "hours a webhook/Slack delivery keeps its payload (dropped at once when the message "
        "is deleted)")
    webhook_history_retention_hours: float = _setting(
        720.0, "MAILSAC_WEBHOOK_HISTORY_RETENTION_HOURS",
        "hours finished webhook/Slack delivery rows are kept for /webhook-deliveries")
    max_starred_per_account: int = _setting(
        10_000, "MAILSAC_MAX_STARRED_PER_ACCOUNT",
        "starred messages an account may hold (also capped by its messageLimit)")
    max_aliases_per_account: int = _setting(
        1_000, "MAILSAC_MAX_ALIASES_PER_ACCOUNT",
        "secret inbox aliases an account may create for inboxes it does not reserve")
    spam_feedback_max_rows: int = _setting(
        200_000, "MAILSAC_SPAM_FEEDBACK_MAX_ROWS",
        "stored spam/ham feedback rows in total; beyond it feedback is refused (403)")
    spam_feedback_per_account: int = _setting(
        500, "MAILSAC_SPAM_FEEDBACK_PER_ACCOUNT",
        "spam (and not-spam) feedback rows per account and class (at most the model's 500)")
    spam_follow_interval: float = _setting(
        2.0, "MAILSAC_SPAM_FOLLOW_INTERVAL",
        "seconds between polls for spam feedback stored by other nodes (their lessons "
        "reach this node's scores within it)")
    spam_autolearn: bool = _setting(
        False, "MAILSAC_SPAM_AUTOLEARN",
        "learn confidently scored new mail automatically (capped like one account; see "
        "README for the risks)")
    spam_autolearn_spam: float = _setting(
        0.99, "MAILSAC_SPAM_AUTOLEARN_SPAM", "auto-learn mail scoring at least this as spam")
    spam_autolearn_ham: float = _setting(
        0.01, "MAILSAC_SPAM_AUTOLEARN_HAM", "auto-learn mail scoring at most this as ham")
    spam_autolearn_per_hour: int = _setting(
        200, "MAILSAC_SPAM_AUTOLEARN_PER_HOUR", "auto-learned messages per hour at most")
    # -- HTTP limits (mailsac.httpserver, mailsac.api.limits, web viewer sessions) --------
    http_max_body: int = _setting(
        1024 * 1024, "MAILSAC_HTTP_MAX_BODY",
        "largest HTTP request body in bytes (413 from Content-Length, before reading)")
    http_body_timeout: float = _setting(
        30.0, "MAILSAC_HTTP_BODY_TIMEOUT",
        "seconds a request body may stall between chunks (then 408)")
    http_header_timeout: float = _setting(
        10.0, "MAILSAC_HTTP_HEADER_TIMEOUT",
        "seconds a connection gets to send complete request headers (also between "
        "keep-alive requests); then it is closed")
    event_loop: str = _setting(
        "auto", "MAILSAC_EVENT_LOOP",
        "event loop: auto (uvloop when installed), uvloop or asyncio")
    http_max_connections: int = _setting(
        8192, "MAILSAC_HTTP_MAX_CONNECTIONS",
        "open HTTP connections in total (at most half the open-file limit); more get 503")
    http_max_connections_per_ip: int = _setting(
        1100, "MAILSAC_HTTP_MAX_CONNECTIONS_PER_IP",
        "open HTTP connections per client IP (IPv6: per /64); more get 503")
    max_streams_per_ip: int = _setting(
        1024, "MAILSAC_MAX_STREAMS_PER_IP",
        "open SSE streams, WebSocket feeds and long-poll waits per client IP (more get 429)")
    max_streams_per_key: int = _setting(
        1024, "MAILSAC_MAX_STREAMS_PER_KEY",
        "open SSE streams, WebSocket feeds and long-poll waits per API key (more get 429)")
    web_sessions: int = _setting(
        10_000, "MAILSAC_WEB_SESSIONS",
        "signed-in web viewer sessions in total (new ones are refused when full)")
    web_sessions_per_ip: int = _setting(
        20, "MAILSAC_WEB_SESSIONS_PER_IP", "signed-in web viewer sessions per client IP")
    web_session_idle: float = _setting(
        4 * 3600.0, "MAILSAC_WEB_SESSION_IDLE",
        "seconds an unused web viewer session lives before it expires")
    # -- behind a load balancer (mailsac.listeners.proxy, GET /readyz) -------------------
    trusted_proxies: tuple[str, ...] = _setting(
        (), "MAILSAC_TRUSTED_PROXIES",
        "comma-separated networks (CIDRs) of load balancers: SMTP, SMTPS, capture and POP3 "
        "connections from them must start with a PROXY protocol v1/v2 header naming the "
        "client, and HTTP requests from them may name it in X-Forwarded-For; empty = never")
    proxy_timeout: float = _setting(
        5.0, "MAILSAC_PROXY_TIMEOUT",
        "seconds a trusted load balancer gets to send its PROXY header; then the "
        "connection is closed")
    drain_seconds: float = _setting(
        0.0, "MAILSAC_DRAIN_SECONDS",
        "on SIGTERM, seconds the node answers GET /readyz with 503 while still serving, "
        "so a load balancer moves traffic away, before it closes its listeners")
    # -----------------------------------------------------------------------------------
    analysis_workers: int = _setting(
        max(1, os.cpu_count() or 1), "MAILSAC_ANALYSIS_WORKERS",
        "worker processes that parse and tokenise incoming mail (0 = threads)")
    processes: int = _setting(
        1, "MAILSAC_PROCESSES",
        "serve: run this many full nodes on this machine, sharing the ports (SO_REUSEPORT) "
        "and the database, under a small supervisor (1 = one process, no supervisor)")
    db_pool_size: int = _setting(10, "MAILSAC_DB_POOL_SIZE", "database connection pool size")
    # -- database hang detection (mailsac.storage.db, mailsac.storage.writer) -------------
    db_connect_timeout: float = _setting(
        2.0, "MAILSAC_DB_CONNECT_TIMEOUT", "seconds to open a database connection")
    db_commit_timeout: float = _setting(
        1.5, "MAILSAC_DB_COMMIT_TIMEOUT",
        "seconds a metadata commit may take before intake moves to the outage journal")
    log_level: str = _setting("INFO", "MAILSAC_LOG_LEVEL", "logging level")
    ready_file: str = _setting(
        "", "MAILSAC_READY_FILE",
        "once listening, write {\"smtp_port\", \"http_port\", \"pop3_port\", \"smtps_port\", "
        "\"capture_port\"} as JSON to this file (for scripts; smtps_port and capture_port "
        "are -1 when off)")

    @property
    def blob_dir(self) -> Path:
        return Path(self.blob_root) if self.blob_root else self.data_dir / "blobs"

    @property
    def postgres_dir(self) -> Path:
        return self.data_dir / "postgres"

    def effective_hostname(self) -> str:
        import socket

        return self.hostname or socket.getfqdn()


class SettingsError(ValueError):
    """A setting could not be parsed or failed validation."""


def _convert(name: str, kind: Any, raw: str) -> Any:
    try:
        if kind in (bool, "bool"):
            if raw.strip().lower() not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                raise ValueError("expected true or false")
            return raw.strip().lower() in ("1", "true", "yes", "on")
        if kind in (int, "int"):
            return int(raw.replace("_", ""))
        if kind in (float, "float"):
            return float(raw)
        if kind in (Path, "Path"):
            return Path(raw)
        if kind in ("tuple[str, ...]",):
            return tuple(part.strip().lower() for part in raw.split(",") if part.strip())
        return raw
    except ValueError as exc:
        raise SettingsError(f"{name}: cannot parse {raw!r}: {exc}") from exc


def _flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one ``--flag`` per setting; help shows the variable and default."""
    for f in fields(Settings):
        if not f.metadata.get("flag", True):
            continue
        default = f.default
        shown = ",".join(default) if isinstance(default, tuple) else default
        parser.add_argument(
            _flag_name(f.name), dest=f.name, default=None, metavar=f.name.upper(),
            help=f"{f.metadata['help']} [env {f.metadata['env']}, default: {shown!r}]")


def load_settings(
    environ: Mapping[str, str] | None = None,
    args: argparse.Namespace | None = None,
    **overrides: Any,
) -> Settings:
    """Build settings from defaults, then ``environ``, then parsed CLI ``args``, then overrides."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in fields(Settings):
        raw: str | None = environ.get(f.metadata["env"])
        if args is not None and getattr(args, f.name, None) is not None:
            raw = getattr(args, f.name)
        if raw is not None and raw != "":
            values[f.name] = _convert(f.metadata["env"], f.type, raw)
    values.update(overrides)
    settings = Settings(**values)
    validate(settings)
    return settings


def validate(settings: Settings) -> None:
    for port_name in ("smtp_port", "http_port"):
        port = getattr(settings, port_name)
        if not 0 <= port <= 65535:
            raise SettingsError(f"{port_name} must be between 0 and 65535, not {port}")
    if not -1 <= settings.smtps_port <= 65535:
        raise SettingsError(f"smtps_port must be -1 (off) or between 0 and 65535, "
                            f"not {settings.smtps_port}")
    if settings.tls_reload_interval < 0 or settings.tls_handshake_timeout <= 0:
        raise SettingsError("MAILSAC_TLS_RELOAD_INTERVAL must not be negative and "
                            "MAILSAC_TLS_HANDSHAKE_TIMEOUT must be positive")
    if not -1 <= settings.capture_port <= 65535:
        raise SettingsError(f"capture_port must be -1 (off) or between 0 and 65535, "
                            f"not {settings.capture_port}")
    if settings.smtp_auth_plaintext not in ("never", "loopback", "always"):
        raise SettingsError("MAILSAC_SMTP_AUTH_PLAINTEXT must be 'never', 'loopback' or "
                            "'always'")
    if (settings.smtp_auth_failures < 1 or settings.smtp_auth_window <= 0
            or settings.smtp_auth_delay < 0):
        raise SettingsError("MAILSAC_SMTP_AUTH_FAILURES and MAILSAC_SMTP_AUTH_WINDOW must be "
                            "positive and MAILSAC_SMTP_AUTH_DELAY not negative")
    if settings.max_message_size < 1024:
        raise SettingsError("max_message_size must be at least 1024 bytes")
    if min(settings.webhook_concurrency, settings.webhook_per_account, settings.webhook_per_host,
           settings.webhook_breaker_failures) < 1 or settings.webhook_timeout <= 0:
        raise SettingsError("webhook concurrency, breaker and timeout settings must be positive")
    try:
        from mailsac.gate import parse_limit_overrides

        parse_limit_overrides(settings.limits)
    except ValueError as exc:
        raise SettingsError(f"MAILSAC_LIMITS: {exc}") from exc
    from mailsac.pop3.service import check_settings as check_pop3_settings

    check_pop3_settings(settings)
    if settings.throttle_sync_interval < 0 or not settings.cluster.strip():
        raise SettingsError("MAILSAC_THROTTLE_SYNC_INTERVAL must not be negative and "
                            "MAILSAC_CLUSTER not empty")
    if settings.spam_follow_interval <= 0 or settings.spam_autolearn_per_hour <= 0 or not (
            0.0 <= settings.spam_autolearn_ham < 0.5 < settings.spam_autolearn_spam <= 1.0):
        raise SettingsError("MAILSAC_SPAM_FOLLOW_INTERVAL and MAILSAC_SPAM_AUTOLEARN_PER_HOUR "
                            "must be positive, and 0 <= MAILSAC_SPAM_AUTOLEARN_HAM < 0.5 < "
                            "MAILSAC_SPAM_AUTOLEARN_SPAM <= 1")
    if settings.ui_public not in ("latest", "full"):
        raise SettingsError("MAILSAC_UI_PUBLIC must be 'latest' or 'full'")
    if settings.public_inbox_limit < 1 or settings.public_max_age_hours <= 0:
        raise SettingsError("public_inbox_limit and public_max_age_hours must be positive")
    if settings.smtp_timeout <= 0 or settings.shutdown_grace < 0:
        raise SettingsError("timeouts must be positive")
    if settings.data_memory_budget < 256 * 1024:
        raise SettingsError("MAILSAC_DATA_MEMORY_BUDGET must be at least 262144 bytes")
    if settings.smtp_max_session_seconds <= 0 or settings.smtp_pressure_session_seconds <= 0:
        raise SettingsError("SMTP session lifetimes must be positive")
    tenant_limits = (settings.webhook_payload_retention_hours,
                     settings.webhook_history_retention_hours, settings.max_starred_per_account,
                     settings.max_aliases_per_account, settings.spam_feedback_max_rows,
                     settings.spam_feedback_per_account)
    if min(tenant_limits) <= 0:
        raise SettingsError("MAILSAC_WEBHOOK_*_RETENTION_HOURS, MAILSAC_MAX_STARRED_PER_ACCOUNT, "
                            "MAILSAC_MAX_ALIASES_PER_ACCOUNT and MAILSAC_SPAM_FEEDBACK_* must "
                            "be positive")
    http_limits = (settings.http_max_body, settings.http_body_timeout,
                   settings.http_header_timeout, settings.http_max_connections,
                   settings.http_max_connections_per_ip, settings.max_streams_per_ip,
                   settings.max_streams_per_key, settings.web_sessions,
                   settings.web_sessions_per_ip, settings.web_session_idle)
    if min(http_limits) <= 0:
        raise SettingsError("HTTP limits (MAILSAC_HTTP_*, *_STREAMS_*, WEB_SESSION*) must be "
                            "positive")
    if not 1 <= settings.processes <= 256:
        raise SettingsError("MAILSAC_PROCESSES must be between 1 and 256")
    if settings.proxy_timeout <= 0 or settings.drain_seconds < 0:
        raise SettingsError("MAILSAC_PROXY_TIMEOUT must be positive and MAILSAC_DRAIN_SECONDS "
                            "not negative")
    from mailsac.listeners.proxy import parse_networks

    try:
        parse_networks(settings.trusted_proxies)
    except ValueError as exc:
        raise SettingsError(f"MAILSAC_TRUSTED_PROXIES: {exc}") from exc
    if settings.database_url and not settings.database_url.startswith("postgresql"):
        raise SettingsError("DATABASE_URL must be a postgresql:// URL")
    if settings.event_loop not in ("auto", "uvloop", "asyncio"):
        raise SettingsError("MAILSAC_EVENT_LOOP must be auto, uvloop or asyncio")
    if settings.blob_backend not in ("local", "postgres", "s3"):
        raise SettingsError("MAILSAC_BLOB_BACKEND must be 'local', 'postgres' or 's3'")
    if settings.blob_backend == "s3" and not settings.s3_bucket:
        raise SettingsError("MAILSAC_BLOB_BACKEND=s3 needs MAILSAC_S3_BUCKET")
    if min(settings.blob_timeout, settings.s3_connect_timeout, settings.s3_read_timeout,
           settings.s3_max_connections) <= 0:
        raise SettingsError("MAILSAC_BLOB_TIMEOUT, MAILSAC_S3_*_TIMEOUT and "
                            "MAILSAC_S3_MAX_CONNECTIONS must be positive")


def usage_table(settings: Settings | None = None) -> str:
    """A plain-text table of every setting, its variable, default and description."""
    rows: list[Sequence[str]] = [("variable", "default", "description")]
    for f in fields(Settings):
        value = getattr(settings, f.name) if settings else f.default
        shown = ",".join(value) if isinstance(value, tuple) else str(value)
        if f.metadata.get("secret") and value:
            shown = "(set)"
        rows.append((f.metadata["env"], shown, f.metadata["help"]))
    widths = [max(len(r[i]) for r in rows) for i in range(2)]
    return "\n".join(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]}" for r in rows)


def replace(settings: Settings, **changes: Any) -> Settings:
    """A copy of ``settings`` with ``changes`` applied and validated."""
    new = dataclasses.replace(settings, **changes)
    validate(new)
    return new
