"""Running a comparison: every item through every system, then the pairwise judgements.

``--concurrency`` workers take units from one queue, in item order (so an interrupted run leaves whole
items behind it, not a scatter): a unit is one request (item x system) or one judgement (item x pool,
both answers in). Each result is appended to disk as soon as it is in.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from gateway.compare.client import GatewayClient, Reply
from gateway.compare.dataset import Item
from gateway.compare.judgement import judgement_key, prefer
from gateway.compare.progress import Progress
from gateway.compare.store import JUDGEMENTS, RESULTS, JsonlLog, result_key


@dataclass(frozen=True)
class System:
    """One name callable at the gateway: a pool (with its ``fusion`` description) or a model."""

    name: str
    kind: Literal["pool", "model"]
    mode: str | None = None
    members: tuple[str, ...] = ()
    judge: str | None = None


@dataclass
class Plan:
    items: list[Item]
    baseline: System
    pools: list[System]
    #: the judge model for pairwise preferences; None: no pairwise judging
    judge: str | None

    @property
    def systems(self) -> list[System]:
        return [self.baseline, *self.pools]


@dataclass(order=True)
class _Unit:
    priority: tuple[int, int, int]
    kind: Literal["ask", "judge", "stop"] = field(compare=False)
    item: Item | None = field(compare=False, default=None)
    system: System | None = field(compare=False, default=None)


@dataclass
class RunStats:
    asked: int = 0
    judged: int = 0
    failed: int = 0
    #: why the run stopped before the end, if it did
    gave_up: str | None = None


class Runner:
    def __init__(
        self, client: GatewayClient, plan: Plan, out: Path, concurrency: int, progress: Progress | None
    ) -> None:
        self.client = client
        self.plan = plan
        self.results = JsonlLog(out / RESULTS)
        self.judgements = JsonlLog(out / JUDGEMENTS)
        self.concurrency = max(1, concurrency)
        self.progress = progress
        self.stats = RunStats()
        self._queue: asyncio.PriorityQueue[_Unit] = asyncio.PriorityQueue()
        self._seq = itertools.count()
        self._outstanding = 0
        self._index = {item.key: i for i, item in enumerate(plan.items)}
        #: result keys this run still has to ask
        self._asking: set[str] = set()

    # ------------------------------------------------------------------ lookups over what is on disk

    def result(self, item: Item, system: str) -> dict[str, Any] | None:
        return self.results.get(result_key(item.key, system))

    def answered(self, item: Item, system: str) -> str | None:
        line = self.result(item, system)
        if line is None or line.get("status") != "ok":
            return None
        answer = line.get("answer")
        return answer if isinstance(answer, str) else ""

    def _judgement_key(self, item: Item, pool: System) -> str | None:
        """The key of this judgement if both answers are in, else None."""
        assert self.plan.judge is not None
        a = self.answered(item, pool.name)
        b = self.answered(item, self.plan.baseline.name)
        if a is None or b is None:
            return None
        return judgement_key(item, pool.name, self.plan.baseline.name, self.plan.judge, a, b)

    def judgement(self, item: Item, pool: System) -> dict[str, Any] | None:
        if self.plan.judge is None:
            return None
        key = self._judgement_key(item, pool)
        return self.judgements.get(key) if key is not None else None

    # ------------------------------------------------------------------ the run

    def _put(self, unit: _Unit) -> None:
        self._outstanding += 1
        self._queue.put_nowait(unit)

    def _needs_judging(self, item: Item, pool: System) -> bool:
        if self.plan.judge is None:
            return False
        key = self._judgement_key(item, pool)
        return key is not None and not self.judgements.done(key)

    def pending(self) -> tuple[int, int, int]:
        """(units to do, of which judgements, units already done)."""
        todo = judge_todo = already = 0
        for item in self.plan.items:
            for system in self.plan.systems:
                if self.results.done(result_key(item.key, system.name)):
                    already += 1
                else:
                    todo += 1
            if self.plan.judge is None:
                continue
            for pool in self.plan.pools:
                key = self._judgement_key(item, pool)
                if key is not None and self.judgements.done(key):
                    already += 1
                else:
                    judge_todo += 1
        return todo + judge_todo, judge_todo, already

    async def run(self) -> RunStats:
        total, _, already = self.pending()
        if self.progress is not None:
            self.progress.total = total
            self.progress.start(already)
        for i, item in enumerate(self.plan.items):
            for j, system in enumerate(self.plan.systems):
                key = result_key(item.key, system.name)
                if not self.results.done(key):
                    self._asking.add(key)
                    self._put(_Unit((i, 0, j), "ask", item, system))
            for j, pool in enumerate(self.plan.pools):
                if self._needs_judging(item, pool):
                    self._put(_Unit((i, 1, j), "judge", item, pool))
        try:
            if self._outstanding:
                async with asyncio.TaskGroup() as tg:
                    for _ in range(self.concurrency):
                        tg.create_task(self._worker())
        finally:
            self.results.close()
            self.judgements.close()
        if self.progress is not None:
            self.progress.finish()
        return self.stats

    async def _worker(self) -> None:
        while True:
            unit = await self._queue.get()
            if unit.kind == "stop":
                return
            try:
                if self.stats.gave_up is not None:
                    continue  # drain the queue without asking: the gateway is gone
                if unit.kind == "ask":
                    await self._ask(unit)
                else:
                    await self._judge(unit)
            finally:
                self._check_reachable()
                self._outstanding -= 1
                if self._outstanding == 0:
                    for _ in range(self.concurrency):
                        self._queue.put_nowait(_Unit((1 << 62, 0, next(self._seq)), "stop"))

    def _check_reachable(self) -> None:
        """Stop early when the gateway is gone: with every request failing to connect, retrying the rest
        would only take (retries x backoff) per remaining unit. What is done stays done; a rerun resumes."""
        limit = max(3, self.concurrency)
        if self.stats.gave_up is None and self.client.unreachable_streak >= limit:
            self.stats.gave_up = (
                f"the gateway at {self.client.url} stopped answering ({self.client.unreachable_streak} requests "
                "in a row could not connect, after retries)"
            )

    async def _ask(self, unit: _Unit) -> None:
        item, system = unit.item, unit.system
        assert item is not None and system is not None
        reply = await self.client.chat({**item.extra, "model": system.name, "messages": item.messages})
        self.results.append(result_line(item, system, reply))
        self._asking.discard(result_key(item.key, system.name))
        self.stats.asked += 1
        if not reply.ok:
            self.stats.failed += 1
        if self.progress is not None:
            self.progress.step(error=not reply.ok)
        if self.plan.judge is None:
            return
        # Whichever of the pair came in second makes the judgement possible.
        pools = self.plan.pools if system is self.plan.baseline else [system]
        i = self._index[item.key]
        for pool in pools:
            if self._needs_judging(item, pool):
                self._put(_Unit((i, 1, self.plan.pools.index(pool)), "judge", item, pool))
            elif self._judgement_key(item, pool) is None and self._settled(item, pool) and self.progress is not None:
                self.progress.shrink()  # one of the two answers failed: nothing to judge

    def _settled(self, item: Item, pool: System) -> bool:
        """Neither request of the pair is still to be asked in this run (whatever their outcome)."""
        return (
            result_key(item.key, pool.name) not in self._asking
            and result_key(item.key, self.plan.baseline.name) not in self._asking
        )

    async def _judge(self, unit: _Unit) -> None:
        item, pool = unit.item, unit.system
        assert item is not None and pool is not None and self.plan.judge is not None
        a = self.answered(item, pool.name)
        b = self.answered(item, self.plan.baseline.name)
        assert a is not None and b is not None
        key = judgement_key(item, pool.name, self.plan.baseline.name, self.plan.judge, a, b)
        line = await prefer(self.client, self.plan.judge, item, pool.name, self.plan.baseline.name, a, b)
        self.judgements.append({"key": key, **line})
        self.stats.judged += 1
        if self.progress is not None:
            self.progress.step(error=line["status"] != "ok")


def result_line(item: Item, system: System, reply: Reply) -> dict[str, Any]:
    line: dict[str, Any] = {
        "key": result_key(item.key, system.name),
        "item": item.key,
        "line": item.line,
        "system": system.name,
        "kind": system.kind,
        "status": "ok" if reply.ok else "error",
        "answer": reply.answer,
        "cost_usd": reply.cost,
        "cost_header": reply.cost_text,
        "latency_ms": reply.latency_ms if reply.ok else None,
        "attempts": reply.attempts,
        "usage": reply.usage,
        "finish_reason": reply.finish_reason,
        "error": reply.error,
    }
    if reply.fusion is not None:
        line["fusion"] = trim_fusion(reply.fusion)
    return line


def _ms(value: Any) -> Any:
    """Milliseconds as plain numbers (the response was parsed with every decimal as ``Decimal``, which is
    right for money and would be written as text)."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, list):
        return [_ms(v) for v in value]
    if isinstance(value, dict):
        return {k: _ms(v) for k, v in value.items()}
    return value


def trim_fusion(fusion: dict[str, Any]) -> dict[str, Any]:
    """What the report uses of a pool's ``fusion`` metadata (and what a reader of results.jsonl wants)."""
    judge = fusion.get("judge") if isinstance(fusion.get("judge"), dict) else None
    return {
        "mode": fusion.get("mode"),
        "winner": fusion.get("winner"),
        "degraded": fusion.get("degraded"),
        "cost_usd": fusion.get("cost_usd"),
        "cost_by_role": fusion.get("cost_by_role"),
        "latency_ms": _ms(fusion.get("latency_ms")),
        "judge_status": judge.get("status") if judge else None,
        "members": [
            {
                "model": m.get("model"),
                "status": m.get("status"),
                "latency_ms": _ms(m.get("latency_ms")),
                "cost_usd": m.get("cost_usd"),
                "error_type": m.get("error_type"),
            }
            for m in fusion.get("members") or ()
            if isinstance(m, dict)
        ],
    }
