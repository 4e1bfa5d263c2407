"""One ledger database: the engine for its backend, batched writes, day partitions, retention.

SQLite (the default, an embedded file) and PostgreSQL (a fleet's shared database) differ in three
places only, all here: how a URL becomes an engine, whether a day needs its partition created before
rows land in it, and how old records go (PostgreSQL drops whole day partitions; SQLite deletes rows).
"""

from __future__ import annotations

import itertools
import os
import re
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from gateway.books.ledger import migrate, tables
from gateway.books.ledger.entry import CALL_COLUMNS, REQUEST_COLUMNS, LedgerEntry, Row, RowIds, rows
from gateway.wire import jsonutil

DATA_ENV = "FUSION_GATEWAY_DATA"
_PARTITION = re.compile(r"^(ledger_requests|ledger_calls)_p(\d{8})$")
#: advisory lock key taken while creating partitions, so replicas creating the same day do not collide
_PARTITION_LOCK = 0x46555348


def default_url(environ: dict[str, str] | None = None) -> str:
    """The embedded default: ``$FUSION_GATEWAY_DATA/ledger.db``, else ``~/.local/share/fusion-gateway/ledger.db``."""
    env = os.environ if environ is None else environ
    base = env.get(DATA_ENV) or os.path.join(
        env.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share"), "fusion-gateway"
    )
    return "sqlite:///" + os.path.abspath(os.path.join(base, "ledger.db"))


def driver_url(url: str) -> str:
    """The operator's URL with the async driver this store uses."""
    scheme, rest = url.split("://", 1)
    base = scheme.split("+", 1)[0]
    if base in ("postgresql", "postgres"):
        return "postgresql+asyncpg://" + rest
    return "sqlite+aiosqlite://" + rest


def redact(url: str) -> str:
    """The URL without its password, for logs."""
    return re.sub(r"//([^:/@]+):[^@/]*@", r"//\1:***@", url)


def _json_text(value: Any) -> str:
    # A ``fusion`` object holds exact decimal costs: written as JSON numbers with their exact digits.
    return jsonutil.dumps(value).decode()


#: JSON columns in and out: costs keep their digits (a float's shortest form is the text written)
_JSON = {"json_serializer": _json_text, "json_deserializer": jsonutil.loads}


def make_engine(url: str) -> AsyncEngine:
    target = driver_url(url)
    if target.startswith("sqlite"):
        engine = create_async_engine(target, connect_args={"timeout": 30}, **_JSON)

        @sa.event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            # WAL: readers (the stats endpoint, `report`) never block the writer, and commits are cheap.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    # UTC sessions: day partitions and "spend per day" mean UTC days whatever the server's zone.
    return create_async_engine(
        target,
        pool_size=4,
        pool_pre_ping=True,
        connect_args={"server_settings": {"timezone": "UTC"}, "timeout": 10, "command_timeout": 30},
        **_JSON,
    )


def _insert(table: str, columns: Sequence[str]) -> str:
    """One row's INSERT in asyncpg's parameter style."""
    marks = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"


class _SqliteInsert:
    """Multi-row INSERTs into one table: as many rows of ``CHUNK`` as a batch holds, then the rest in
    powers of two, so that a handful of statement texts, all kept prepared by the driver, serve every
    batch size. 128 rows of the widest table are 5,248 parameters; SQLite before 3.32 allowed 999."""

    CHUNK = 128 if sqlite3.sqlite_version_info >= (3, 32, 0) else 16

    def __init__(self, table: str, columns: Sequence[str]) -> None:
        head = f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
        one = "(" + ", ".join("?" * len(columns)) + ")"
        self._sql = {n: head + ", ".join([one] * n) for n in _powers_of_two(self.CHUNK)}

    def statements(self, rows: Sequence[Row]) -> Iterator[tuple[str, tuple[Any, ...]]]:
        start, left = 0, len(rows)
        for n in sorted(self._sql, reverse=True):
            while left >= n:
                yield self._sql[n], tuple(itertools.chain.from_iterable(rows[start:start + n]))
                start, left = start + n, left - n


def _powers_of_two(top: int) -> list[int]:
    return [1 << i for i in range(top.bit_length())]


