"""``POST /v1/embeddings``: a passthrough to models whose provider serves embeddings.

Pools answer 400 (fusion does not apply to embeddings). The call is admitted, priced per input token and
recorded (metrics, log line, the key's budget) like any passthrough.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from gateway.books.calls import CallRecord
from gateway.config.loader import ModelSpec
from gateway.pipeline.admission import admit, settle
from gateway.pipeline.context import RequestContext
from gateway.pipeline.outcome import passthrough_answered
from gateway.pipeline.runtime import PoolTarget
from gateway.routes.chat import log_line, request_id
from gateway.service.gateway import Gateway
from gateway.wire.asgi import cost_header
from gateway.wire.errors import GatewayError, InvalidRequest, PayloadTooLarge
from gateway.wire.protocol import ChatRequest, check_chat_request, decode_object

router = APIRouter()

_FIELDS = frozenset({"model", "input", "dimensions", "encoding_format", "user"})


@router.post("/v1/embeddings")
async def embeddings(request: Request) -> JSONResponse:
    gw: Gateway = request.app.state.gateway
    runtime = gw.runtime
    rid = request_id(request.scope)
    ctx = RequestContext(gw, runtime, rid, time.monotonic(), [(b"x-request-id", rid.encode())])
    ctx.fields["mode"] = "embeddings"
    headers = {"x-request-id": rid}
    admission = None
    try:
        ctx.principal = runtime.keys.authenticate(request.headers.get("authorization"))
        raw = await request.body()
        if len(raw) > runtime.config.server.max_body_bytes:
            raise PayloadTooLarge(f"request body exceeds the {runtime.config.server.max_body_bytes} byte limit")
        body = _parse(raw)
        model = body["model"]
        ctx.fields["model"] = model
        target = runtime.resolve(model)
        if isinstance(target, PoolTarget):
            raise InvalidRequest(f"'{model}' is a fusion pool; embeddings are served by models only",
                                 param="model", code="invalid_model")
        assert isinstance(target, ModelSpec)
        if not runtime.caller.provider(target).serves_embeddings:
            raise InvalidRequest(f"model '{model}' does not serve embeddings (its provider has no embeddings API)",
                                 param="model", code="invalid_model")
        runtime.keys.authorize(ctx.principal, model, is_pool=False)
        admission = await admit(gw.limits, ctx.principal, _as_chat(body), target)
        record = CallRecord(model=target.name, role="passthrough", pool=target.name)
        try:
            data = await runtime.caller.embed(target, {**body, "model": target.upstream}, record,
                                              ctx.started + target.timeouts.total_s)
        except GatewayError as exc:
            passthrough_answered(ctx, target, record, exc)
            raise
        passthrough_answered(ctx, target, record, None)
        data["model"] = model
        headers.update((k.decode(), v.decode()) for k, v in cost_header(record.cost))
        return JSONResponse(data, headers=headers)
    except GatewayError as exc:
        ctx.status = ctx.status or exc.http_status
        ctx.fields.setdefault("error", exc.code)
        return JSONResponse(exc.envelope(), status_code=exc.http_status, headers={**headers, **exc.headers()})
    finally:
        if admission is not None and admission.reservation is not None:
            await settle(gw.limits, admission, ctx.cost)
        log_line(ctx, request.scope, stream=False)


def _parse(raw: bytes) -> dict[str, Any]:
    body = decode_object(raw)
    for key in body:
        if key not in _FIELDS:
            raise InvalidRequest(f"'{key}' is not supported on embeddings", param=key, code="unsupported_parameter")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise InvalidRequest("'model' is a required property", param="model", code="missing_required")
    if not _valid_input(body.get("input")):
        raise InvalidRequest(
            "'input' must be a non-empty string, an array of strings, an array of tokens or an array of token arrays",
            param="input", code="invalid_type",
        )
    dims = body.get("dimensions")
    if dims is not None and (not isinstance(dims, int) or isinstance(dims, bool) or dims < 1):
        raise InvalidRequest("'dimensions' must be an integer >= 1", param="dimensions", code="invalid_value")
    if body.get("encoding_format", "float") not in ("float", "base64"):
        raise InvalidRequest("'encoding_format' must be one of base64, float", param="encoding_format",
                             code="invalid_value")
    return body


def _valid_input(value: Any) -> bool:
    if isinstance(value, str):
        return bool(value)
    if not isinstance(value, list) or not value:
        return False
    if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return True
    return all(isinstance(v, str) and v for v in value) or all(
        isinstance(v, list) and v and all(isinstance(t, int) and not isinstance(t, bool) for t in v) for v in value
    )


def _as_chat(body: dict[str, Any]) -> ChatRequest:
    """The request as admission reads it: the input as one prompt, nothing to generate."""
    value = body["input"]
    texts = [value] if isinstance(value, str) else [v for v in value if isinstance(v, str)]
    text = "\n".join(texts) or " ".join("x" for _ in range(_token_count(value)))
    return check_chat_request({"model": body["model"], "messages": [{"role": "user", "content": text}],
                               "max_tokens": 1}, max_messages=1)


def _token_count(value: Any) -> int:
    if isinstance(value, list):
        return sum(_token_count(v) for v in value) if any(isinstance(v, list) for v in value) else len(value)
    return 0
