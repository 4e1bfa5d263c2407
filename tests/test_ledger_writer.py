"""The ledger's background writer batches: steady traffic reaches the database in full batches.

A real SQLite store, whose writes are made to take a moment (as a busy disk's do), so that records keep
arriving while a batch is being written, as they do under load."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import anyio
import sqlalchemy as sa

from gateway.books.ledger.entry import LedgerEntry
from gateway.books.ledger.store import LedgerStore
from gateway.books.ledger.writer import LedgerWriter
from gateway.books.metrics import Metrics
from gateway.config.schema import LedgerConfig

WRITE_S = 0.05


class SlowStore(LedgerStore):
    """The real store, each write taking ``WRITE_S`` longer, with the size of every batch written."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.batches: list[int] = []
        self.writing = anyio.Event()
        self._wrote = anyio.Event()

    async def write(self, entries: Sequence[LedgerEntry]) -> None:
        self.writing.set()
        await anyio.sleep(WRITE_S)
        await super().write(entries)
        self.batches.append(len(entries))
        self._wrote.set()
        self._wrote = anyio.Event()

    async def written(self, batches: int) -> None:
        """Wait until this many batches are written."""
        with anyio.fail_after(10):
            while len(self.batches) < batches:
                await self._wrote.wait()


def refused(i: int) -> LedgerEntry:
    return LedgerEntry(request_id=f"r{i}", kind="refused", key="k", status=401, created=time.time())


def test_records_arriving_during_a_write_wait_for_a_full_batch(tmp_path: Path) -> None:
    """Before: the writer woke again for the records that came in while it wrote, and wrote them at once,
    and then the few that came in meanwhile: under steady traffic, a few records per write."""

    async def run() -> tuple[list[int], int, int]:
        store = SlowStore(f"sqlite:///{tmp_path / 'l.db'}")
        await store.prepare()
        writer = LedgerWriter(store, LedgerConfig(batch_size=100, flush_interval_s=3600), Metrics(),
                              logging.getLogger("test"))
        async with anyio.create_task_group() as tg:
            tg.start_soon(writer.run)
            for i in range(100):  # a full batch wakes the writer
                writer.submit(refused(i))
            await store.writing.wait()
            for i in range(100, 130):  # 30 more while it writes: not a batch yet
                writer.submit(refused(i))
            await store.written(1)
            await anyio.sleep(WRITE_S * 4)  # time enough for a write that should not happen
            batches_then, depth_then = list(store.batches), writer.depth
            for i in range(130, 200):  # with these, 100 queued besides: the next full batch
                writer.submit(refused(i))
            await store.written(2)
            await anyio.sleep(WRITE_S * 4)
            tg.cancel_scope.cancel()
        async with store.engine.connect() as conn:
            written = (await conn.execute(sa.text("SELECT count(*) FROM ledger_requests"))).scalar_one()
        await writer.close(5)
        assert (batches_then, depth_then) == ([100], 30)
        return store.batches, writer.depth, int(written)

    batches, depth, written = anyio.run(run)
    assert batches == [100, 100]
    assert (depth, written) == (0, 200)


def test_flush_writes_what_was_queued_when_asked_in_batches(tmp_path: Path) -> None:
    async def run() -> list[int]:
        store = SlowStore(f"sqlite:///{tmp_path / 'l.db'}")
        writer = LedgerWriter(store, LedgerConfig(batch_size=100), Metrics(), logging.getLogger("test"))
        for i in range(250):
            writer.submit(refused(i))
        assert await writer.flush()
        assert writer.depth == 0
        await writer.close(5)
        return store.batches

    assert anyio.run(run) == [100, 100, 50]
