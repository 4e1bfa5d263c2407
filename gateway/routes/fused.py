"""Answering a pool request, as one JSON completion or as an SSE stream."""

from __future__ import annotations

import random
import secrets
import time
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import anyio

from fusion_modes.base import Emit, FusionError, FusionResult
from gateway.asgi import Headers, Send, send_error, send_json
from gateway.baseline import FusedAnswer, Sample
from gateway.calls import Ledger
from gateway.errors import GatewayError, JudgeUnavailable, PoolFailed
from gateway.jsonutil import decimal_text
from gateway.outcome import fused_cost, latency_breakdown, pool_metadata, record_pool_metrics
from gateway.plan import PoolPlan
from gateway.pool import PoolOutcome, Timeline, run_pool
from gateway.protocol import ChatRequest, chunk, completion, new_completion_id, now_s
from gateway.sse_out import SSEResponse

if TYPE_CHECKING:
    from gateway.routes.chat import RequestContext


def cost_header(cost: Decimal | None) -> Headers:
    text = decimal_text(cost) if cost is not None else "unknown"
    return [(b"x-fusion-cost-usd", text.encode())]


def _failed(ctx: RequestContext, plan: PoolPlan, exc: BaseException) -> GatewayError:
    """Count a failed request and give the error to show the caller."""
    m = ctx.gateway.metrics
    m.requests.labels(plan.name, plan.mode, "error").inc()
    ctx.gateway.stats.request(plan.name, "error")
    if isinstance(exc, FusionError):
        m.judge_verdicts.labels(plan.name, "error").inc()
        return JudgeUnavailable(str(exc))
    if isinstance(exc, PoolFailed):
        m.quorum_misses.labels(plan.name).inc()
    assert isinstance(exc, GatewayError)
    return exc


class _Fused:
    """One pool request: runs the pool, hands the answer to a baseline sample, accounts for it."""

    def __init__(self, ctx: RequestContext, plan: PoolPlan) -> None:
        self.ctx = ctx
        self.plan = plan
        self.ledger = Ledger()
        self.sample: Sample | None = None

    async def run(self, emit: Emit | None = None) -> PoolOutcome:
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
        return meta


async def json(ctx: RequestContext, plan: PoolPlan, req: ChatRequest, send: Send) -> None:
    fused = _Fused(ctx, plan)
    try:
        outcome = await fused.run()
    except (GatewayError, FusionError) as exc:
        await send_error(send, _failed(ctx, plan, exc), ctx.headers)
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
    await send_json(send, 200, body, [*ctx.headers, *cost_header(fused_cost(fused.ledger))])


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
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(out.keepalive)
            outcome = await fused.run(emit)
            tg.cancel_scope.cancel()
        result = outcome.result
        if not result.streamed:
            for delta in _message_deltas(result, include_role=not role_sent):
                await out.event(make(delta))
        meta = fused.finish(outcome)
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
    except (GatewayError, FusionError) as exc:
        await out.fail(_failed(ctx, plan, exc))


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
