"""``POST /v1/messages``: Anthropic Messages inbound, over every model and pool.

The body is read into a chat completions request (:mod:`gateway.wire.messages`) and takes the same
admission and pipeline as ``/v1/chat/completions``; the answer goes back as a Messages response or its
stream events, and errors in Anthropic's shape. The client key may come as ``x-api-key`` (what Anthropic
clients send) or as a bearer token.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.routes.shape import AnswerStream, Shaper, TranslatedStream
from gateway.wire.asgi import Headers, Scope, Send, header, send_json
from gateway.wire.errors import GatewayError
from gateway.wire.messages import MessageEvents, MessagesRequest, error_body, from_completion, parse_messages_request
from gateway.wire.protocol import ChatRequest
from gateway.wire.sse_out import SSEResponse


async def send_anthropic_error(send: Send, exc: GatewayError, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    extra = [(k.encode(), v.encode()) for k, v in exc.headers().items()]
    await send_json(send, exc.http_status, error_body(exc), [*headers, *extra])


class MessagesShaper:
    def __init__(self, req: MessagesRequest) -> None:
        self.req = req

    def completion(self, body: dict[str, Any]) -> dict[str, Any]:
        return from_completion(self.req, body)

    def stream(self, send: Send, headers: Headers, keepalive_s: float) -> AnswerStream:
        return TranslatedStream(SSEResponse(send, headers, keepalive_s), MessageEvents(self.req),
                                before=send_anthropic_error)

    async def error(self, send: Send, exc: GatewayError, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
        await send_anthropic_error(send, exc, headers)


class MessagesInbound:
    shaper: Shaper = MessagesShaper(MessagesRequest(model=""))

    def authorization(self, scope: Scope) -> str | None:
        key = header(scope, b"x-api-key")
        return f"Bearer {key}" if key else header(scope, b"authorization")

    def parse(self, raw: bytes, max_messages: int) -> tuple[ChatRequest, Shaper]:
        req, echo = parse_messages_request(raw, max_messages=max_messages)
        return req, MessagesShaper(echo)


MESSAGES = MessagesInbound()
