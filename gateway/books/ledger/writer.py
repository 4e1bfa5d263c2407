"""The background writer: requests hand over records without waiting; batches reach the database.

:meth:`LedgerWriter.submit` only appends to a bounded in-memory queue: a request never waits for the
database and never fails because of it. :meth:`LedgerWriter.run`, in the gateway's background task
group, writes a batch as soon as ``batch_size`` records are queued or every ``flush_interval_s``,
whichever comes first. A failed write keeps its batch at the head of the queue and is tried again at the
next interval; while the database is down the queue fills up to ``queue_max``, and past it new records
are dropped, counted (``fusion_ledger_dropped_total``) and logged once per interval. On graceful
shutdown everything queued is written. A ``kill -9`` loses what was queued: at most one interval's
records (or more while the database was already unreachable).
"""

from __future__ import annotations

import logging
import time
from collections import deque

import anyio

from gateway.books.ledger.entry import LedgerEntry
from gateway.books.ledger.store import LedgerStore, redact
from gateway.books.metrics import Metrics
from gateway.config.schema import LedgerConfig

#: how often retention runs
PRUNE_EVERY_S = 3600.0


class LedgerWriter:
    def __init__(self, store: LedgerStore, config: LedgerConfig, metrics: Metrics, log: logging.Logger) -> None:
        self.store = store
        self.config = config
        self._metrics = metrics
        self._log = log
        self._queue: deque[LedgerEntry] = deque()
        self._max = config.queue_max
        self._batch = config.batch_size
        self._wake = anyio.Event()
        self._lock = anyio.Lock()
        #: records at the head of the queue that the flush in progress takes (they leave as it commits)
        self._writing = 0
        self.dropped = 0
        self._dropped_logged = 0
        self._failing = False
        self._next_prune = 0.0

    @property
    def depth(self) -> int:
        return len(self._queue)

    def submit(self, entry: LedgerEntry) -> None:
        """Queue a finished request's record. Never blocks; past the bound the record is dropped and counted."""
        queue = self._queue
        if len(queue) >= self._max:
            self.dropped += 1
            self._metrics.ledger_drop()
            return
        queue.append(entry)
        # A full batch besides what the flush in progress takes: its records stay at the head of the
        # queue until written, and counting them would wake the writer again for the few that arrived
        # meanwhile, one small write after another.
        if len(queue) - self._writing >= self._batch:
            self._wake.set()

    async def run(self) -> None:
        """Flush on size or interval, forever (cancelled with the gateway's task group)."""
        interval = self.config.flush_interval_s
        while True:
            with anyio.move_on_after(interval):
                await self._wake.wait()
            self._wake = anyio.Event()
            await self.flush()
            self._report_drops()
            await self._maybe_prune()

    async def flush(self) -> bool:
        """Write everything queued so far. False if the database refused (the records stay queued).

        Only what was queued when it was called: records that arrive while it writes wait for the next
        full batch or interval, or a writer kept busy by steady traffic would write a few records at a time."""
        async with self._lock:
            self._writing = len(self._queue)
            try:
                while self._writing:
                    n = min(self._writing, self._batch)
                    batch = [self._queue[i] for i in range(n)]
                    t0 = time.perf_counter()
                    try:
                        await self.store.write(batch)
                    except Exception as exc:  # the database's errors are many; every one means "not written"
                        self._failed(exc)
                        return False
                    for _ in range(n):
                        self._queue.popleft()
                    self._writing -= n
                    self._metrics.ledger_flushed(n, time.perf_counter() - t0)
                    if self._failing:
                        self._failing = False
                        self._log.info("ledger writes resumed", extra={"fields": {"url": redact(self.store.url)}})
            finally:
                self._writing = 0
            self._metrics.ledger_queued(len(self._queue))
            return True

    def _failed(self, exc: Exception) -> None:
        self._metrics.ledger_write_failed()
        self._metrics.ledger_queued(len(self._queue))
        if not self._failing:  # one line when writes start failing, not one per interval
            self._failing = True
            self._log.error(
                "ledger write failed; records stay queued and are retried",
                extra={"fields": {"url": redact(self.store.url), "error": f"{type(exc).__name__}: {exc}"[:300],
                                  "queued": len(self._queue)}},
            )

    def _report_drops(self) -> None:
        if self.dropped != self._dropped_logged:
            self._log.warning(
                "ledger queue full: records dropped",
                extra={"fields": {"dropped": self.dropped - self._dropped_logged, "dropped_total": self.dropped,
                                  "queue_max": self._max}},
            )
            self._dropped_logged = self.dropped

    async def _maybe_prune(self) -> None:
        days = self.config.retention_days
        if days is None or time.monotonic() < self._next_prune:
            return
        self._next_prune = time.monotonic() + PRUNE_EVERY_S
        try:
            removed = await self.store.prune(days)
        except Exception as exc:
            self._log.error("ledger retention failed", extra={"fields": {"error": f"{type(exc).__name__}: {exc}"}})
            return
        if removed:
            self._log.info("ledger retention", extra={"fields": {"retention_days": days, "removed": removed}})

    async def close(self, timeout_s: float) -> None:
        """Graceful shutdown: write what is queued (bounded by ``timeout_s``), then close the database."""
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(timeout_s):
                await self.flush()
            if self._queue:
                self._log.error("ledger records lost at shutdown", extra={"fields": {"records": len(self._queue)}})
            self._report_drops()
            await self.store.aclose()
