"""A model name is a passthrough: the caller's body goes upstream as sent, only ``model`` replaced."""

from __future__ import annotations

import time
from typing import Any

from gateway.books.calls import CallRecord
from gateway.books.cost import call_cost
from gateway.books.usage import Usage
from gateway.config.loader import ModelSpec
from gateway.pipeline.context import RequestContext
from gateway.pipeline.outcome import passthrough_answered
from gateway.routes import cached
from gateway.routes.shape import CHAT, Shaper
from gateway.wire.asgi import Headers, Send, cost_header, send_json, usage_with_cost
from gateway.wire.concurrency import beside
from gateway.wire.errors import GatewayError, UpstreamError
from gateway.wire.protocol import ChatRequest


def fallback_headers(record: CallRecord) -> Headers:
    """Which model answered and why, when it was a fallback (the body keeps the name the caller used)."""
    if record.fallback_reason is None or record.answered_by is None:
        return []
    return [(b"x-fusion-answered-by", record.answered_by.encode()),
            (b"x-fusion-fallback-reason", record.fallback_reason.encode())]


async def json(ctx: RequestContext, spec: ModelSpec, req: ChatRequest, send: Send, shape: Shaper = CHAT) -> None:
    body = {**req.body, "model": spec.upstream}
    record = CallRecord(model=spec.name, role="passthrough", pool=spec.name)
    try:
        data = await ctx.runtime.caller.complete(spec, body, record, ctx.started + spec.timeouts.total_s)
    except UpstreamError as exc:
        passthrough_answered(ctx, spec, record, exc)
        await shape.error(send, exc, ctx.headers)
        return
    data["model"] = req.model
    if not isinstance(data.get("usage"), dict) and record.usage is not None:
        data["usage"] = record.usage.to_openai()  # counted by the gateway: marked usage_estimated
    if isinstance(data.get("usage"), dict):
        usage_with_cost(data["usage"], record.cost)
    passthrough_answered(ctx, spec, record, None)
    if ctx.runtime.config.logging.content:
        ctx.fields["content"] = {"messages": req.messages, "answer": data.get("choices")}
    headers = [*ctx.headers, *cost_header(record.cost), *fallback_headers(record)]
    await send_json(send, 200, shape.completion(data), headers)
    if ctx.cache_key is not None:
        await cached.store(ctx, ctx.cache_key, data, record.cost)


async def stream(
    ctx: RequestContext, spec: ModelSpec, req: ChatRequest, send: Send, shape: Shaper = CHAT
) -> None:
    opts = req.body.get("stream_options")
    # Usage is asked for upstream even when the caller did not: cost must be exact either way.
    body = {
        **req.body,
        "model": spec.upstream,
        "stream_options": {**(opts if isinstance(opts, dict) else {}), "include_usage": True},
    }
    record = CallRecord(model=spec.name, role="passthrough", pool=spec.name)
    out = shape.stream(send, ctx.headers, ctx.runtime.config.server.keepalive_s)
    last: dict[str, Any] = {}
    usage_sent = answered = first_sent = False

    async def forward(chunk: dict[str, Any], _added: str) -> None:
        nonlocal last, usage_sent, first_sent
        if not first_sent:
            first_sent = True
            ctx.services.metrics.first_chunk_sent(spec.name, "passthrough", time.monotonic() - ctx.started)
        chunk["model"] = req.model
        if not last:  # the first chunk: the headers go out with it
            ctx.headers.extend(fallback_headers(record))
        last = chunk
        if not req.include_usage:
            if not chunk.get("choices") and chunk.get("usage"):
                return  # the usage chunk the caller did not ask for
            chunk.pop("usage", None)
        elif isinstance(chunk.get("usage"), dict):
            usage_sent = True
            # The call is not settled yet, but its cost is this usage at the model's price.
            usage_with_cost(chunk["usage"], call_cost(spec.price, Usage.from_openai(chunk["usage"])))
        await out.event(chunk)

    async def work() -> None:
        acc = await ctx.runtime.caller.relay(spec, body, record, ctx.started + spec.timeouts.total_s, forward)
        if req.include_usage and not usage_sent and record.usage is not None:
            # The upstream sent no usage: the caller asked for it, so it gets the gateway's count, marked.
            await out.event(
                {"id": last.get("id"), "object": "chat.completion.chunk", "created": last.get("created"),
                 "model": req.model, "choices": [], "usage": usage_with_cost(record.usage.to_openai(), record.cost)}
            )
        if ctx.runtime.config.logging.content:
            ctx.fields["content"] = {"messages": req.messages, "answer": acc.message()}
        # Recorded before [DONE], so that the cost can be looked up as soon as the stream ends.
        nonlocal answered
        answered = True
        passthrough_answered(ctx, spec, record, None)
        await out.done()
        if ctx.cache_key is not None and acc.finish_reason is not None:
            usage = record.usage.to_openai() if record.usage is not None else None
            answer = cached.message_answer(req, acc.message(), acc.finish_reason, usage, last)
            await cached.store(ctx, ctx.cache_key, answer, record.cost)

    try:
        # Comment lines while the upstream is silent, so that proxies and clients with read timeouts
        # between the caller and the gateway keep the stream open.
        await out.until_shutdown(beside(work(), out.keepalive), ctx.services.draining)
    except GatewayError as exc:
        if not answered:
            passthrough_answered(ctx, spec, record, exc)
        await out.fail(exc)
