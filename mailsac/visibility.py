"""Who may see and change which mail: every rule in one place.

* **Public mail** (no owner: nobody reserved the inbox, nobody owns its domain) may be
  listed, read and deleted with any valid key — except a message somebody *starred*,
  which becomes private to the starring account (as on Mailsac).
* **Private mail** (``messages.account_id`` set, because its inbox is reserved or its
  domain owned) is visible only to keys of that account.
* **Starred mail belongs to the starring account**: reserving an address (or claiming a
  domain) never takes a message another account starred (its ``account_id`` stays NULL,
  ``saved_by`` the starrer), and releasing with ``deleteAddressMessages`` never deletes it.
  The starrer keeps reading it by id even though the inbox now belongs to someone else;
  the new owner neither lists nor opens it. Unstarring such a message hands it to the
  inbox's owner. An account holds at most ``max_starred`` (and its ``messageLimit``)
  starred messages.
* Asking for another account's inbox: listing/counting answers **403**; any single-message
  operation answers **401** whether or not the message id exists, so nothing reveals which
  private messages exist (the contract's codes; the inbox's ownership itself is public
  through ``/availability``, as on Mailsac).
* No key, or an unknown/revoked key: **401** before any of this is evaluated.

The SQL form of the row rule is :func:`visible_to`; the Python form is
:func:`record_visible`. Both must stay in step (tests cover each endpoint as a matrix).
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, and_, or_

from mailsac.directory import Directory
from mailsac.errors import Forbidden, MessageNotFound, Unauthorized
from mailsac.storage.keys import ApiKey
from mailsac.storage.messages import MessageRecord
from mailsac.storage.models import messages


def visible_to(account_id: str) -> ColumnElement[bool]:
    """SQL condition: the message row is visible to ``account_id``."""
    return or_(
        messages.c.account_id == account_id,
        and_(
            messages.c.account_id.is_(None),
            or_(messages.c.saved_by.is_(None), messages.c.saved_by == account_id),
        ),
    )


def record_visible(record: MessageRecord, account_id: str) -> bool:
    if record.account_id is not None:
        return record.account_id == account_id
    return record.saved_by is None or record.saved_by == account_id


class Visibility:
    """Checks a caller against the directory before any inbox or message operation."""

    def __init__(self, directory: Directory, *, max_starred: int = 10_000) -> None:
        self._directory = directory
        self.max_starred = max_starred

    def inbox_owner(self, inbox: str) -> str | None:
        """The account that holds ``inbox`` (reserved or owned domain), None if public."""
        return self._directory.owner_of_inbox(inbox)

    def check_message(self, key: ApiKey, inbox: str, message_id: str,
                      record: MessageRecord | None) -> MessageRecord:
        """Any single-message operation on a fetched row: the starrer of a message in an
        inbox another account took over still reaches it; otherwise 401 for another
        account's inbox (whether or not the id exists) and 404 for a missing/hidden row."""
        if (record is not None and record.account_id is None
                and record.saved_by == key.account_id):
            return record
        self.check_message_inbox(key, inbox)
        if record is None or not record_visible(record, key.account_id):
            raise MessageNotFound(f"no message {message_id} in {inbox}")
        return record

    def star_limit(self, message_limit: int) -> int:
        """Starred messages an account with ``message_limit`` may hold."""
        return min(self.max_starred, message_limit)

    def check_star_quota(self, starred: int, message_limit: int) -> None:
        """Starring beyond the account's quota: 403 with the limit in the message."""
        limit = self.star_limit(message_limit)
        if starred >= limit:
            raise Forbidden(f"Starred message limit reached: your account may star at most "
                            f"{limit} messages; unstar some first")

    def check_inbox(self, key: ApiKey, inbox: str) -> None:
        """Listing, counting, purging an inbox: 403 if another account owns it."""
        owner = self._directory.owner_of_inbox(inbox)
        if owner is not None and owner != key.account_id:
            raise Forbidden("This inbox is private to another account")

    def check_message_inbox(self, key: ApiKey, inbox: str) -> None:
        """Any single-message operation: 401 if another account owns the inbox."""
        owner = self._directory.owner_of_inbox(inbox)
        if owner is not None and owner != key.account_id:
            raise Unauthorized("This message belongs to another account")

    def check_domain(self, key: ApiKey, domain: str) -> None:
        """Domain-wide operations need the caller to own the domain (403 otherwise)."""
        owned = self._directory.domains.get(domain)
        if owned is None or owned.account_id != key.account_id:
            raise Forbidden(f"The domain {domain} is not owned by your account")
