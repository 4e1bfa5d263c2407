"""Answering a pool request, as one JSON completion or as an SSE stream."""

from __future__ import annotations

import time
from typing import Any

from fusion_modes.base import Candidate, FusionError, FusionResult
from gateway.pipeline.context import RequestContext
from gateway.pipeline.events import FusionEvents
from gateway.pipeline.fused import FusedRequest
from gateway.pipeline.plan import PoolPlan
from gateway.routes import cached
from gateway.routes.shape import CHAT, Shaper
from gateway.wire.asgi import Send, cost_header, send_json, usage_with_cost
from gateway.wire.concurrency import beside
from gateway.wire.errors import GatewayError
from gateway.wire.protocol import ChatRequest, chunk, completion, new_completion_id, now_s


async def json(ctx: RequestContext, plan: PoolPlan, req: ChatRequest, send: Send, shape: Shaper = CHAT) -> None:
    fused = FusedRequest(ctx, plan)
    try:
        outcome = await fused.run()
    except (GatewayError, FusionError) as exc:
        error = fused.failed(exc)
        # What was spent before the failure is still spent: say so.
        await shape.error(send, error, [*ctx.headers, *cost_header(ctx.cost)])
        return
    result = outcome.result
    with fused.answering(outcome) as meta:
        winner = result.winner
        body = completion(
            id=new_completion_id(),
            created=now_s(),
            model=plan.name,
            message=result.message,
            finish_reason=result.finish_reason,
            usage=usage_with_cost(fused.ledger.usage("member", "judge").to_openai(), meta.cost_usd),
            logprobs=winner.logprobs if winner is not None else None,
        )
        body.update(_sent_beside(winner))
        body["fusion"] = meta.to_json()
        await send_json(send, 200, shape.completion(body), [*ctx.headers, *cost_header(meta.cost_usd)])
    if ctx.cache_key is not None and not meta.degraded:
        await cached.store(ctx, ctx.cache_key, body, meta.cost_usd)


async def stream(
    ctx: RequestContext, plan: PoolPlan, req: ChatRequest, send: Send, shape: Shaper = CHAT
) -> None:
    out = shape.stream(send, ctx.headers, ctx.runtime.config.server.keepalive_s)
    cid, created, with_usage = new_completion_id(), now_s(), req.include_usage
    role_sent = False
    beside_answer: dict[str, str] = {}  # the winner's completion-level fields, once it is known

    def first_chunk() -> None:
        """The answer's first chunk is going out (fusion events and keep-alives are not the answer)."""
        ctx.services.metrics.first_chunk_sent(plan.name, plan.mode, time.monotonic() - ctx.started)

    def make(delta: dict[str, Any] | None, finish: str | None = None) -> dict[str, Any]:
        c = chunk(id=cid, created=created, model=plan.name, delta=delta, finish_reason=finish, with_usage=with_usage)
        c.update(beside_answer)
        return c

    async def emit(text: str) -> None:
        nonlocal role_sent
        if not role_sent:
            role_sent = True
            first_chunk()
            await out.event(make({"role": "assistant", "content": ""}))
        await out.event(make({"content": text}))

    fused = FusedRequest(ctx, plan)
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
        with fused.answering(outcome) as meta:
            if events is not None and meta.judge is not None:
                await events.judge_done(meta.judge)
            winner = result.winner
            beside_answer.update(_sent_beside(winner))
            if not result.streamed:
                if not role_sent:
                    first_chunk()
                logprobs = winner.logprobs if winner is not None else None
                for delta in _message_deltas(result, include_role=not role_sent):
                    c = make(delta)
                    if logprobs is not None:  # all of them on the first chunk: the answer is already whole
                        c["choices"][0]["logprobs"], logprobs = logprobs, None
                    await out.event(c)
            last = make({}, result.finish_reason)
            if with_usage:
                await out.event(last)
                usage_chunk = make(None)
                usage_chunk["usage"] = usage_with_cost(fused.ledger.usage("member", "judge").to_openai(),
                                                       meta.cost_usd)
                usage_chunk["fusion"] = meta.to_json()
                await out.event(usage_chunk)
            else:
                last["fusion"] = meta.to_json()
                await out.event(last)
            await out.done()
        if ctx.cache_key is not None and not meta.degraded:
            usage = fused.ledger.usage("member", "judge").to_openai()
            answer = completion(id=cid, created=created, model=plan.name, message=result.message,
                                finish_reason=result.finish_reason, usage=usage)
            answer["fusion"] = meta.to_json()
            await cached.store(ctx, ctx.cache_key, answer, meta.cost_usd)

    try:
        await out.until_shutdown(work(), ctx.services.draining)
    except (GatewayError, FusionError) as exc:
        error = fused.failed(exc)
        await out.fail(error, cost_header(ctx.cost))


def _sent_beside(winner: Candidate | None) -> dict[str, str]:
    """The completion-level fields the winning member sent with its answer, as it sent them."""
    out: dict[str, str] = {}
    if winner is not None and winner.system_fingerprint is not None:
        out["system_fingerprint"] = winner.system_fingerprint
    if winner is not None and winner.service_tier is not None:
        out["service_tier"] = winner.service_tier
    return out


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
    if msg.get("annotations"):
        deltas.append({"annotations": msg["annotations"]})
    return deltas
