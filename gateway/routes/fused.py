"""Answering a pool request, as one JSON completion or as an SSE stream."""

from __future__ import annotations

import random
import secrets
import time
from typing import Any

from fusion_modes.base import Emit, FusionError, FusionResult
from gateway.books.calls import Ledger
from gateway.pipeline.baseline import FusedAnswer, Sample
from gateway.pipeline.context import RequestContext
from gateway.pipeline.events import FusionEvents
from gateway.pipeline.outcome import fused_cost, latency_breakdown, pool_metadata, record_pool_metrics
from gateway.pipeline.plan import PoolPlan
from gateway.pipeline.pool import PoolOutcome, Timeline, run_pool
from gateway.wire.asgi import Send, cost_header, send_error, send_json
from gateway.wire.concurrency import beside
from gateway.wire.errors import GatewayError, JudgeUnavailable, PoolFailed
from gateway.wire.protocol import ChatRequest, chunk, completion, new_completion_id, now_s
from gateway.wire.sse_out import SSEResponse


def _failed(ctx: RequestContext, plan: PoolPlan, exc: BaseException) -> GatewayError:
    """Count a failed request and give the error to show the caller."""
    m = ctx.gateway.metrics
    m.requests.labels(plan.name, plan.mode, "error").inc()
    ctx.gateway.stats.request(plan.name, "error")
    if isinstance(exc, FusionError):
        m.judge_verdicts.labels(plan.name, "error").inc()
        exc = JudgeUnavailable(str(exc))
    elif isinstance(exc, PoolFailed):
        m.quorum_misses.labels(plan.name).inc()
    assert isinstance(exc, GatewayError)
    ctx.status = exc.http_status
    ctx.fields["error"] = exc.code
    return exc


class _Fused:
    """One pool request: runs the pool, hands the answer to a baseline sample, accounts for it."""

    def __init__(self, ctx: RequestContext, plan: PoolPlan) -> None:
        self.ctx = ctx
        self.plan = plan
        self.ledger = Ledger()
        self.sample: Sample | None = None

    async def run(self, emit: Emit | None = None, events: FusionEvents | None = None) -> PoolOutcome:
        ctx, plan = self.ctx, self.plan
        # The baseline starts with the members, before the fan-out.
        self.sample = ctx.gateway.baseline.start(ctx.runtime, plan)
        try:
            return await run_pool(
                ctx.runtime.caller,
                plan,
                self.ledger,
                Timeline(start=ctx.started),
                deadline=ctx.started + plan.pool.deadline_s,
                rng=random.Random(secrets.randbits(64)),
                emit=emit,
                events=events,
            )
        except BaseException:
            if self.sample is not None:
                self.sample.deliver(None)
            raise

    def finish(self, outcome: PoolOutcome) -> dict[str, Any]:
        """Latency, metadata, metrics, stats; and the fused answer to the baseline job, if sampled."""
        latency = latency_breakdown(outcome, time.monotonic())
        meta = pool_metadata(outcome, latency)
        gw = self.ctx.gateway
        record_pool_metrics(gw.metrics, outcome, latency)
        cost = fused_cost(self.ledger)
        gw.stats.request(self.plan.name, "degraded" if outcome.degraded else "ok", latency["total"], cost)
        if self.sample is not None:
            self.sample.deliver(FusedAnswer(outcome.result.message, latency["total"], cost))
            meta["baseline_sampled"] = True
        self._log_fields(outcome, meta)
        return meta

    def _log_fields(self, outcome: PoolOutcome, meta: dict[str, Any]) -> None:
        ctx = self.ctx
        ctx.status = 200
        ctx.cost = meta["cost_usd"]
        judge = meta["judge"]
        ctx.fields.update(
            {
                "pool": self.plan.name,
                "degraded": meta["degraded"],
                "members": [{"model": m["model"], "status": m["status"], "latency_ms": m["latency_ms"]}
                            for m in meta["members"]],
                "judge": judge["status"] if judge else None,
                "winner": meta["winner"],
                "rounds": len(meta["rounds"]),
                "latency_breakdown_ms": meta["latency_ms"],
            }
        )
        if ctx.runtime.config.logging.content:
            ctx.fields["content"] = {"messages": self.plan.body["messages"], "answer": outcome.result.message}


