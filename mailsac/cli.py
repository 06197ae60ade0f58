"""Command line: ``serve``, ``migrate``, ``keys create|list|revoke``, ``settings``.

Every command that needs the database uses ``DATABASE_URL`` when set; otherwise the
embedded PostgreSQL under the data directory — attaching to it when a running service
already owns it, else starting it for the duration of the command.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from mailsac import __version__
from mailsac.addresses import Addresses
from mailsac.admin import Admin
from mailsac.bench.cli import register as register_bench
from mailsac.config import Settings, SettingsError, add_arguments, load_settings, usage_table
from mailsac.directory import Directory
from mailsac.errors import MailsacError
from mailsac.gate import SenderGate
from mailsac.logredact import install as install_log_redaction
from mailsac.spam.cli import register as register_spam
from mailsac.storage.accounts import DEFAULT_ACCOUNT
from mailsac.storage.db import create_engine, ensure_database, run_migrations
from mailsac.storage.embedded import EmbeddedPostgres, running_server_url
from mailsac.storage.readpool import READ_POOL_SIZE

log = logging.getLogger("mailsac")

DATABASE_NAME = "mailsac"


@contextmanager
def database(settings: Settings, *, exclusive: bool) -> Iterator[str]:
    """Yield a migrated database URL; start (and later stop) the embedded server if needed.

    ``exclusive`` (the service itself) refuses to share an embedded server that another
    process already runs on the same data directory. ``serve --processes N`` gets one
    embedded server for all its processes, with connections for each.
    """
    if settings.database_url:
        asyncio.run(ensure_database(settings.database_url))
        run_migrations(settings.database_url)
        yield settings.database_url
        return
    attached = running_server_url(settings.postgres_dir, DATABASE_NAME)
    if attached:
        if exclusive:
            raise SystemExit(
                f"error: the data directory {settings.data_dir} is in use by another running "
                "mailsac; stop it or choose another --data-dir"
            )
        yield attached
        return
    # Each process pools up to 2 x MAILSAC_DB_POOL_SIZE, plus its read pool and listeners.
    many = settings.processes > 1
    per_process = 2 * settings.db_pool_size + READ_POOL_SIZE + 8
    server = EmbeddedPostgres(settings.postgres_dir, settings={
        "max_connections": str(max(100, settings.processes * per_process))
    } if many else None)
    server.start()  # main thread, before any event loop or worker thread exists
    try:
        url = server.url(DATABASE_NAME)
        asyncio.run(ensure_database(url))
        run_migrations(url)
        yield url
    finally:
        server.stop()


def _run_with_engine(settings: Settings,
                     work: Callable[[AsyncEngine], Coroutine[Any, Any, None]]) -> int:
    """Run ``work`` on an engine for the configured database; errors print, exit 1."""
    with database(settings, exclusive=False) as url:

        async def runner() -> None:
            engine = create_engine(url, pool_size=1)
            try:
                await work(engine)
            finally:
                await engine.dispose()

        try:
            asyncio.run(runner())
        except (MailsacError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    return 0


def _run_admin(settings: Settings, work: Callable[[Admin], Coroutine[Any, Any, None]]) -> int:
    """Run ``work`` with an :class:`Admin` service on the configured database."""

    async def with_admin(engine: AsyncEngine) -> None:
        directory = Directory(engine)
        await directory.reload()

        async def no_blobs(keys: list[str]) -> None:
            return None

        await work(Admin(engine, Addresses(engine, directory, no_blobs)))

    return _run_with_engine(settings, with_admin)


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    from mailsac import eventloop, supervisor
    from mailsac.childproc import die_with_parent
    from mailsac.lifecycle import serve

    if args.child:  # one of `serve --processes N`'s nodes: the supervisor prepared it all
        role = supervisor.ChildRole.parse(args.child)
        die_with_parent(role.parent)
        eventloop.run(serve(settings, settings.database_url, reuse_port=True,
                            journal_dir=supervisor.journal_dir(settings.data_dir, role.index)),
                      settings.event_loop)
        return 0
    with database(settings, exclusive=True) as url:
        if settings.processes > 1:
            return supervisor.supervise(settings, url)
        supervisor.prepare_single(settings, url)
        eventloop.run(serve(settings, url), settings.event_loop)
    return 0


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    with database(settings, exclusive=False):
        print("database schema is up to date")
    return 0


def cmd_keys(settings: Settings, args: argparse.Namespace) -> int:
    async def create(admin: Admin) -> None:
        record, plain = await admin.create_key(args.account, args.name, is_admin=args.admin,
                                               username=args.user)
        print(plain)
        print(f"created key #{record.id} '{record.name}' for account {record.account_id}; "
              "it is shown only once, keep it safe", file=sys.stderr)

    async def list_all(admin: Admin) -> None:
        for k in await admin.keys(args.account):
            state = f"revoked {k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "active"
            role = "admin" if k.is_admin else "user"
            print(f"{k.id}\t{k.key_prefix}…\t{k.name}\t{k.account_id}\t{role}\t"
                  f"{k.created_at:%Y-%m-%d %H:%M}\t{state}")

    async def revoke(admin: Admin) -> None:
        await admin.revoke_key(args.id)
        print(f"revoked key #{args.id}")

    action = {"create": create, "list": list_all, "revoke": revoke}[args.keys_command]
    return _run_admin(settings, action)


def cmd_accounts(settings: Settings, args: argparse.Namespace) -> int:
    async def create(admin: Admin) -> None:
        account = await admin.create_account(
            args.id, email=args.email, message_limit=args.message_limit, credits=args.credits)
        print(f"created account {account.id} (messageLimit {account.message_limit}, "
              f"{account.private_address_credits} private address credits)")

    async def list_all(admin: Admin) -> None:
        for a in await admin.accounts():
            print(f"{a.id}\t{a.email or ''}\t{a.message_limit}\t{a.private_address_credits}")

    return _run_admin(settings, {"create": create, "list": list_all}[args.accounts_command])


def cmd_users(settings: Settings, args: argparse.Namespace) -> int:
    async def add(admin: Admin) -> None:
        user = await admin.add_user(args.account, args.username, args.email)
        print(f"added user {user.username} to account {user.account_id}")

    async def list_all(admin: Admin) -> None:
        for u in await admin.users(args.account):
            print(f"{u.id}\t{u.username}\t{u.email or ''}")

    return _run_admin(settings, {"add": add, "list": list_all}[args.users_command])


def cmd_domains(settings: Settings, args: argparse.Namespace) -> int:
    async def add(admin: Admin) -> None:
        domain = await admin.add_domain(args.domain, args.account, args.catch_all)
        extra = " with catch-all *@" + domain.id if args.catch_all else ""
        print(f"domain {domain.id} now belongs to account {domain.account_id}{extra}")

    return _run_admin(settings, add)


def cmd_deny(settings: Settings, args: argparse.Namespace) -> int:
    """Deny-list changes reach a running service through PostgreSQL NOTIFY at once."""

    async def work(engine: AsyncEngine) -> None:
        gate = SenderGate(engine)
        await gate.reload()
        if args.deny_command == "add":
            entry = await gate.deny_add(args.value, args.reason)
            print(f"deny-listed {entry.kind} {entry.value}")
        elif args.deny_command == "remove":
            if not await gate.deny_remove(args.value):
                raise SystemExit(f"error: {args.value} is not on the deny-list")
            print(f"removed {args.value}")
        else:
            for entry in gate.deny.entries():
                print(f"{entry.kind}\t{entry.value}\t{entry.reason}")

    return _run_with_engine(settings, work)


def cmd_spam_learn(settings: Settings, args: argparse.Namespace) -> int:
    """``spam learn``: operator teaching from a mail store, stored like API feedback (a
    running server picks it up at its next start; the admin API teaches it live)."""
    from mailsac.spam.corpus import CorpusError, iter_messages
    from mailsac.spam_feedback import SpamFeedback

    label = None if args.label is None else args.label == "spam"

    async def work(engine: AsyncEngine) -> None:
        feedback = SpamFeedback(engine, max_rows=settings.spam_feedback_max_rows)
        await feedback.count_rows()
        counts = {True: 0, False: 0}
        repeated = 0
        try:
            for raw, is_spam in iter_messages(args.corpus, label):
                if await feedback.learn_raw(raw, is_spam):
                    counts[is_spam] += 1
                else:
                    repeated += 1
        except (CorpusError, OSError) as exc:
            raise ValueError(str(exc)) from exc
        finally:
            print(f"learned {counts[True]} spam and {counts[False]} ham message(s) into the "
                  f"operator layer ({repeated} already known); restart a running server "
                  f"to load them")

    return _run_with_engine(settings, work)


def cmd_settings(settings: Settings, args: argparse.Namespace) -> int:
    print(usage_table(settings))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mailsac",
        description="Self-hosted, Mailsac-compatible disposable inbound mail service.")
    parser.add_argument("--version", action="version", version=f"mailsac {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str, handler: Callable[..., int]) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        add_arguments(p)
        p.set_defaults(handler=handler)
        return p

    serve = command("serve", "run the SMTP listener and HTTP API", cmd_serve)
    serve.add_argument("--child", default=None, help=argparse.SUPPRESS)  # see supervisor
    command("migrate", "create the database if needed and apply schema migrations", cmd_migrate)
    command("settings", "print every setting with its current value", cmd_settings)
    keys = command("keys", "manage API keys", cmd_keys)
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key and print it once")
    create.add_argument("--name", required=True, help="a label for the key")
    create.add_argument("--account", default=DEFAULT_ACCOUNT,
                        help=f"the account the key acts for (default: {DEFAULT_ACCOUNT})")
    create.add_argument("--user", default=None, help="the user (of that account) it belongs to")
    create.add_argument("--admin", action="store_true",
                        help="the key may also use the admin API")
    listing = keys_sub.add_parser("list", help="list keys (prefix, name, account, state)")
    listing.add_argument("--account", default=None)
    revoke = keys_sub.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("id", type=int)

    accounts = command("accounts", "manage accounts", cmd_accounts)
    accounts_sub = accounts.add_subparsers(dest="accounts_command", required=True)
    create = accounts_sub.add_parser("create", help="create an account")
    create.add_argument("id", help="account id (a-z, 0-9, '.', '_', '-')")
    create.add_argument("--email", default=None)
    create.add_argument("--message-limit", type=int, default=None,
                        help="private messages kept before the oldest are recycled")
    create.add_argument("--credits", type=int, default=None,
                        help="how many addresses the account may reserve")
    accounts_sub.add_parser("list", help="list accounts")

    users = command("users", "manage the users of an account", cmd_users)
    users_sub = users.add_subparsers(dest="users_command", required=True)
    add = users_sub.add_parser("add", help="add a user to an account")
    add.add_argument("username")
    add.add_argument("--account", required=True)
    add.add_argument("--email", default=None)
    listing = users_sub.add_parser("list", help="list an account's users")
    listing.add_argument("--account", required=True)

    deny = command("deny", "deny-list sender IPs, networks (CIDR) and domains", cmd_deny)
    deny_sub = deny.add_subparsers(dest="deny_command", required=True)
    add = deny_sub.add_parser("add", help="refuse mail from an IP, CIDR or domain (554 5.7.1)")
    add.add_argument("value", help="e.g. 203.0.113.7, 198.51.100.0/24 or spam.example")
    add.add_argument("--reason", default="", help="shown to the sender in the SMTP reply")
    remove = deny_sub.add_parser("remove", help="take an entry off the deny-list")
    remove.add_argument("value")
    deny_sub.add_parser("list", help="show the deny-list")

    # python -m mailsac spam train|score|eval (handlers take args only) | learn (settings)
    register_spam(sub, learn_handler=cmd_spam_learn)
    register_bench(sub)  # python -m mailsac bench (handler takes args only)

    domains = command("domains", "give custom domains to accounts", cmd_domains)
    domains_sub = domains.add_subparsers(dest="domains_command", required=True)
    add = domains_sub.add_parser("add", help="make all mail of a domain private to an account")
    add.add_argument("domain")
    add.add_argument("--account", required=True)
    add.add_argument("--catch-all", action="store_true",
                     help="also route every address of the domain to the *@domain inbox")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in ("spam", "bench") and not getattr(args, "with_settings", False):
        # tools: no settings, no database of their own
        return int(args.handler(args))
    try:
        settings = load_settings(args=args)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # aiosmtpd logs every SMTP command at INFO; keep its warnings only.
    logging.getLogger("mail.log").setLevel(max(logging.WARNING, logging.root.level))
    # No API key, key query parameter or webhook/Slack URL secret in any log line.
    install_log_redaction()
    try:
        result: int = args.handler(settings, args)
    except KeyboardInterrupt:
        return 130
    return result
