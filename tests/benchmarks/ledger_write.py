"""The ledger's writer: N passthrough-shaped records through a real ``LedgerWriter``, in batches as the
gateway writes them, into an SQLite file (default), a throwaway PostgreSQL cluster (``--postgres``, Debian's
``postgresql``) or any ``--url``.

Two figures. Records per second of wall clock: what the writer sustains. CPU per record, counting every
thread of the process (``time.process_time()``), the driver's worker thread included: what a gateway
sharing one core with its ledger pays per request. ``--loaded`` keeps the event loop busy meanwhile, as a
gateway at full load does (slices of pure Python work, yielding between them), and subtracts that work's
own CPU: what remains is the ledger's share, thread switches included. ``tests/benchmarks/run.py`` runs it;
by hand::

    .venv/bin/python tests/benchmarks/ledger_write.py [--records 20000] [--batch 1000] [--loaded]
                                                      [--url URL | --postgres] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import anyio
import anyio.lowlevel

from gateway.books.calls import CallRecord
from gateway.books.ledger.entry import LedgerEntry
from gateway.books.ledger.store import LedgerStore
from gateway.books.ledger.writer import LedgerWriter
from gateway.books.metrics import Metrics
from gateway.books.usage import Usage
from gateway.config.schema import LedgerConfig


def passthrough(i: int) -> LedgerEntry:
    now = time.time()
    call = CallRecord(
        model="gpt-4o-mini", role="passthrough", pool="gpt-4o-mini", status="ok",
        usage=Usage(prompt_tokens=12, completion_tokens=9), cost=Decimal("0.0000072"),
        started=100.0, ended=100.0123, first_byte=100.004, attempts=1,
    )
    return LedgerEntry(
        request_id=f"req-{i:012d}", kind="passthrough", key="web", created=now, status=200,
        endpoint="/v1/chat/completions", model="gpt-4o-mini", latency_ms=12.5, cost=call.cost,
        calls=[call], providers={("gpt-4o-mini", None): "openai"},
    )


def unit() -> int:
    """One slice of a busy event loop's work (tens of microseconds of pure Python)."""
    return sum(i * i for i in range(300))


async def measure(url: str, records: int, batch: int, loaded: bool = False) -> tuple[float, float]:
    """(CPU seconds, wall seconds) to write ``records`` records."""
    store = LedgerStore(url)
    await store.prepare()
    writer = LedgerWriter(store, LedgerConfig(batch_size=batch), Metrics(), logging.getLogger("bench"))
    await writer.flush()
    entries = [passthrough(i) for i in range(records)]
    units = 0
    done = False

    async def busy() -> None:
        nonlocal units
        while not done:
            unit()
            units += 1
            await anyio.lowlevel.checkpoint()

    # the busy loop's own CPU per slice, scheduling included, measured alone
    t0 = time.process_time()
    async with anyio.create_task_group() as tg:
        tg.start_soon(busy)
        await anyio.sleep(1)
        done = True
    per_unit = (time.process_time() - t0) / units
    units, done = 0, False
    t0, w0 = time.process_time(), time.perf_counter()
    async with anyio.create_task_group() as tg:
        if loaded:
            tg.start_soon(busy)
        for start in range(0, records, batch):
            for e in entries[start:start + batch]:
                writer.submit(e)
            assert await writer.flush()
        done = True
    wall = time.perf_counter() - w0
    spent = time.process_time() - t0 - units * per_unit
    await writer.close(10)
    return spent, wall


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--loaded", action="store_true", help="keep the event loop busy meanwhile")
    parser.add_argument("--url", default=None)
    parser.add_argument("--postgres", action="store_true", help="into a throwaway PostgreSQL cluster")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        if args.postgres:
            from tests.support.procs import postgres_cluster

            url = stack.enter_context(postgres_cluster()).url()
        else:
            url = args.url or f"sqlite:///{Path(stack.enter_context(tempfile.TemporaryDirectory())) / 'ledger.db'}"
        spent, wall = anyio.run(measure, url, args.records, args.batch, args.loaded)
    figures = {"records": args.records, "batch": args.batch, "records_per_s": args.records / wall,
               "cpu_us_per_record": spent / args.records * 1e6}
    if args.json:
        print(json.dumps(figures))
        return
    print(f"{args.records} records, batches of {args.batch}{', loaded' if args.loaded else ''}: "
          f"{figures['records_per_s']:,.0f} records/s, {spent:.3f} s CPU, {figures['cpu_us_per_record']:.1f} us CPU "
          "per record")


if __name__ == "__main__":
    main()
