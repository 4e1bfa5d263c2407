"""``fusion-gateway simulate``: the simulated models as a standalone OpenAI-compatible HTTP server.

Same answers and timing as the in-process provider, over a real socket, so the gateway can be run and
tested against a real upstream: faults included (error statuses, hangs, streams cut mid-way).
"""

from __future__ import annotations

from typing import Any

import anyio

from gateway.config.providers import SimulatorProviderConfig
from gateway.providers.simulator.engine import Timing
from gateway.providers.simulator.provider import (
    SimulatorProvider,
    StreamCut,
    completion_body,
    paced,
    stream_chunks,
)
from gateway.wire import jsonutil, sse
from gateway.wire.asgi import (
    ClientGone,
    Exchange,
    Receive,
    Scope,
    Send,
    read_body,
    send_json,
    serve_lifespan,
    until_disconnect,
)

_MAX_BODY = 64 * 1024 * 1024


class SimulatorApp:
    """Raw ASGI: ``POST /v1/chat/completions``, ``GET /v1/models``, ``GET /health``."""

    def __init__(self, config: SimulatorProviderConfig) -> None:
        self._provider = SimulatorProvider("simulate", config)
        self._config = config

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await serve_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path, method = scope["path"].rstrip("/"), scope["method"]
        if method == "GET" and path in ("/health", "/v1/health"):
            await send_json(send, 200, {"status": "ok"})
        elif method == "GET" and path == "/v1/models":
            data = [{"id": m, "object": "model", "created": 0, "owned_by": "simulator"} for m in self._config.profiles]
            await send_json(send, 200, {"object": "list", "data": data})
        elif method == "POST" and path == "/v1/chat/completions":
            try:
                body = await read_body(scope, receive, _MAX_BODY)
            except ClientGone:
                return
            # The client hanging up cancels whatever this request is doing (sleeping, streaming).
            exchange = Exchange(send)
            await until_disconnect(receive, self._chat(body, exchange.send), exchange)
        else:
            await send_json(send, 404, _error("no such route", "invalid_request_error"))

    async def _chat(self, raw: bytes, send: Send) -> None:
        try:
            body = jsonutil.loads(raw)
        except jsonutil.JSONDecodeError:
            await send_json(send, 400, _error("request body is not valid JSON", "invalid_request_error"))
            return
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            await send_json(send, 400, _error("'messages' is a required property", "invalid_request_error"))
            return
        sim = self._provider.model(str(body.get("model", "default")))
        stream = body.get("stream") is True
        fault, timing = await sim.first_byte(stream=stream)
        if fault is not None and fault.kind == "status":
            headers = [(b"retry-after", b"1")] if fault.status == 429 else []
            await send_json(send, fault.status, _error(f"simulated failure {fault.status}", "server_error"), headers)
            return
        answer = sim.answer(body)
        if not stream:
            await anyio.sleep(len(answer.pieces) * timing.per_token_s)
            await send_json(send, 200, completion_body(sim.name, answer))
            return
        opts = body.get("stream_options") or {}
        include_usage = bool(isinstance(opts, dict) and opts.get("include_usage")) and sim.profile.stream_usage
        await self._stream(send, stream_chunks(sim.name, answer, include_usage), timing, cut=fault is not None)

    async def _stream(self, send: Send, chunks: list[tuple[int, dict[str, Any]]], timing: Timing, cut: bool) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")],
            }
        )
        try:
            async for c in paced(chunks, timing, cut=cut):
                await send({"type": "http.response.body", "body": sse.encode(c), "more_body": True})
        except StreamCut:
            # End the body here: no finish_reason, no [DONE]; the client must see a truncated stream.
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        await send({"type": "http.response.body", "body": sse.DONE, "more_body": False})


def _error(message: str, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}
