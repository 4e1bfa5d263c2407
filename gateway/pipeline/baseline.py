"""Live comparison with a single (fine-tuned) model: sampled shadow calls, judged pairwise.

For a sampled request the pool's baseline model gets the same request at the same moment as the
members, in the gateway's background task group: the caller's response never waits for it. Once both
answers exist, the judge compares them in both orders. Background work is bounded
(``server.background_max_inflight``; beyond it a sample is skipped and counted) and is cancelled
cleanly when the gateway shuts down.
"""

from __future__ import annotations

import random
import secrets
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import anyio
from anyio.abc import TaskGroup

from fusion_modes.base import Candidate, JudgeFailed
from fusion_modes.both_orders import prefer
from gateway.books.calls import CallRecord, Ledger
from gateway.books.ledger.entry import LedgerEntry
from gateway.books.ledger.writer import LedgerWriter
from gateway.books.metrics import Metrics
from gateway.books.stats import StatsStore
from gateway.config.pools import BaselineConfig, PoolConfig
from gateway.pipeline.judge_calls import ModelJudge
from gateway.pipeline.plan import PoolPlan
from gateway.pipeline.runtime import Runtime
from gateway.wire.errors import UpstreamError


@dataclass(frozen=True)
class FusedAnswer:
    message: dict[str, Any]
    latency_ms: float
    cost: Decimal | None


class Sample:
    """The hand-over from a fused request to its baseline job: the fused answer, or nothing."""

    def __init__(self) -> None:
        self._done = anyio.Event()
        self._answer: FusedAnswer | None = None

    def deliver(self, answer: FusedAnswer | None) -> None:
        if not self._done.is_set():
            self._answer = answer
            self._done.set()

    async def wait(self) -> FusedAnswer | None:
        await self._done.wait()
        return self._answer


@dataclass(frozen=True, slots=True)
class Shadowed:
    """The request a sample shadows: its record in the ledger links to it."""

    request_id: str
    key: str


class BaselineSampler:
    def __init__(
        self, metrics: Metrics, stats: StatsStore, max_inflight: int, ledger: LedgerWriter | None = None
    ) -> None:
        self._metrics = metrics
        self._stats = stats
        self._ledger = ledger
        self._max = max_inflight
        self._inflight = 0
        self._rng = random.Random(secrets.randbits(64))
        self.task_group: TaskGroup | None = None  # set by the gateway's lifespan

    def start(self, runtime: Runtime, plan: PoolPlan, shadowed: Shadowed) -> Sample | None:
        """Maybe sample this request. Returns the hand-over to fill once the fused answer exists."""
        cfg = plan.pool.baseline
        if cfg is None or self.task_group is None or self._rng.random() >= cfg.sample_rate:
            return None
        if self._inflight >= self._max:
            self._metrics.baseline_skipped(plan.name)
            return None
        sample = Sample()
        self._inflight += 1
        self.task_group.start_soon(self._job, runtime, plan, cfg, sample, shadowed)
        return sample

    async def _job(
        self, runtime: Runtime, plan: PoolPlan, cfg: BaselineConfig, sample: Sample, shadowed: Shadowed
    ) -> None:
        entry = LedgerEntry(
            request_id=shadowed.request_id + ":baseline",
            parent_id=shadowed.request_id,
            kind="baseline",
            key=shadowed.key,
            created=time.time(),
            status=0,
            model=cfg.model,
            pool=plan.name,
            mode="baseline",
        )
        try:
            await self._run(runtime, plan, cfg, sample, entry)
        finally:
            self._inflight -= 1
            if self._ledger is not None and entry.status:
                self._ledger.submit(entry)

    async def _run(
        self, runtime: Runtime, plan: PoolPlan, cfg: BaselineConfig, sample: Sample, entry: LedgerEntry
    ) -> None:
        pool = plan.pool
        spec = runtime.config.models[cfg.model]
        record = CallRecord(model=spec.name, role="baseline", pool=plan.name)
        calls = Ledger([record])
        entry.calls, entry.providers = calls.records, runtime.providers_of
        deadline = time.monotonic() + pool.deadline_s
        try:
            answer = await runtime.caller.collect(spec, {**plan.body, "model": spec.upstream}, record, deadline)
        except UpstreamError as exc:
            entry.status, entry.error_code, entry.latency_ms, entry.cost = exc.http_status, exc.code, \
                record.latency_ms, record.cost
            self._stats.baseline_failed(plan.name)
            self._metrics.baseline_called(plan.name, ok=False)
            return
        entry.status, entry.latency_ms, entry.cost = 200, record.latency_ms, record.cost
        if runtime.config.ledger.content:
            entry.messages, entry.answer = plan.body["messages"], answer.message()
        self._metrics.baseline_called(plan.name, ok=True)
        fused = await sample.wait()
        if fused is None:
            return  # the fused request failed or was abandoned: nothing to compare
        lat_ratio, cost_ratio = self._stats.baseline(
            plan.name, record.latency_ms, record.cost, fused.latency_ms, fused.cost
        )
        entry.latency_ratio, entry.cost_ratio = lat_ratio, cost_ratio
        self._metrics.baseline_ratios(plan.name, lat_ratio, cost_ratio)
        if cfg.compare == "judge":
            entry.comparison = await self._compare(runtime, plan, pool, cfg, fused, answer.message(), calls)
            entry.cost = calls.cost()

    async def _compare(
        self,
        runtime: Runtime,
        plan: PoolPlan,
        pool: PoolConfig,
        cfg: BaselineConfig,
        fused: FusedAnswer,
        baseline: dict[str, Any],
        calls: Ledger,
    ) -> str | None:
        """The pairwise verdict: fusion, baseline, tie, or error (the comparison judge failed)."""
        judge_model = cfg.compare_judge or (pool.judge.model if pool.judge else None)
        if judge_model is None:
            return None
        judge = ModelJudge(
            runtime.caller,
            runtime.config.models[judge_model],
            pool.judge,
            calls,
            plan.name,
            time.monotonic() + (pool.judge.timeout_s if pool.judge else 30.0),
            role="comparison",
        )
        first = Candidate(member=0, model=plan.name, message=fused.message, finish_reason="stop")
        second = Candidate(member=1, model=cfg.model, message=baseline, finish_reason="stop")
        try:
            pref = await prefer(judge, plan.body["messages"], first, second, self._rng, criteria=plan.criteria)
        except JudgeFailed:
            self._stats.comparison(plan.name, "error")
            self._metrics.baseline_compared(plan.name, "error")
            return "error"
        result = {"first": "fusion", "second": "baseline", "tie": "tie"}[pref]
        self._stats.comparison(plan.name, result)
        self._metrics.baseline_compared(plan.name, result)
        return result
