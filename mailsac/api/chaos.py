"""Our extension: SMTP failure-injection ("chaos") rules and the failures they injected.

* ``/api/addresses/{email}/chaos``: rules on an address the key's account owns (reserved,
  or in one of its custom domains); ``.../chaos/events``: its recent injected failures.
* ``/api/domains/{domain}/chaos``: rules on a custom domain of the key's account.
* ``/api/admin/chaos``: global rules (every connection and recipient): operator key only.

What a rule is and which stage/action/scope combinations exist: :mod:`mailsac.chaos.rules`.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mailsac.admin import require_operator
from mailsac.api.context import (
    ctx,
    domain_param,
    inbox_param,
    json_body,
    require_admin,
    require_key,
)
from mailsac.chaos import Chaos, Rule, parse_rule
from mailsac.chaos.store import Event
from mailsac.errors import Forbidden, NotFound, StorageUnavailable
from mailsac.timeutil import iso_ms


def rule_json(rule: Rule) -> dict[str, Any]:
    return {
        "_id": rule.id,
        "scope": rule.scope,
        "target": rule.target,
        "stage": rule.stage,
        "action": rule.action,
        "code": rule.code,
        "message": rule.message,
        "delaySeconds": rule.delay_seconds,
        "probability": rule.probability,
        "timesLeft": rule.times_left,
        "expires": iso_ms(rule.expires_at),
        "created": iso_ms(rule.created_at),
        "fired": rule.fired,
    }


def event_json(event: Event) -> dict[str, Any]:
    return {
        "inbox": event.inbox,
        "rule": event.rule_id,
        "scope": event.scope,
        "stage": event.stage,
        "action": event.action,
        "reply": event.reply,
        "from": event.sender,
        "ip": event.client_ip,
        "at": iso_ms(event.at),
    }


def _chaos(request: Request) -> Chaos:
    chaos = ctx(request).chaos
    if chaos is None:
        raise StorageUnavailable("failure injection is not running")
    return chaos


async def _address(request: Request) -> tuple[Chaos, str, str]:
    """(service, inbox, account) for an address the key's account owns (403 otherwise)."""
    key = await require_key(request)
    inbox = inbox_param(request)
    chaos = _chaos(request)
    if chaos.owner_of_inbox(inbox) != key.account_id:
        raise Forbidden(f"{inbox} is not an address of your account: reserve it (or own its "
                        f"domain) to set failure-injection rules on it")
    return chaos, inbox, key.account_id


async def _domain(request: Request) -> tuple[Chaos, str, str]:
    key = await require_key(request)
    domain = domain_param(request)
    chaos = _chaos(request)
    if chaos.domain_owner(domain) != key.account_id:
        raise Forbidden(f"The domain {domain} is not owned by your account")
    return chaos, domain, key.account_id


async def _operator(request: Request) -> tuple[Chaos, None, str]:
    key = await require_admin(request)
    require_operator(key, "manage global failure-injection rules")
    return _chaos(request), None, key.account_id


async def _list(chaos: Chaos, scope: str, target: str | None, account: str | None
                ) -> Response:
    return JSONResponse([rule_json(r) for r in await chaos.rules(scope, target, account)])


async def _create(request: Request, chaos: Chaos, scope: str, target: str | None,
                  account: str) -> Response:
    spec = parse_rule(await json_body(request), scope)
    rule = await chaos.create(spec, account_id=account, scope=scope, target=target)
    return JSONResponse(rule_json(rule), status_code=201)


async def _delete(request: Request, chaos: Chaos, scope: str, target: str | None,
                  account: str | None) -> Response:
    rule_id = str(request.path_params["rule"])
    if not await chaos.delete(rule_id, scope=scope, target=target, account_id=account):
        raise NotFound(f"no chaos rule {rule_id} here")
    return Response(status_code=204)


async def list_address_rules(request: Request) -> Response:
    chaos, inbox, account = await _address(request)
    return await _list(chaos, "address", inbox, account)


async def create_address_rule(request: Request) -> Response:
    chaos, inbox, account = await _address(request)
    return await _create(request, chaos, "address", inbox, account)


async def delete_address_rule(request: Request) -> Response:
    chaos, inbox, account = await _address(request)
    return await _delete(request, chaos, "address", inbox, account)


async def address_events(request: Request) -> Response:
    """The address's recent injected failures (any scope), newest first."""
    chaos, inbox, account = await _address(request)
    return JSONResponse([event_json(e) for e in await chaos.events(inbox, account)])


async def list_domain_rules(request: Request) -> Response:
    chaos, domain, account = await _domain(request)
    return await _list(chaos, "domain", domain, account)


async def create_domain_rule(request: Request) -> Response:
    chaos, domain, account = await _domain(request)
    return await _create(request, chaos, "domain", domain, account)


async def delete_domain_rule(request: Request) -> Response:
    chaos, domain, account = await _domain(request)
    return await _delete(request, chaos, "domain", domain, account)


async def list_global_rules(request: Request) -> Response:
    chaos, _, _ = await _operator(request)
    return await _list(chaos, "global", None, None)


async def create_global_rule(request: Request) -> Response:
    chaos, _, account = await _operator(request)
    return await _create(request, chaos, "global", None, account)


async def delete_global_rule(request: Request) -> Response:
    chaos, _, _ = await _operator(request)
    return await _delete(request, chaos, "global", None, None)
