"""Serialisers: records → Mailsac's JSON shapes (key names and order as Mailsac sends them).

``message_json`` lives in :mod:`mailsac.messagejson` because webhooks use it too."""

from __future__ import annotations

from typing import Any

from mailsac.addresses import AddressView
from mailsac.storage.accounts import Account, User
from mailsac.storage.directory import DomainRecord
from mailsac.storage.keys import ApiKey
from mailsac.timeutil import iso_ms


def address_json(view: AddressView) -> dict[str, Any]:
    """Mailsac's address object (§2.2); unset settings are null, as Mailsac sends them."""
    record = view.record
    return {
        "_id": view.address,
        "owner": record.account_id if record else view.implicit_owner,
        "forward": record.forward if record else None,
        "enablews": record.enablews if record else False,
        "webhook": record.webhook if record else None,
        "webhookSlack": record.webhook_slack if record else None,
        "webhookSlackToFrom": record.webhook_slack_to_from if record else False,
        "catchAll": record.catch_all if record else None,
        "password": None,
        "info": record.info if record else None,
        "created": iso_ms(record.created_at) if record else None,
        "updated": iso_ms(record.updated_at) if record else None,
        "encryptedInbox": view.alias,
        # Our extension: the key receivers use to verify X-Mailsac-Signature.
        "webhookSecret": record.webhook_secret if record else None,
        "implicit": record is None and view.implicit_owner is not None,
    }


def domain_json(record: DomainRecord) -> dict[str, Any]:
    """Mailsac's domain object (§2.3); self-hosted domains need no DNS verification."""
    return {
        "_id": record.id,
        "created": iso_ms(record.created_at),
        "updated": iso_ms(record.updated_at),
        "enablews": record.enablews,
        "hosted": True,
        "isDefault": False,
        "isPrivate": True,
        "lastVerificationErrors": [],
        "owner": record.account_id,
        "verificationTxt": "",
        "verified": True,
        "verifiedMx": True,
    }


def key_json(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id, "name": key.name, "prefix": key.key_prefix,
        "account": key.account_id, "userId": key.user_id, "admin": key.is_admin,
        "created": iso_ms(key.created_at),
        "revoked": iso_ms(key.revoked_at) if key.revoked_at else None,
    }


def account_json(account: Account) -> dict[str, Any]:
    return {
        "_id": account.id, "email": account.email, "messageLimit": account.message_limit,
        "privateAddressCredits": account.private_address_credits,
        "created": iso_ms(account.created_at),
    }


def user_json(user: User) -> dict[str, Any]:
    return {"id": user.id, "account": user.account_id, "username": user.username,
            "email": user.email, "created": iso_ms(user.created_at)}
