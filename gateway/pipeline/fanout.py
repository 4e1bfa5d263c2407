"""Fan-out: every member at once, under one task group.

All members start together; each has its own wall-clock limit (``timeout_s``, inside the request's
deadline). Once ``quorum`` members have answered, the rest get ``grace_s`` more, then are cancelled,
and a cancelled call closes its upstream connection. The fan-out therefore waits for the slowest
*useful* member, never for the sum, and a hung member costs at most the grace period.

With a ``settle`` check (a pool's ``agreement``), each successful answer is offered to it as it
arrives; once it says the answer is settled (enough members agree), every member still running is
cancelled at once, without a grace period: their answers could no longer change the result.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.books.calls import CallRecord, Ledger
from gateway.config.loader import ModelSpec
from gateway.pipeline.upstream import UpstreamCaller
from gateway.wire.assemble import Accumulator
from gateway.wire.errors import UpstreamError


@dataclass(frozen=True, slots=True)
class MemberCall:
    index: int  # position in the pool's members
    spec: ModelSpec
    body: dict[str, Any]


@dataclass(slots=True)
class MemberResult:
    call: MemberCall
    record: CallRecord
    answer: Accumulator | None  # None unless the call succeeded

    @property
    def ok(self) -> bool:
        return self.answer is not None


@dataclass(frozen=True, slots=True)
class FanoutPolicy:
    quorum: int
    grace_s: float | None  # None: wait for every member (each bounded by its timeout)
    timeout_s: float
    deadline: float  # time.monotonic() value for the whole request


class FanoutObserver:
    """Hooks for live progress (fusion events); the default does nothing."""

    async def started(self, call: MemberCall, round: int) -> None:
        return None

    async def delta(self, call: MemberCall, round: int, text: str) -> None:
        return None

    async def finished(self, result: MemberResult, round: int) -> None:
        return None


Settle = Callable[["MemberResult"], Awaitable[bool]]
"""Offered each successful answer as it arrives; True ends the fan-out (the rest are cancelled)."""


async def fan_out(
    caller: UpstreamCaller,
    calls: Sequence[MemberCall],
    policy: FanoutPolicy,
    ledger: Ledger,
    pool: str,
    *,
    round: int = 0,
    observer: FanoutObserver | None = None,
    settle: Settle | None = None,
) -> list[MemberResult]:
    """Run ``calls`` concurrently; results in the order the members finished (successes first by time).

    asyncio's own task group, events and timeout rather than anyio's: a fan-out of three members cost
    about 80 us of CPU through anyio's and 20 us through asyncio's, on the request's critical path. The
    structure is the same: every member runs inside the group, and the group is left only when each of
    them has finished or been cancelled."""
    obs = observer or FanoutObserver()
    finished: list[MemberResult] = []
    ok_count = 0
    enough = asyncio.Event()  # quorum met, or nothing left to wait for
    all_done = asyncio.Event()
    #: the members whose upstream call is still running; one that has its answer is never cancelled
    #: while it reports it (its ``finished`` event would be lost half-sent)
    calling: set[asyncio.Task[None]] = set()

    def cancel_running() -> None:
        me = asyncio.current_task()
        for task in calling:
            if task is not me:
                task.cancel()

    async def run(call: MemberCall) -> None:
        nonlocal ok_count
        record = ledger.add(
            CallRecord(model=call.spec.name, role="member", pool=pool, round=round, member=call.index)
        )
        deadline = min(policy.deadline, time.monotonic() + policy.timeout_s)
        answer: Accumulator | None = None
        on_delta: Callable[[str], Awaitable[None]] = lambda text: obs.delta(call, round, text)  # noqa: E731
        me = asyncio.current_task()
        assert me is not None
        calling.add(me)
        try:
            await obs.started(call, round)
            answer = await caller.collect(call.spec, call.body, record, deadline, on_delta)
        except UpstreamError:
            pass  # recorded in ``record``; one member failing never fails the pool
        finally:
            calling.discard(me)
            result = MemberResult(call, record, answer if record.status == "ok" else None)
            finished.append(result)
            if result.ok:
                ok_count += 1
            if ok_count >= policy.quorum or len(finished) == len(calls):
                enough.set()
            if len(finished) == len(calls):
                all_done.set()
        # Outside ``finally``: a cancelled member reports nothing (the request is going away, or the
        # fan-out has moved on and reports stragglers itself).
        await obs.finished(result, round)
        if result.ok and settle is not None and await settle(result):
            cancel_running()  # settled: the members still running cannot change the answer

    async with asyncio.TaskGroup() as tg:
        for call in calls:
            tg.create_task(run(call))
        await enough.wait()
        if not all_done.is_set():
            if policy.grace_s is None:
                await all_done.wait()
            else:
                try:
                    async with asyncio.timeout(policy.grace_s):
                        await all_done.wait()
                except TimeoutError:
                    pass
            cancel_running()
    for r in finished:
        if r.record.status == "cancelled":
            await obs.finished(r, round)
    return sorted(finished, key=lambda r: (not r.ok, r.record.ended))
