"""Protocol-free domain errors. Each edge (SMTP, HTTP) maps them to replies in one table."""

from __future__ import annotations


class MailsacError(Exception):
    """Base class of every error the domain raises on purpose."""


class InvalidAddress(MailsacError):
    """An address failed the syntax rules of :mod:`mailsac.policy`."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(f"{address!r}: {reason}")
        self.address = address
        self.reason = reason


class DomainNotAccepted(MailsacError):
    """The recipient's domain is not one this server accepts mail for."""

    def __init__(self, domain: str) -> None:
        super().__init__(f"mail for {domain} is not accepted here")
        self.domain = domain


class NotFound(MailsacError):
    """The addressed resource does not exist (or is not visible to the caller)."""


class MessageNotFound(NotFound):
    """No message with that id in that inbox."""


class AttachmentNotFound(NotFound):
    """The message has no attachment matching the identifier."""


class StorageUnavailable(MailsacError):
    """The database or blob directory cannot take writes right now (temporary)."""


class StorageFull(StorageUnavailable):
    """The blob directory is out of space (temporary)."""


class JournalFull(StorageUnavailable):
    """The database outage lasted too long or the outage journal is full (SMTP 421)."""


class Unauthorized(MailsacError):
    """Missing, unknown or revoked API key."""


class Forbidden(MailsacError):
    """The caller is known but may never do this (e.g. another account's inbox)."""


class InvalidRequest(MailsacError):
    """A request that can never succeed as sent (bad parameter, already reserved, …)."""


class DenyListed(MailsacError):
    """A deny-listed sender IP, network or domain (permanent: SMTP 554 5.7.1)."""


class Throttled(MailsacError):
    """A rate limit tripped (temporary: SMTP 421 4.7.0); the text says when to retry."""

    def __init__(self, reason: str, retry_after: float) -> None:
        super().__init__(reason)
        self.retry_after = retry_after
