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

from mailsac import __version__
from mailsac.config import Settings, SettingsError, add_arguments, load_settings, usage_table
from mailsac.storage.db import create_engine, ensure_database, run_migrations
from mailsac.storage.embedded import EmbeddedPostgres, running_server_url

log = logging.getLogger("mailsac")

DATABASE_NAME = "mailsac"


@contextmanager
def database(settings: Settings, *, exclusive: bool) -> Iterator[str]:
    """Yield a migrated database URL; start (and later stop) the embedded server if needed.

    ``exclusive`` (the service itself) refuses to share an embedded server that another
    process already runs on the same data directory.
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
    server = EmbeddedPostgres(settings.postgres_dir)
    server.start()  # main thread, before any event loop or worker thread exists
    try:
        url = server.url(DATABASE_NAME)
        asyncio.run(ensure_database(url))
        run_migrations(url)
        yield url
    finally:
        server.stop()


def _run_db(settings: Settings, work: Callable[[Any], Coroutine[Any, Any, None]]) -> None:
    with database(settings, exclusive=False) as url:

        async def runner() -> None:
            engine = create_engine(url, pool_size=1)
            try:
                async with engine.begin() as conn:
                    await work(conn)
            finally:
                await engine.dispose()

        asyncio.run(runner())


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    from mailsac.app import serve

    with database(settings, exclusive=True) as url:
        asyncio.run(serve(settings, url))
    return 0


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    with database(settings, exclusive=False):
        print("database schema is up to date")
    return 0


def cmd_keys(settings: Settings, args: argparse.Namespace) -> int:
    from mailsac.storage import keys

    async def create(conn: Any) -> None:
        record, plain = await keys.create_key(conn, args.name)
        print(plain)
        print(f"created key #{record.id} '{record.name}'; it is shown only once, keep it safe",
              file=sys.stderr)

    async def list_all(conn: Any) -> None:
        for k in await keys.list_keys(conn):
            state = f"revoked {k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "active"
            print(f"{k.id}\t{k.key_prefix}…\t{k.name}\t{k.created_at:%Y-%m-%d %H:%M}\t{state}")

    async def revoke(conn: Any) -> None:
        if not await keys.revoke_key(conn, args.id):
            raise SystemExit(f"error: no active key with id {args.id}")
        print(f"revoked key #{args.id}")

    action = {"create": create, "list": list_all, "revoke": revoke}[args.keys_command]
    _run_db(settings, action)
    return 0


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

    command("serve", "run the SMTP listener and HTTP API", cmd_serve)
    command("migrate", "create the database if needed and apply schema migrations", cmd_migrate)
    command("settings", "print every setting with its current value", cmd_settings)
    keys = command("keys", "manage API keys", cmd_keys)
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key and print it once")
    create.add_argument("--name", required=True, help="a label for the key")
    keys_sub.add_parser("list", help="list keys (prefix, name, state)")
    revoke = keys_sub.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("id", type=int)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
    try:
        result: int = args.handler(settings, args)
    except KeyboardInterrupt:
        return 130
    return result
