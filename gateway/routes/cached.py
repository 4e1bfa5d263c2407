"""Answers from the response cache: replayed as JSON or as a stream, and stored after a miss."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from gateway.pipeline.cache import CachedAnswer
from gateway.pipeline.context import RequestContext
from gateway.wire import jsonutil
from gateway.wire.asgi import JSON_HEADERS, Send, cost_header
from gateway.wire.protocol import ChatRequest, chunk, completion
from gateway.wire.sse_out import SSEResponse

HIT: tuple[bytes, bytes] = (b"x-fusion-cache", b"hit")
MISS: tuple[bytes, bytes] = (b"x-fusion-cache", b"miss")
#: what every hit adds to the request's headers: it was a hit, and it cost nothing
_HIT_HEADERS = (HIT, *cost_header(Decimal(0)))


async def serve_hit(ctx: RequestContext, req: ChatRequest, hit: CachedAnswer, send: Send) -> None:
    ctx.status = 200
    ctx.cost = Decimal(0)
    ctx.kind, ctx.saved = "cached", hit.saved
    ctx.fields["cache"] = "hit"
    ctx.fields["cost_saved_usd"] = hit.saved
    ctx.services.metrics.cache_hit(req.model, hit.saved)
    headers = [*ctx.headers, *_HIT_HEADERS]
    if not req.stream:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [*JSON_HEADERS, (b"content-length", str(len(hit.body)).encode()), *headers]})
        await send({"type": "http.response.body", "body": hit.body})
        return
    out = SSEResponse(send, headers, ctx.runtime.config.server.keepalive_s)
    for c in replay_chunks(jsonutil.loads(hit.body), req.include_usage):
        await out.event(c)
    await out.done()


def replay_chunks(answer: dict[str, Any], include_usage: bool) -> list[dict[str, Any]]:
    """A stored ``chat.completion`` as the chunks of a stream: the message, the finish, then usage (when
    asked for) and the ``fusion`` object of a pool on the last chunk."""
    choice = answer["choices"][0]
    msg = choice["message"]

    def make(delta: dict[str, Any] | None, finish: str | None = None) -> dict[str, Any]:
        return chunk(id=answer["id"], created=answer["created"], model=answer["model"], delta=delta,
                     finish_reason=finish, with_usage=include_usage)

    out = [make({"role": "assistant", "content": msg.get("content") or ""})]
    if msg.get("refusal"):
        out.append(make({"refusal": msg["refusal"]}))
    for i, call in enumerate(msg.get("tool_calls") or ()):
        out.append(make({"tool_calls": [{"index": i, **call}]}))
    last = make({}, choice.get("finish_reason"))
    out.append(last)
    if include_usage:
        last = make(None)
        last["usage"] = answer.get("usage")
        out.append(last)
    if "fusion" in answer:
        last["fusion"] = answer["fusion"]
    return out


async def store(ctx: RequestContext, key: str, answer: dict[str, Any], cost: Decimal | None) -> None:
    """Keep an answer for the next identical request, as a hit replays it: its cost in ``usage`` is 0, as
    in the ``x-fusion-cost-usd`` header (the tokens stay those of the answer), and for a pool the ``fusion``
    object says it was cached, costs 0 and what it saved."""
    cache = ctx.services.cache
    if cache is None:
        return
    usage = answer.get("usage")
    if isinstance(usage, dict) and "fusion_cost_usd" in usage:
        answer = {**answer, "usage": {**usage, "fusion_cost_usd": Decimal(0)}}
    if isinstance(answer.get("fusion"), dict):
        answer = {**answer, "fusion": {**answer["fusion"], "cost_usd": Decimal(0),
                                       "cache": {"hit": True, "saved_usd": cost}}}
    await cache.put(key, CachedAnswer(jsonutil.dumps(answer), cost))


def message_answer(req: ChatRequest, message: dict[str, Any], finish: str | None, usage: dict[str, Any] | None,
                   first: dict[str, Any]) -> dict[str, Any]:
    """A streamed answer, assembled, as the ``chat.completion`` a later JSON or stream hit replays."""
    return completion(id=str(first.get("id") or "chatcmpl-cached"), created=int(first.get("created") or 0),
                      model=req.model, message=message, finish_reason=finish, usage=usage)
