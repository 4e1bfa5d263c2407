"""``POST /v1/responses``: the OpenAI Responses API over every model and pool, statelessly.

The body is read into a chat completions request (:mod:`gateway.wire.responses`), which takes the same
admission and pipeline as ``/v1/chat/completions``; the answer is written back as a Response object, or
as the Responses stream events (:mod:`gateway.wire.responses_stream`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.routes.shape import AnswerStream, Shaper, TranslatedStream
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
        return TranslatedStream(SSEResponse(send, headers, keepalive_s), ResponseEvents(self.req))

    async def error(self, send: Send, exc: GatewayError, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
        await send_error(send, exc, headers)


class ResponsesInbound:
    shaper: Shaper = ResponsesShaper(ResponsesRequest(model=""))

    def authorization(self, scope: Scope) -> str | None:
        return header(scope, b"authorization")

    def parse(self, raw: bytes, max_messages: int) -> tuple[ChatRequest, Shaper]:
        req, echo = parse_responses_request(raw, max_messages=max_messages)
        return req, ResponsesShaper(echo)


RESPONSES = ResponsesInbound()
