"""How an answer leaves the gateway: the one seam between the request path and each inbound API.

The pipeline always produces OpenAI Chat Completions (a ``chat.completion`` dict, or a stream of
``chat.completion.chunk`` dicts, plus the ``fusion`` object for pools). Each inbound API (chat
completions, the Responses API, Anthropic Messages) reads its own request shape into a chat request
(:class:`Inbound`) and hands the answer path a :class:`Shaper` that writes the answer in its own shape.
:data:`CHAT` is the identity: chat completions go out as they are.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Any, Protocol

import anyio

from gateway.wire.asgi import Headers, Scope, Send, header, send_error
from gateway.wire.errors import GatewayError
from gateway.wire.protocol import ChatRequest, parse_chat_request
from gateway.wire.sse_out import SSEResponse


class AnswerStream(Protocol):
    """Where a streamed answer goes, chunk by chunk (:class:`SSEResponse` for chat completions)."""

    async def event(self, obj: dict[str, Any]) -> None:
        """One ``chat.completion.chunk`` (or the in-band fusion event chunk)."""

    async def done(self) -> None:
        """The answer is complete."""

    async def fail(self, exc: GatewayError, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
        """The answer failed: with its real status if nothing was sent yet, else in-band."""

    async def until_shutdown(self, work: Awaitable[None], stop: anyio.Event) -> None: ...

    async def keepalive(self) -> None: ...


class Shaper(Protocol):
    """Writes a chat-completions answer in the shape of the API the caller spoke."""

    def completion(self, body: dict[str, Any]) -> dict[str, Any]:
        """A whole ``chat.completion`` (with ``fusion`` for pools) -> the JSON answer to send."""

    def stream(self, send: Send, headers: Headers, keepalive_s: float) -> AnswerStream:
        """The stream the chat chunks of a streamed answer are written to."""

    async def error(self, send: Send, exc: GatewayError, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
        """An error answered before any of the answer went out."""


class ChatShaper:
    """Chat completions: the answer goes out as the pipeline made it."""

    def completion(self, body: dict[str, Any]) -> dict[str, Any]:
        return body

    def stream(self, send: Send, headers: Headers, keepalive_s: float) -> AnswerStream:
        return SSEResponse(send, headers, keepalive_s)

    async def error(self, send: Send, exc: GatewayError, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
        await send_error(send, exc, headers)


CHAT = ChatShaper()


class Inbound(Protocol):
    """One inbound API: where its client key is, and how its body becomes a chat request."""

    #: answers the errors raised before the body was read (auth, size)
    shaper: Shaper

    def authorization(self, scope: Scope) -> str | None:
        """The ``Authorization`` header value to authenticate with."""

    def parse(self, raw: bytes, max_messages: int) -> tuple[ChatRequest, Shaper]:
        """The chat request this body asks for, and the shaper that answers it."""


class ChatInbound:
    shaper: Shaper = CHAT

    def authorization(self, scope: Scope) -> str | None:
        return header(scope, b"authorization")

    def parse(self, raw: bytes, max_messages: int) -> tuple[ChatRequest, Shaper]:
        return parse_chat_request(raw, max_messages=max_messages), CHAT


CHAT_INBOUND = ChatInbound()