def _timestamp(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _sqlite_timestamp(ts: float) -> str:
    # The text SQLAlchemy's SQLite DateTime writes and reads back (UTC, no offset): readers compare it as text.
    return datetime.fromtimestamp(ts, UTC).isoformat(" ", "microseconds")[:26]


def utc(dt: datetime) -> datetime:
    """Datetimes read back from SQLite are naive: they were written in UTC."""
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


class LedgerStore:
    def __init__(self, url: str, *, migrate_schema: bool = True) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.postgres = self.engine.dialect.name == "postgresql"
        self._migrate = migrate_schema
        self._checked = False
        self._days: set[date] = set()
        self._row_id = RowIds()
        # Rows go in through the driver as tuples, not through SQLAlchemy's per-row parameter processing
        # (it cost more than the database's own work). Reads stay SQLAlchemy's. PostgreSQL: one prepared
        # statement per table, asyncpg's executemany. SQLite: INSERTs of many rows each, since its driver
        # hands the interpreter lock over around every statement it runs, and the thread running them
        # shares the core with the event loop: once per row was a thread switch per row.
        self._insert_requests = _insert("ledger_requests", REQUEST_COLUMNS)
        self._insert_calls = _insert("ledger_calls", CALL_COLUMNS)
        self._sqlite_requests = _SqliteInsert("ledger_requests", REQUEST_COLUMNS)
        self._sqlite_calls = _SqliteInsert("ledger_calls", CALL_COLUMNS)

    async def prepare(self) -> migrate.SchemaState:
        """Check (and if allowed, migrate) the schema; raises LedgerSchemaError on a schema we cannot use."""
        if not self.postgres:
            # The file's directory is made on first use, not at construction: a read-only place is then
            # "database unreachable" (requests go on, records are queued), not a crash.
            path = self.engine.url.database
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
        state = await migrate.ensure_schema(self.engine, migrate=self._migrate)
        self._checked = True
        return state

    async def write(self, entries: Sequence[LedgerEntry]) -> None:
        """One transaction for the whole batch: all of it is written, or none."""
        if not self._checked:
            await self.prepare()
        created = _timestamp if self.postgres else _sqlite_timestamp
        request_rows: list[Row] = []
        call_rows: list[Row] = []
        row_id = self._row_id
        for e in entries:
            req, calls = rows(e, row_id, created(e.created), _json_text)
            request_rows.append(req)
            call_rows.extend(calls)
        async with self.engine.begin() as conn:
            if not self.postgres:
                for insert, batch in ((self._sqlite_requests, request_rows), (self._sqlite_calls, call_rows)):
                    for statement, params in insert.statements(batch):
                        await conn.exec_driver_sql(statement, params)
                return
            await self._partitions(conn, {r[1].date() for r in request_rows})
            # COPY, not INSERTs: one round trip per table for the whole batch (asyncpg's binary COPY
            # into the partitioned parent); twice the rows per second of prepared INSERTs, with less CPU.
            driver = (await conn.get_raw_connection()).driver_connection
            assert driver is not None
            copy = driver.copy_records_to_table
            await copy("ledger_requests", records=request_rows, columns=REQUEST_COLUMNS)
            if call_rows:
                await copy("ledger_calls", records=call_rows, columns=CALL_COLUMNS)

    async def _partitions(self, conn: Any, days: Iterable[date]) -> None:
        missing = sorted(d for d in days if d not in self._days)
        if not missing:
            return
        await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PARTITION_LOCK})
        for day in missing:
            nxt = day + timedelta(days=1)
            for table in ("ledger_requests", "ledger_calls"):
                await conn.execute(
                    sa.text(
                        f"CREATE TABLE IF NOT EXISTS {table}_p{day:%Y%m%d} PARTITION OF {table} "
                        f"FOR VALUES FROM ('{day.isoformat()} 00:00:00+00') TO ('{nxt.isoformat()} 00:00:00+00')"
                    )
                )
        # Remembered only once the transaction commits is not needed: IF NOT EXISTS makes a retry harmless.
        self._days.update(missing)

    async def prune(self, retention_days: int, now: datetime | None = None) -> int:
        """Remove records older than ``retention_days`` (whole days). Returns partitions dropped or rows deleted."""
        cutoff = (now or datetime.now(UTC)).date() - timedelta(days=retention_days)
        if not self._checked:
            await self.prepare()
        async with self.engine.begin() as conn:
            if not self.postgres:
                start = datetime(cutoff.year, cutoff.month, cutoff.day, tzinfo=UTC)
                n = 0
                for table in (tables.calls, tables.requests):
                    result = await conn.execute(sa.delete(table).where(table.c.created_at < start))
                    n += result.rowcount
                return n
            names = (await conn.execute(sa.text(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname IN ('ledger_requests', 'ledger_calls')"
            ))).scalars().all()
            dropped = 0
            for name in names:
                m = _PARTITION.match(name)
                if m and datetime.strptime(m.group(2), "%Y%m%d").date() < cutoff:
                    await conn.execute(sa.text(f'DROP TABLE IF EXISTS "{name}"'))
                    self._days.discard(datetime.strptime(m.group(2), "%Y%m%d").date())
                    dropped += 1
            return dropped

    async def aclose(self) -> None:
        await self.engine.dispose()
