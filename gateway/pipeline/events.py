"""Fusion progress events: what a pool is doing, live, inside the standard stream.

Asked for with ``"fusion": {"events": true}`` on a streamed pool request. Each event is a standard
``chat.completion.chunk`` with ``choices: []`` and a ``fusion_event`` object, so the openai SDK (and
anything else that reads chunks) still parses the stream; without the flag nothing changes.

Event types, all with ``type`` and ``t_ms`` (milliseconds since the request started):

- ``member.started``  ``{member, model, round}``
- ``member.delta``    ``{member, model, round, content}``  (the member's text as it arrives)
- ``member.done``     ``{member, model, round, status, latency_ms, usage, cost_usd, error_type}``
- ``round.done``      ``{round, answers, agreed, latency_ms}``  (debate)
- ``judge.started``   ``{model, call}``
- ``judge.done``      ``{model, status, calls, latency_ms, usage, cost_usd, verdict, fallback_reason}``
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.books.record import CallEntry, JudgeEntry, ms
from gateway.pipeline.fanout import FanoutObserver, MemberCall, MemberResult

Emit = Callable[[dict[str, Any]], Awaitable[None]]


class FusionEvents(FanoutObserver):
    def __init__(self, emit: Emit, started: float) -> None:
        self._emit = emit
        self._started = started
        self._judge_calls = 0

    async def send(self, kind: str, **fields: Any) -> None:
        await self._emit({"type": kind, "t_ms": ms((time.monotonic() - self._started) * 1000), **fields})

    async def started(self, call: MemberCall, round: int) -> None:
        await self.send("member.started", member=call.index, model=call.spec.name, round=round)

    async def delta(self, call: MemberCall, round: int, text: str) -> None:
        await self.send("member.delta", member=call.index, model=call.spec.name, round=round, content=text)

    async def finished(self, result: MemberResult, round: int) -> None:
        await self.send("member.done", round=round, **CallEntry.of(result.record).to_json())

    async def round_done(self, round: int, answers: int, agreed: bool, latency_ms: float) -> None:
        await self.send("round.done", round=round, answers=answers, agreed=agreed, latency_ms=ms(latency_ms))

    async def judge_started(self, model: str) -> None:
        self._judge_calls += 1
        await self.send("judge.started", model=model, call=self._judge_calls)

    async def judge_done(self, judge: JudgeEntry) -> None:
        await self.send("judge.done", **judge.to_json(with_errors=False))
