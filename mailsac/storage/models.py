"""SQLAlchemy Core table definitions (the schema itself is owned by Alembic migrations)."""

from __future__ import annotations

from sqlalchemy import (
    REAL,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("name", Text, nullable=False),
    # sha256 of the key: keys are 130+ random bits, so a fast hash is enough (no brute force).
    Column("key_hash", LargeBinary, nullable=False, unique=True),
    Column("key_prefix", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Column("account_id", Text, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("user_id", BigInteger, ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
    Column("is_admin", Boolean, nullable=False, server_default=text("false")),
)

accounts = Table(
    "accounts",
    metadata,
    Column("id", Text, primary_key=True),
    Column("email", Text, nullable=True),
    Column("message_limit", Integer, nullable=False, server_default="10000"),
    Column("private_address_credits", Integer, nullable=False, server_default="100"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Email Capture: mail of this account's SMTP AUTH sessions is starred for it (private).
    Column("capture_private", Boolean, nullable=False, server_default=text("false")),
)

users = Table(
    "users",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("account_id", Text, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("username", Text, nullable=False, unique=True),
    Column("email", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

domains = Table(
    "domains",
    metadata,
    Column("id", Text, primary_key=True),
    Column("account_id", Text, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("enablews", Boolean, nullable=False, server_default=text("false")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# Reserved ("enhanced"/private) addresses. A catch-all is the row "*@domain" with catch_all set.
addresses = Table(
    "addresses",
    metadata,
    Column("id", Text, primary_key=True),
    Column("account_id", Text, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("forward", Text, nullable=True),
    Column("enablews", Boolean, nullable=False, server_default=text("false")),
    Column("webhook", Text, nullable=True),
    Column("webhook_slack", Text, nullable=True),
    Column("webhook_slack_to_from", Boolean, nullable=False, server_default=text("false")),
    Column("catch_all", Text, nullable=True),
    Column("info", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # HMAC-SHA256 key for the X-Mailsac-Signature header of this address's webhooks.
    Column("webhook_secret", Text, nullable=True),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("message_id", Text, nullable=False),
    Column("address", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("url", Text, nullable=False),
    # Dropped (NULL) when the message is deleted (a trigger) or after the retention period.
    Column("payload", JSONB, nullable=True),
    Column("status", Text, nullable=False, server_default="pending"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("last_status_code", Integer, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # The account whose address settings created the delivery: the only one shown it.
    Column("account_id", Text, nullable=True),
)

# Accepted spam/ham feedback (the model's online updates), replayed at start-up.
spam_feedback = Table(
    "spam_feedback",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("account_id", Text, nullable=True),
    Column("message_id", Text, nullable=False),
    Column("is_spam", Boolean, nullable=False),
    Column("update", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# Sender IPs, networks and domains refused at SMTP time.
deny_list = Table(
    "deny_list",
    metadata,
    Column("value", Text, primary_key=True),
    Column("kind", Text, nullable=False),
    Column("reason", Text, nullable=False, server_default=""),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# Secret per-inbox aliases: mail to "<alias>@<any domain>" lands in ``inbox``.
inbox_aliases = Table(
    "inbox_aliases",
    metadata,
    Column("alias", Text, primary_key=True),
    Column("inbox", Text, nullable=False, unique=True),
    # The account charged for an alias of an inbox it does not hold (capped per account).
    Column("created_by", Text, nullable=True),
)

messages = Table(
    "messages",
    metadata,
    Column("id", Text, primary_key=True),
    Column("inbox", Text, nullable=False),
    Column("original_inbox", Text, nullable=False),
    Column("domain", Text, nullable=False),
    Column("received", DateTime(timezone=True), nullable=False),
    Column("size", Integer, nullable=False),
    # Raw bytes live in the blob directory under this key; one blob may serve several rows
    # (one per recipient of the same SMTP transaction).
    Column("blob_key", Text, nullable=False),
    Column("subject", Text, nullable=False, server_default=""),
    Column("from_addrs", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("to_addrs", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("cc_addrs", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("bcc_addrs", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("attachments", JSONB, nullable=True),
    Column("links", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("ip", Text, nullable=False, server_default=""),
    Column("via", Text, nullable=False, server_default=""),
    Column("mail_from", Text, nullable=False, server_default=""),
    Column("message_id", Text, nullable=True),
    Column("folder", Text, nullable=False, server_default="inbox"),
    Column("labels", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("read", Boolean, nullable=False, server_default=text("false")),
    Column("rtls", Boolean, nullable=False, server_default=text("false")),
    Column("saved_by", Text, nullable=True),
    Column("spam", REAL, nullable=True),
    # The account private mail belongs to (reserved address or owned domain); NULL = public.
    Column("account_id", Text, nullable=True),
)

# Codes and links extracted from a message at intake (mailsac.extract), as served by the
# extract endpoint. A table of its own: message queries never read it, and deleting a
# message deletes its row (ON DELETE CASCADE).
message_extracts = Table(
    "message_extracts",
    metadata,
    Column("message_id", Text, ForeignKey("messages.id", ondelete="CASCADE"),
           primary_key=True),
    Column("data", JSONB, nullable=False),
)
