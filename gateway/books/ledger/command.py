"""The ledger's commands: ``db upgrade``, ``report --db``, ``export``. Straight from the database:
no running gateway is needed."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TypeVar

import anyio
import orjson

from gateway.books.ledger import migrate, queries
from gateway.books.ledger.store import LedgerStore, default_url, redact
from gateway.config.schema import ledger_url_problem
from gateway.wire.errors import LedgerSchemaError

T = TypeVar("T")


def add_db_argument(parser: argparse.ArgumentParser, *, required: bool = False) -> None:
    parser.add_argument(
        "--db", default=None, required=required,
        help="ledger URL: sqlite:///PATH or postgresql://USER@HOST:PORT/DB (default: the config's ledger)",
    )
    parser.add_argument("--config", default=None, help="take the ledger URL from this config")


def ledger_url(args: argparse.Namespace) -> str | None:
    """The database to use: --db, else the config's ``ledger.url``, else the default SQLite file."""
    if args.db:
        problem = ledger_url_problem(args.db)
        if problem is not None:
            print(problem, file=sys.stderr)
            return None
        return str(args.db)
    from gateway.config import default_config_path, load_config
    from gateway.wire.errors import ConfigError

    try:
        config = load_config(args.config or default_config_path())
    except ConfigError as exc:
        print(exc.message, file=sys.stderr)
        return None
    if not config.ledger.enabled:
        print(f"{config.path}: the ledger is off (ledger: none); give --db URL", file=sys.stderr)
        return None
    return config.ledger.url or default_url()


def _with_store(url: str, work: Callable[[LedgerStore], Awaitable[T]]) -> T:
    async def main() -> T:
        store = LedgerStore(url, migrate_schema=False)
        try:
            return await work(store)
        finally:
            await store.aclose()

    return anyio.run(main)


def _since(value: str | None) -> datetime | None:
    """``--since``; a bad value ends the command with its message (exit code 2, as for other bad arguments)."""
    try:
        return queries.parse_since(value) if value else None
    except ValueError as exc:
        print(f"--since: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def db_upgrade(args: argparse.Namespace) -> int:
    url = ledger_url(args)
    if url is None:
        return 1
    try:
        state = _with_store(url, lambda s: migrate.upgrade(s.engine))
    except LedgerSchemaError as exc:
        print(exc.message, file=sys.stderr)
        return 1
    print(f"{redact(url)}: schema at revision {state.current} (latest)")
    return 0


def report(args: argparse.Namespace) -> int:
    from gateway.books.report import render

    url = ledger_url(args)
    if url is None:
        return 1
    since = _since(args.since)

    async def work(store: LedgerStore) -> dict[str, object]:
        await migrate.ensure_schema(store.engine, migrate=False)
        known = await queries.pools(store.engine, since)
        return await queries.stats(store.engine, known, since)

    try:
        stats = _with_store(url, work)
    except LedgerSchemaError as exc:
        print(exc.message, file=sys.stderr)
        return 1
    print(render(stats))
    return 0


def export(args: argparse.Namespace) -> int:
    url = ledger_url(args)
    if url is None:
        return 1
    since = _since(args.since)

    async def work(store: LedgerStore) -> int:
        await migrate.ensure_schema(store.engine, migrate=False)
        n = 0
        async for line in queries.export(store.engine, args.pool, since, winners_only=args.winners_only):
            sys.stdout.buffer.write(orjson.dumps(line) + b"\n")
            n += 1
        return n

    try:
        n = _with_store(url, work)
    except LedgerSchemaError as exc:
        print(exc.message, file=sys.stderr)
        return 1
    sys.stdout.flush()
    if n == 0:
        print(f"no answers of pool '{args.pool}' with their text in the ledger (ledger.content: true records them)",
              file=sys.stderr)
    else:
        print(f"{n} examples of pool '{args.pool}'", file=sys.stderr)
    return 0
