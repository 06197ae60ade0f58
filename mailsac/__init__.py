"""mailsac: a self-hostable, Mailsac-compatible disposable inbound mail service."""

__version__ = "0.1.0"
