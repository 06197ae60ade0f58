"""Who is looking, and what they may read: the API's rules plus the keyless limit.

A viewer without a key reads with :data:`ANONYMOUS`, a key of an account that cannot
exist, so :mod:`mailsac.visibility` (applied by :class:`~mailsac.mailbox.Mailboxes`)
hides every private inbox (403) and every private or starred message from it, exactly
as it would from another account's key. On top of that, unless the operator set
``MAILSAC_UI_PUBLIC=full``, the keyless viewer may open only the newest message of a
public inbox (as on Mailsac); older ones are listed (sender, subject, date, size) but
cannot be opened. Delete and purge always need a key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from mailsac.errors import Forbidden
from mailsac.mailbox import Mailboxes
from mailsac.storage.keys import ApiKey
from mailsac.storage.messages import MessageRecord

# Not a valid account id (ids match [a-z0-9][a-z0-9._-]*), so it owns nothing and is
# nobody's account: the visibility rules treat it as "any other account".
ANONYMOUS_ACCOUNT = "#web-viewer"
ANONYMOUS = ApiKey(
    id=0, name="web viewer (no key)", key_prefix="", created_at=datetime(1970, 1, 1, tzinfo=UTC),
    revoked_at=None, account_id=ANONYMOUS_ACCOUNT, user_id=None, is_admin=False,
)
PAGE_SIZE = 50
PUBLIC_MODES = ("latest", "full")


class LatestOnly(Forbidden):
    """Without a key, only the newest message of a public inbox may be opened."""


@dataclass(frozen=True)
class Viewer:
    """The person at the browser: anonymous, or signed in with a key entered in the form."""

    key: ApiKey
    session_id: str | None = None
    csrf: str | None = None

    @property
    def signed_in(self) -> bool:
        return self.session_id is not None


@dataclass(frozen=True)
class InboxListing:
    """One page of an inbox as a viewer may see it, newest first."""

    inbox: str
    records: list[MessageRecord]
    openable: frozenset[str]
    latest_only: bool
    older_until: datetime | None


def latest_only(viewer: Viewer, public_mode: str) -> bool:
    return not viewer.signed_in and public_mode != "full"


async def list_inbox(
    mailboxes: Mailboxes, viewer: Viewer, inbox: str, *, public_mode: str,
    until: datetime | None = None, limit: int = PAGE_SIZE,
) -> InboxListing:
    """The messages ``viewer`` may see (raises Forbidden for another account's inbox)."""
    records = await mailboxes.list_messages(viewer.key, inbox, limit=limit + 1, until=until)
    older = records[limit - 1].received if len(records) > limit else None
    records = records[:limit]
    limited = latest_only(viewer, public_mode)
    if not limited:
        openable = frozenset(r.id for r in records)
    else:
        newest = records[:1] if until is None else await mailboxes.list_messages(
            viewer.key, inbox, limit=1)
        openable = frozenset(r.id for r in newest)
    return InboxListing(inbox, records, openable, limited, older)


async def open_message(
    mailboxes: Mailboxes, viewer: Viewer, inbox: str, message_id: str, *, public_mode: str,
) -> MessageRecord:
    """The message if ``viewer`` may open it: the API's rules, then the keyless limit."""
    record = await mailboxes.get(viewer.key, inbox, message_id)
    if latest_only(viewer, public_mode):
        newest = await mailboxes.list_messages(viewer.key, inbox, limit=1)
        if not newest or newest[0].id != record.id:
            raise LatestOnly("Without a key only the most recent message of a public "
                             "inbox can be opened")
    return record
