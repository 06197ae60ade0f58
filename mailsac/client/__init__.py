"""A first-party Python client for mailsac (and any Mailsac-compatible API).

Sync::

    from mailsac.client import Client

    with Client("http://127.0.0.1:8080", key="k_...") as client:
        inbox = client.inbox("newuser@example.test")
        with inbox.expect(subject="Your code") as pending:
            app.sign_up("newuser@example.test")      # your code sends the mail
        msg = pending.result()
        code = msg.codes[0].value                    # or msg.code; msg.action_link.url

Async: :class:`AsyncClient`, the same methods with ``await``. Both share one
implementation (:mod:`mailsac.client.ops`); only the transport differs.
"""

from mailsac.client.aio import (
    AsyncChaosRules,
    AsyncClient,
    AsyncDomain,
    AsyncInbox,
    AsyncMessage,
    AsyncPending,
)
from mailsac.client.errors import (
    BadRequestError,
    ConnectionFailed,
    ForbiddenError,
    MailsacError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    UnauthorizedError,
    WaitTimeout,
)
from mailsac.client.models import (
    Account,
    Address,
    Attachment,
    ChaosRule,
    Code,
    DomainInfo,
    EmailAddress,
    Extraction,
    Link,
    MessageData,
    Stats,
    Validation,
)
from mailsac.client.sync import ChaosRules, Client, Domain, Inbox, Message, Pending

__all__ = [
    "Account", "Address", "AsyncChaosRules", "AsyncClient", "AsyncDomain", "AsyncInbox",
    "AsyncMessage", "AsyncPending", "Attachment", "BadRequestError", "ChaosRule", "ChaosRules",
    "Client", "Code", "ConnectionFailed", "Domain", "DomainInfo", "EmailAddress", "Extraction",
    "ForbiddenError", "Inbox", "Link", "MailsacError", "Message", "MessageData",
    "NotFoundError", "Pending", "RateLimitedError", "ServerError", "Stats", "UnauthorizedError",
    "Validation", "WaitTimeout",
]
