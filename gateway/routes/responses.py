"""``POST /v1/responses``: the OpenAI Responses API over every model and pool, statelessly.

The body is read into a chat completions request (:mod:`gateway.wire.responses`), which takes the same
admission and pipeline as ``/v1/chat/completions``; the answer is written back as a Response object, or
as the Responses stream events (:mod:`gateway.wire.responses_stream`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Any

import anyio

from gateway.routes.shape import AnswerStream, Shaper
from gateway.wire import sse
from gateway.wire.asgi import Headers, Scope, Send, header, send_error
from gateway.wire.errors import GatewayError
from gateway.wire.protocol import ChatRequest
from gateway.wire.responses import ResponsesRequest, from_completion, parse_responses_request
from gateway.wire.responses_stream import ResponseEvents
from gateway.wire.sse_out import SSEResponse


class ResponsesShaper:
    def __init__(self, req: ResponsesRequest) -> None:
        self.req = req

    def completion(self, body: dict[str, Any]) -> dict[str, Any]:
        return from_completion(self.req, body)

    def stream(self, send: Send, headers: Headers, keepalive_s: float) -> AnswerStream:
        return ResponsesStream(SSEResponse(send, headers, keepalive_s), ResponseEvents(self.req))

    async def error(self, send: Send, exc: GatewayError, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
        await send_error(send, exc, headers)


class ResponsesStream:
    """Chat chunks in, Responses events out. Nothing is sent before the first chunk, so an error that
    comes first still gets its real status and JSON body."""

    def __init__(self, out: SSEResponse, events: ResponseEvents) -> None:
        self._out = out
        self._events = events
        self._opened = False

    def _open(self) -> list[dict[str, Any]]:
        """``response.created`` and ``response.in_progress``, before the first event (numbered first)."""
        if self._opened:
            return []
        self._opened = True
        return self._events.start()

    async def _send(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            await self._out.named(event["type"], event)

    async def event(self, obj: dict[str, Any]) -> None:
        await self._send(self._open() + self._events.chunk(obj))

    async def done(self) -> None:
        await self._send(self._open() + self._events.finish())
        await self._out.end()

    async def fail(self, exc: GatewayError, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
        if not self._out.started:
            await self._out.fail(exc, headers)  # nothing sent yet: the real status and the error envelope
            return
        events = self._open() + self._events.failed(exc.http_status, str(exc))
        inband = b"".join(b"event: " + e["type"].encode() + b"\n" + sse.encode(e) for e in events)
        await self._out.fail(exc, headers, inband=inband)

    async def until_shutdown(self, work: Awaitable[None], stop: anyio.Event) -> None:
        await self._out.until_shutdown(work, stop)

    async def keepalive(self) -> None:
        await self._out.keepalive()


class ResponsesInbound:
    shaper: Shaper = ResponsesShaper(ResponsesRequest(model=""))

    def authorization(self, scope: Scope) -> str | None:
        return header(scope, b"authorization")

    def parse(self, raw: bytes, max_messages: int) -> tuple[ChatRequest, Shaper]:
        req, echo = parse_responses_request(raw, max_messages=max_messages)
        return req, ResponsesShaper(echo)


RESPONSES = ResponsesInbound()
