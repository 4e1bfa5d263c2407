"""The fan-out's own rules, with members whose timing a test sets exactly.

The caller here is a stand-in for ``UpstreamCaller.collect`` that answers after a given delay (or never),
and the observer records what the fan-out reports: every member's end must be reported exactly once,
with the status its call ended in, however the grace period and the reports interleave.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from gateway.books.calls import CallRecord, Ledger
from gateway.config.loader import ModelSpec
from gateway.config.providers import Timeouts
from gateway.pipeline.fanout import FanoutObserver, FanoutPolicy, MemberCall, MemberResult, fan_out
from gateway.wire.assemble import Accumulator


class TimedCaller:
    """Answers each model after its delay in seconds; ``None``: never (until cancelled)."""

    def __init__(self, delays: dict[str, float | None]) -> None:
        self.delays = delays

    async def collect(self, spec: ModelSpec, body: dict[str, Any], record: CallRecord, deadline: float,
                      on_delta: Any) -> Accumulator:
        record.started = time.monotonic()
        try:
            delay = self.delays[spec.name]
            await asyncio.sleep(3600 if delay is None else delay)
            record.status = "ok"
        except asyncio.CancelledError:
            record.status = "cancelled"
            raise
        finally:
            record.ended = time.monotonic()
        acc = Accumulator()
        acc.add({"choices": [{"index": 0, "delta": {"role": "assistant", "content": spec.name},
                              "finish_reason": "stop"}]})
        return acc


class SlowReporter(FanoutObserver):
    """Reporting a member's end takes ``report_s`` (a slow client reading the events, say)."""

    def __init__(self, report_s: dict[str, float]) -> None:
        self.report_s = report_s
        self.reported: list[tuple[str, str]] = []

    async def finished(self, result: MemberResult, round: int) -> None:
        await asyncio.sleep(self.report_s.get(result.call.spec.name, 0.0))
        self.reported.append((result.call.spec.name, result.record.status))


def calls(*names: str) -> list[MemberCall]:
    return [MemberCall(i, ModelSpec(name, name, "p", None, Timeouts()), {}) for i, name in enumerate(names)]


def run(delays: dict[str, float | None], policy: FanoutPolicy, reporter: SlowReporter) -> list[MemberResult]:
    async def main() -> list[MemberResult]:
        return await fan_out(TimedCaller(delays), calls(*delays), policy, Ledger(), "p",  # type: ignore[arg-type]
                             observer=reporter)

    return asyncio.run(main())


def policy(quorum: int, grace_s: float | None) -> FanoutPolicy:
    return FanoutPolicy(quorum=quorum, grace_s=grace_s, timeout_s=60, deadline=time.monotonic() + 60)


def test_a_member_that_answered_is_reported_even_while_the_grace_ends() -> None:
    """``b`` answers inside the grace period and is still reporting it when the fan-out moves on: its
    report is not cut off, and the member that never answered is reported cancelled."""
    reporter = SlowReporter({"b": 0.2})
    results = run({"a": 0.0, "b": 0.05, "hung": None}, policy(quorum=1, grace_s=0.1), reporter)
    assert sorted(reporter.reported) == [("a", "ok"), ("b", "ok"), ("hung", "cancelled")]
    assert [(r.call.spec.name, r.ok) for r in results] == [("a", True), ("b", True), ("hung", False)]


def test_the_grace_period_bounds_the_wait_for_a_hung_member() -> None:
    reporter = SlowReporter({})
    started = time.monotonic()
    results = run({"a": 0.0, "b": 0.01, "hung": None}, policy(quorum=2, grace_s=0.1), reporter)
    waited = time.monotonic() - started
    assert 0.1 <= waited < 1.0
    assert [r.record.status for r in results] == ["ok", "ok", "cancelled"]
    assert ("hung", "cancelled") in reporter.reported


@pytest.mark.parametrize("grace_s", [None, 0.5])
def test_every_member_that_answers_in_time_is_waited_for(grace_s: float | None) -> None:
    reporter = SlowReporter({})
    results = run({"a": 0.0, "b": 0.05, "c": 0.1}, policy(quorum=1, grace_s=grace_s), reporter)
    assert [r.call.spec.name for r in results] == ["a", "b", "c"]
    assert sorted(reporter.reported) == [("a", "ok"), ("b", "ok"), ("c", "ok")]


def test_a_cancelled_request_cancels_every_member_and_leaves_nothing_running() -> None:
    async def main() -> tuple[list[CallRecord], int]:
        ledger = Ledger()
        before = len(asyncio.all_tasks())
        task = asyncio.ensure_future(fan_out(TimedCaller({"a": None, "b": None}), calls("a", "b"),  # type: ignore[arg-type]
                                             policy(quorum=2, grace_s=None), ledger, "p"))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return ledger.records, len(asyncio.all_tasks()) - before

    records, left = asyncio.run(main())
    assert [r.status for r in records] == ["cancelled", "cancelled"]
    assert left == 0
