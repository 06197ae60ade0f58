"""Every SMTP reply we send, in one table (RFC 5321 §4.2 codes, RFC 3463 enhanced codes).

Names follow aiosmtpd's ``S<code>_<NAME>`` rule; tests assert against these constants.
"""

from __future__ import annotations

from typing import NamedTuple

from mailsac.errors import (
    DenyListed,
    DomainNotAccepted,
    InvalidAddress,
    JournalFull,
    StorageFull,
    StorageUnavailable,
    Throttled,
)


class Reply(NamedTuple):
    code: int
    enhanced: str
    text: str

    def __str__(self) -> str:
        return f"{self.code} {self.enhanced} {self.text}"

    def with_text(self, text: str) -> Reply:
        return self._replace(text=text)


S250_SENDER_OK = Reply(250, "2.1.0", "Sender OK")
S250_RECIPIENT_OK = Reply(250, "2.1.5", "Recipient OK")
S250_QUEUED = Reply(250, "2.0.0", "OK: message stored")
S421_SHUTTING_DOWN = Reply(421, "4.3.2", "Service shutting down, please try again later")
S421_DB_OUTAGE = Reply(
    421, "4.3.0", "Storage is unavailable for too long; the message was not accepted, "
    "try again later")
S451_TEMP_FAILURE = Reply(
    451, "4.3.0", "Temporary storage failure; the message was not accepted, try again later"
)
S452_STORAGE_FULL = Reply(
    452, "4.3.1", "Insufficient system storage; the message was not accepted, try again later"
)
S452_TOO_MANY_RECIPIENTS = Reply(452, "4.5.3", "Too many recipients for one message")
S421_TOO_SLOW = Reply(421, "4.4.2", "DATA took too long; closing the connection")
S421_SESSION_TOO_LONG = Reply(
    421, "4.4.2", "Session lifetime exceeded; closing the connection, please reconnect")
S421_IDLE = Reply(421, "4.4.2", "Idle for too long; closing the connection")
S451_DATA_MEMORY = Reply(
    451, "4.3.1", "Too much mail is arriving at once (in-flight message memory is full); "
    "the message was not accepted, try again shortly")
S501_BAD_SENDER = Reply(501, "5.1.7", "Bad sender address syntax")
S550_RELAY_DENIED = Reply(550, "5.7.1", "Relaying denied")
S552_TOO_BIG = Reply(552, "5.3.4", "Message too big")
S553_BAD_RECIPIENT = Reply(553, "5.1.3", "Bad recipient address syntax")
S553_NO_RECIPIENTS = Reply(
    553, "5.1.0", "No valid recipients: send RCPT TO with an accepted address before DATA"
)
S421_RATE_LIMITED = Reply(421, "4.7.0", "Too many messages; try again later")
S421_BUSY = Reply(421, "4.7.0", "Too many connections; try again later")
S421_PROXY_HEADER = Reply(
    421, "4.7.0", "Expected a valid PROXY protocol header from this load balancer; "
    "closing the connection")
S554_DENIED = Reply(554, "5.7.1", "Refused by policy")
S554_INTERNAL_ERROR = Reply(
    554, "5.3.0", "Internal error while handling the message; it was not accepted"
)
# TLS (RFC 3207)
S220_TLS_READY = Reply(220, "2.0.0", "Ready to start TLS")
S454_TLS_UNAVAILABLE = Reply(454, "4.7.0", "TLS not available")
S503_TLS_ACTIVE = Reply(503, "5.5.1", "TLS is already active")
S530_STARTTLS_FIRST = Reply(530, "5.7.0", "Must issue a STARTTLS command first")

# SMTP AUTH (RFC 4954) and Email Capture
S235_AUTH_OK = Reply(235, "2.7.0", "Authentication successful")
S235_AUTH_ANONYMOUS = Reply(
    235, "2.7.0", "Accepted, but not as any account (MAILSAC_SMTP_AUTH_ACCEPT_ANY): this "
    "session stays anonymous, its mail is handled like unauthenticated mail")
S454_AUTH_TEMPORARY = Reply(
    454, "4.7.0", "Temporary authentication failure: storage is unavailable, try again later")
S454_AUTH_TOO_MANY = Reply(454, "4.7.0", "Too many failed authentication attempts")
S500_AUTH_LINE_TOO_LONG = Reply(500, "5.5.6", "Authentication exchange line is too long")
S501_AUTH_SYNTAX = Reply(501, "5.5.2", "Invalid authentication response")
S530_AUTH_REQUIRED = Reply(
    530, "5.7.0", "Authentication required: this is the Email Capture port, AUTH with your "
    "account name and an API key before MAIL")
S535_AUTH_INVALID = Reply(
    535, "5.7.8", "Authentication credentials invalid: the user name must be your account "
    "name or an address it owns, the password one of its API keys")
S538_AUTH_NEEDS_TLS = Reply(
    538, "5.7.11", "Encryption required for requested authentication mechanism: use "
    "STARTTLS (or the SMTPS port) first")
S452_STARRED_QUOTA = Reply(
    452, "4.2.2", "Starred message limit reached")


def too_big(limit: int) -> Reply:
    return S552_TOO_BIG.with_text(f"Message exceeds the maximum size of {limit} bytes")


def reply_for(exc: BaseException, *, sender: bool = False) -> Reply:
    """Map a domain exception to the reply the client gets."""
    if isinstance(exc, InvalidAddress):
        base = S501_BAD_SENDER if sender else S553_BAD_RECIPIENT
        return base.with_text(f"{base.text}: {exc.reason}")
    if isinstance(exc, DomainNotAccepted):
        return S550_RELAY_DENIED.with_text(
            f"Relaying denied: this server does not accept mail for {exc.domain}"
        )
    if isinstance(exc, DenyListed):
        return S554_DENIED.with_text(str(exc))
    if isinstance(exc, Throttled):
        return S421_RATE_LIMITED.with_text(str(exc))
    if isinstance(exc, JournalFull):
        return S421_DB_OUTAGE
    if isinstance(exc, StorageFull):
        return S452_STORAGE_FULL
    if isinstance(exc, StorageUnavailable):
        return S451_TEMP_FAILURE
    return S554_INTERNAL_ERROR