async def json(ctx: RequestContext, plan: PoolPlan, req: ChatRequest, send: Send) -> None:
    fused = _Fused(ctx, plan)
    try:
        outcome = await fused.run()
    except (GatewayError, FusionError) as exc:
        # What was spent before the failure is still spent: say so.
        ctx.cost = fused_cost(fused.ledger)
        await send_error(send, _failed(ctx, plan, exc), [*ctx.headers, *cost_header(ctx.cost)])
        return
    result = outcome.result
    meta = fused.finish(outcome)
    body = completion(
        id=new_completion_id(),
        created=now_s(),
        model=plan.name,
        message=result.message,
        finish_reason=result.finish_reason,
        usage=fused.ledger.usage("member", "judge").to_openai(),
    )
    body["fusion"] = meta
    await send_json(send, 200, body, [*ctx.headers, *cost_header(ctx.cost)])  # ctx.cost: set by finish()


async def stream(ctx: RequestContext, plan: PoolPlan, req: ChatRequest, send: Send) -> None:
    out = SSEResponse(send, ctx.headers, ctx.runtime.config.server.keepalive_s)
    cid, created, with_usage = new_completion_id(), now_s(), req.include_usage
    role_sent = False

    def make(delta: dict[str, Any] | None, finish: str | None = None) -> dict[str, Any]:
        return chunk(id=cid, created=created, model=plan.name, delta=delta, finish_reason=finish, with_usage=with_usage)

    async def emit(text: str) -> None:
        nonlocal role_sent
        if not role_sent:
            role_sent = True
            await out.event(make({"role": "assistant", "content": ""}))
        await out.event(make({"content": text}))

    fused = _Fused(ctx, plan)
    events: FusionEvents | None = None
    if plan.events:

        async def send_event(event: dict[str, Any]) -> None:
            c = make(None)
            c["fusion_event"] = event
            await out.event(c)

        events = FusionEvents(send_event, ctx.started)

    async def work() -> None:
        outcome = await beside(fused.run(emit, events), out.keepalive)
        result = outcome.result
        meta = fused.finish(outcome)
        if events is not None and meta["judge"] is not None:
            await events.judge_done(meta["judge"])
        if not result.streamed:
            for delta in _message_deltas(result, include_role=not role_sent):
                await out.event(make(delta))
        last = make({}, result.finish_reason)
        if with_usage:
            await out.event(last)
            usage_chunk = make(None)
            usage_chunk["usage"] = fused.ledger.usage("member", "judge").to_openai()
            usage_chunk["fusion"] = meta
            await out.event(usage_chunk)
        else:
            last["fusion"] = meta
            await out.event(last)
        await out.done()

    try:
        await out.until_shutdown(work(), ctx.gateway.draining)
    except (GatewayError, FusionError) as exc:
        ctx.cost = fused_cost(fused.ledger)
        await out.fail(_failed(ctx, plan, exc), cost_header(ctx.cost))


def _message_deltas(result: FusionResult, include_role: bool) -> list[dict[str, Any]]:
    """A finished answer as stream deltas: role, content, refusal, tool calls."""
    msg = result.message
    deltas: list[dict[str, Any]] = []
    first: dict[str, Any] = {"role": "assistant", "content": ""} if include_role else {}
    content = msg.get("content")
    if isinstance(content, str) and content:
        deltas.append({**first, "content": content})
    elif first:
        deltas.append(first)
    if msg.get("refusal"):
        deltas.append({"refusal": msg["refusal"]})
    for i, call in enumerate(msg.get("tool_calls") or ()):
        deltas.append({"tool_calls": [{"index": i, **call}]})
    return deltas
