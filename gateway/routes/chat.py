"""``POST /v1/chat/completions``: the hot path, as raw ASGI.

Parse once, check what the gateway relies on, resolve the name to a model or a pool, then answer JSON
or SSE. A model is a passthrough: the caller's body goes upstream as sent, with only ``model``
replaced. A pool goes through :mod:`gateway.routes.fused`. Whatever happens, the caller gets the OpenAI
error envelope, and a client that hangs up cancels every upstream call made for it.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from gateway.asgi import (
    ClientGone,
    Headers,
    Receive,
    Scope,
    Send,
    header,
    read_body,
    send_error,
    send_json,
    until_disconnect,
)
from gateway.calls import CallRecord
from gateway.config.loader import ModelSpec
from gateway.errors import GatewayError, InvalidRequest, UpstreamError
from gateway.plan import PoolPlan, plan_pool
from gateway.protocol import ChatRequest, parse_chat_request
from gateway.routes import fused
from gateway.runtime import PoolTarget, Runtime
from gateway.sse_out import SSEResponse
from gateway.state import Gateway

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


@dataclass
class RequestContext:
    gateway: Gateway
    runtime: Runtime
    request_id: str
    started: float
    headers: Headers  # sent with every response to this request


def request_id(scope: Scope) -> str:
    given = header(scope, b"x-request-id")
    if given is not None and _REQUEST_ID.fullmatch(given):
        return given
    return "req_" + secrets.token_hex(12)


async def chat_completions(gw: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    started = time.monotonic()
    rid = request_id(scope)
    ctx = RequestContext(gw, gw.runtime, rid, started, [(b"x-request-id", rid.encode())])
    server = ctx.runtime.config.server
    plan: PoolPlan | None = None
    try:
        raw = await read_body(scope, receive, server.max_body_bytes)
        req = parse_chat_request(raw, max_messages=server.max_messages)
        target = ctx.runtime.resolve(req.model)
        if isinstance(target, PoolTarget):
            plan = plan_pool(ctx.runtime.config, target.name, target.pool, req)
        elif req.fusion:
            raise InvalidRequest(
                f"'fusion' options apply to pools; '{req.model}' is a model",
                param="fusion",
                code="invalid_fusion_option",
            )
    except ClientGone:
        return
    except GatewayError as exc:
        await send_error(send, exc, ctx.headers)
        return

    if plan is not None:
        work = fused.stream(ctx, plan, req, send) if req.stream else fused.json(ctx, plan, req, send)
    else:
        assert isinstance(target, ModelSpec)
        work = _direct_stream(ctx, target, req, send) if req.stream else _direct_json(ctx, target, req, send)
    gw.metrics.inflight.inc()
    try:
        await until_disconnect(receive, work)
    finally:
        gw.metrics.inflight.dec()


def _done(ctx: RequestContext, spec: ModelSpec, outcome: str) -> None:
    m = ctx.gateway.metrics
    m.requests.labels(spec.name, "passthrough", outcome).inc()
    if outcome == "ok":
        m.request_duration.labels(spec.name, "passthrough").observe(time.monotonic() - ctx.started)


async def _direct_json(ctx: RequestContext, spec: ModelSpec, req: ChatRequest, send: Send) -> None:
    body = {**req.body, "model": spec.upstream}
    record = CallRecord(model=spec.name, role="passthrough", pool=spec.name)
    try:
        data = await ctx.runtime.caller.complete(spec, body, record, ctx.started + spec.timeouts.total_s)
    except UpstreamError as exc:
        _done(ctx, spec, "error")
        await send_error(send, exc, ctx.headers)
        return
    data["model"] = req.model
    if not isinstance(data.get("usage"), dict) and record.usage is not None:
        data["usage"] = record.usage.to_openai()  # counted by the gateway: marked usage_estimated
    _done(ctx, spec, "ok")
    await send_json(send, 200, data, [*ctx.headers, *fused.cost_header(record.cost)])


async def _direct_stream(ctx: RequestContext, spec: ModelSpec, req: ChatRequest, send: Send) -> None:
    opts = req.body.get("stream_options")
    # Usage is asked for upstream even when the caller did not: cost must be exact either way.
    body = {
        **req.body,
        "model": spec.upstream,
        "stream_options": {**(opts if isinstance(opts, dict) else {}), "include_usage": True},
    }
    record = CallRecord(model=spec.name, role="passthrough", pool=spec.name)
    out = SSEResponse(send, ctx.headers, ctx.runtime.config.server.keepalive_s)

    last: dict[str, Any] = {}
    usage_sent = False

    async def forward(chunk: dict[str, Any], _added: str) -> None:
        nonlocal last, usage_sent
        chunk["model"] = req.model
        last = chunk
        if not req.include_usage:
            if not chunk.get("choices") and chunk.get("usage"):
                return  # the usage chunk the caller did not ask for
            chunk.pop("usage", None)
        elif chunk.get("usage"):
            usage_sent = True
        await out.event(chunk)

    try:
        await ctx.runtime.caller.relay(spec, body, record, ctx.started + spec.timeouts.total_s, forward)
        if req.include_usage and not usage_sent and record.usage is not None:
            # The upstream sent no usage: the caller asked for it, so it gets the gateway's count, marked.
            await out.event(
                {
                    "id": last.get("id"),
                    "object": "chat.completion.chunk",
                    "created": last.get("created"),
                    "model": req.model,
                    "choices": [],
                    "usage": record.usage.to_openai(),
                }
            )
        await out.done()
    except GatewayError as exc:
        _done(ctx, spec, "error")
        await out.fail(exc)
        return
    _done(ctx, spec, "ok")
