"""``POST /v1/chat/completions``: the hot path, as raw ASGI.

Admission first (key, permission, cost limit, rate, budget), then the work: a model is a passthrough
(:mod:`gateway.routes.direct`), a pool is fused (:mod:`gateway.routes.fused`). Whatever happens the
caller gets the OpenAI error envelope, a client that hangs up cancels every upstream call made for
it, the key's budget is settled with the real cost, and one log line and one ledger record
(:func:`gateway.pipeline.outcome.finished`) record the request.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable, Coroutine
from typing import Any

from gateway.config.loader import ModelSpec
from gateway.pipeline.admission import Admission, admit, settle
from gateway.pipeline.cache import cache_key
from gateway.pipeline.context import RequestContext
from gateway.pipeline.outcome import finished as record_finished
from gateway.pipeline.plan import plan_pool
from gateway.pipeline.runtime import PoolTarget
from gateway.routes import cached, direct, fused
from gateway.routes.shape import CHAT, Inbound
from gateway.service.gateway import Gateway
from gateway.wire.asgi import (
    ClientGone,
    Exchange,
    Receive,
    Scope,
    Send,
    header,
    read_body,
    until_disconnect,
)
from gateway.wire.errors import GatewayError, InvalidRequest
from gateway.wire.protocol import ChatRequest

CHAT_PATH = "/v1/chat/completions"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


def request_id(scope: Scope) -> str:
    given = header(scope, b"x-request-id")
    if given is not None and _REQUEST_ID.fullmatch(given):
        return given
    return "req_" + secrets.token_hex(12)


async def serve(gw: Gateway, scope: Scope, receive: Receive, send: Send, inbound: Inbound) -> None:
    """One request of any inbound API: ``inbound`` reads its body into a chat request, and the
    :class:`~gateway.routes.shape.Shaper` it returns writes the answer back in that API's shape."""
    started = time.monotonic()
    exchange = Exchange(send)
    send = exchange.send
    rid = request_id(scope)
    ctx = RequestContext(gw, gw.runtime, rid, started, [(b"x-request-id", rid.encode())])
    if gw.tracing is None:
        await _serve_inbound(gw, ctx, scope, receive, exchange, inbound)
        return
    tracing = gw.tracing
    carrier = {k: v for k in ("traceparent", "tracestate") if (v := header(scope, k.encode())) is not None}
    with tracing.request(carrier, "POST", scope["path"]) as span:
        ctx.fields["trace_id"] = tracing.trace_id(span)
        try:
            await _serve_inbound(gw, ctx, scope, receive, exchange, inbound)
        finally:
            tracing.request_done(span, ctx.fields.get("model"), ctx.status or 499, ctx.cost, ctx.fields)


async def _serve_inbound(
    gw: Gateway, ctx: RequestContext, scope: Scope, receive: Receive, exchange: Exchange, inbound: Inbound
) -> None:
    send = exchange.send
    runtime = ctx.runtime
    server = runtime.config.server
    shaper = inbound.shaper
    try:
        ctx.principal = runtime.keys.authenticate(inbound.authorization(scope))
        raw = await read_body(scope, receive, server.max_body_bytes)
        req, shaper = inbound.parse(raw, server.max_messages)
        ctx.fields["model"] = req.model
        target = runtime.resolve(req.model)
        is_pool = isinstance(target, PoolTarget)
        runtime.keys.authorize(ctx.principal, req.model, is_pool=is_pool)
        # Cached answers are chat completions: the other inbound APIs are answered fresh.
        key = _cache_key(gw, scope, ctx, req) if gw.cache is not None and shaper is CHAT else None
        fresh: Callable[[], Coroutine[Any, Any, None]]
        if isinstance(target, PoolTarget):
            plan = plan_pool(runtime.config, target.name, target.pool, req)
            ctx.fields["mode"] = plan.mode
            admission = await admit(gw.limits, ctx.principal, req, plan)
            answer = fused.stream if req.stream else fused.json
            fresh = lambda: answer(ctx, plan, req, send, shaper)  # noqa: E731
        else:
            if req.fusion and set(req.fusion) != {"cache"}:
                raise InvalidRequest(
                    f"'fusion' options apply to pools; '{req.model}' is a model",
                    param="fusion",
                    code="invalid_fusion_option",
                )
            assert isinstance(target, ModelSpec)
            ctx.fields["mode"] = "passthrough"
            admission = await admit(gw.limits, ctx.principal, req, target)
            relay = direct.stream if req.stream else direct.json
            fresh = lambda: relay(ctx, target, req, send, shaper)  # noqa: E731
        hit = await gw.cache.get(key) if key is not None and gw.cache is not None else None
        work = cached.serve_hit(ctx, req, hit, send) if hit is not None else fresh()
        if key is not None and hit is None:
            ctx.cache_key = key
            ctx.headers.append(cached.MISS)
            gw.metrics.cache_missed(req.model)
    except ClientGone:
        return
    except GatewayError as exc:
        ctx.status = exc.http_status
        ctx.fields["error"] = exc.code
        gw.metrics.refused(exc.http_status, exc.code)
        await shaper.error(send, exc, ctx.headers)
        record_finished(ctx, scope, stream=False)
        return
    await _serve(gw, ctx, scope, receive, work, exchange, admission, req.stream, watch=hit is None)


def _cache_key(gw: Gateway, scope: Scope, ctx: RequestContext, req: ChatRequest) -> str | None:
    """The cache key of this request, or None when the caller or the request opts out."""
    opt = req.fusion.get("cache", True) if req.fusion else True
    if not isinstance(opt, bool):
        raise InvalidRequest("'fusion.cache' must be a boolean", param="fusion.cache", code="invalid_type")
    control = header(scope, b"cache-control")
    if not opt or (control is not None and "no-cache" in control.lower()):
        return None
    return cache_key(gw.config.raw.cache, req.model, req.body, ctx.principal.name)


async def _serve(
    gw: Gateway,
    ctx: RequestContext,
    scope: Scope,
    receive: Receive,
    work: Coroutine[Any, Any, None],
    exchange: Exchange,
    admission: Admission,
    stream: bool,
    *,
    watch: bool,
) -> None:
    """``watch``: cancel ``work`` if the caller hangs up. A cache hit is not watched: its answer is already
    in memory and goes out at once, there is no upstream call to stop, and the watcher (a task reading the
    connection) cost about a tenth of a hit."""
    finished = False
    try:
        with gw.metrics.in_flight:
            if watch:
                finished = await until_disconnect(receive, work, exchange)
            else:
                await work
                finished = True
    finally:
        if not finished:
            ctx.fields["client_disconnected"] = True
        if admission.reservation is not None:
            await settle(gw.limits, admission, ctx.cost)
        gw.metrics.key_spent(ctx.principal.name, ctx.cost)
        record_finished(ctx, scope, stream)
