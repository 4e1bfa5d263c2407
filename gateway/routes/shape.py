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

from gateway.wire import sse
from gateway.wire.asgi import Headers, Scope, Send, header, send_error
from gateway.wire.errors import GatewayError
from gateway.wire.protocol import ChatRequest, parse_chat_request
from gateway.wire.sse_out import ErrorWriter, SSEResponse


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


class EventTranslator(Protocol):
    """Turns the chat chunks of one answer into another API's stream events (each with its ``type``)."""

    def start(self) -> list[dict[str, Any]]: ...

    def chunk(self, chunk: dict[str, Any]) -> list[dict[str, Any]]: ...

    def finish(self) -> list[dict[str, Any]]: ...

    def failed(self, exc: GatewayError) -> list[dict[str, Any]]: ...


class TranslatedStream:
    """An :class:`AnswerStream` for APIs whose streams are named events (``event: <type>``), ended without
    ``[DONE]``. Nothing is sent before the first chunk, so an error that comes first still gets its real
    status and body (written by ``before``)."""

    def __init__(self, out: SSEResponse, events: EventTranslator, before: ErrorWriter = send_error) -> None:
        self._out = out
        self._events = events
        self._before = before
        self._opened = False

    def _open(self) -> list[dict[str, Any]]:
        """The opening events, before the first other one."""
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
            await self._out.fail(exc, headers, before=self._before)
            return
        events = self._open() + self._events.failed(exc)
        inband = b"".join(b"event: " + e["type"].encode() + b"\n" + sse.encode(e) for e in events)
        await self._out.fail(exc, headers, inband=inband)

    async def until_shutdown(self, work: Awaitable[None], stop: anyio.Event) -> None:
        await self._out.until_shutdown(work, stop)

    async def keepalive(self) -> None:
        await self._out.keepalive()


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
