"""``POST /v1/chat/completions``: the hot path, as raw ASGI.

Admission first (key, permission, cost limit, rate, budget), then the work: a model is a passthrough
(:mod:`gateway.routes.direct`), a pool is fused (:mod:`gateway.routes.fused`). Whatever happens the
caller gets the OpenAI error envelope, a client that hangs up cancels every upstream call made for
it, the key's budget is settled with the real cost, and one log line records the request.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Coroutine
from typing import Any

from gateway.books.logs import log_request
from gateway.config.loader import ModelSpec
from gateway.pipeline.admission import Admission, admit, settle
from gateway.pipeline.context import RequestContext
from gateway.pipeline.plan import plan_pool
from gateway.pipeline.runtime import PoolTarget
from gateway.routes import direct, fused
from gateway.service.gateway import Gateway
from gateway.wire.asgi import (
    ClientGone,
    Receive,
    Scope,
    Send,
    client_host,
    header,
    read_body,
    send_error,
    until_disconnect,
)
from gateway.wire.errors import GatewayError, InvalidRequest
from gateway.wire.protocol import parse_chat_request

CHAT_PATH = "/v1/chat/completions"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


def request_id(scope: Scope) -> str:
    given = header(scope, b"x-request-id")
    if given is not None and _REQUEST_ID.fullmatch(given):
        return given
    return "req_" + secrets.token_hex(12)


async def chat_completions(gw: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    started = time.monotonic()
    rid = request_id(scope)
    ctx = RequestContext(gw, gw.runtime, rid, started, [(b"x-request-id", rid.encode())])
    if gw.tracing is None:
        await _chat(gw, ctx, scope, receive, send)
        return
    tracing = gw.tracing
    carrier = {k: v for k in ("traceparent", "tracestate") if (v := header(scope, k.encode())) is not None}
    with tracing.request(carrier, "POST", CHAT_PATH) as span:
        ctx.fields["trace_id"] = tracing.trace_id(span)
        try:
            await _chat(gw, ctx, scope, receive, send)
        finally:
            tracing.request_done(span, ctx.fields.get("model"), ctx.status or 499, ctx.cost, ctx.fields)


async def _chat(gw: Gateway, ctx: RequestContext, scope: Scope, receive: Receive, send: Send) -> None:
    runtime = ctx.runtime
    server = runtime.config.server
    try:
        ctx.principal = runtime.keys.authenticate(header(scope, b"authorization"))
        raw = await read_body(scope, receive, server.max_body_bytes)
        req = parse_chat_request(raw, max_messages=server.max_messages)
        ctx.fields["model"] = req.model
        target = runtime.resolve(req.model)
        is_pool = isinstance(target, PoolTarget)
        runtime.keys.authorize(ctx.principal, req.model, is_pool=is_pool)
        if isinstance(target, PoolTarget):
            plan = plan_pool(runtime.config, target.name, target.pool, req)
            ctx.fields["mode"] = plan.mode
            admission = await admit(gw.limits, ctx.principal, req, plan)
            work = fused.stream(ctx, plan, req, send) if req.stream else fused.json(ctx, plan, req, send)
        else:
            if req.fusion:
                raise InvalidRequest(
                    f"'fusion' options apply to pools; '{req.model}' is a model",
                    param="fusion",
                    code="invalid_fusion_option",
                )
            assert isinstance(target, ModelSpec)
            ctx.fields["mode"] = "passthrough"
            admission = await admit(gw.limits, ctx.principal, req, target)
            work = direct.stream(ctx, target, req, send) if req.stream else direct.json(ctx, target, req, send)
    except ClientGone:
        return
    except GatewayError as exc:
        ctx.status = exc.http_status
        ctx.fields["error"] = exc.code
        gw.metrics.refused(exc.http_status, exc.code)
        await send_error(send, exc, ctx.headers)
        _log(ctx, scope, stream=False)
        return
    await _serve(gw, ctx, scope, receive, work, admission, req.stream)


async def _serve(
    gw: Gateway,
    ctx: RequestContext,
    scope: Scope,
    receive: Receive,
    work: Coroutine[Any, Any, None],
    admission: Admission,
    stream: bool,
) -> None:
    finished = False
    try:
        with gw.metrics.in_flight():
            finished = await until_disconnect(receive, work)
    finally:
        if not finished:
            ctx.fields["client_disconnected"] = True
        if admission.reservation is not None:
            await settle(gw.limits, admission, ctx.cost)
        gw.metrics.key_spent(ctx.principal.name, ctx.cost)
        _log(ctx, scope, stream)


def _log(ctx: RequestContext, scope: Scope, stream: bool) -> None:
    fields = {
        "method": "POST",
        "path": CHAT_PATH,
        "client": client_host(scope),
        "request_id": ctx.request_id,
        "key": ctx.principal.name,
        "status": ctx.status or 499,  # 499: the client went away before an answer
        "stream": stream,
        "latency_ms": round((time.monotonic() - ctx.started) * 1000, 3),
        "cost_usd": ctx.cost,
        **ctx.fields,
    }
    log_request(ctx.services.log, fields)
