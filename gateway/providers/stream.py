"""Upstream SSE bodies as chunk dicts, with the checks that tell a finished stream from a cut one."""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from typing import Any

from gateway.books.usage import Usage
from gateway.providers.base import ChunkStream
from gateway.providers.transport import upstream_errors
from gateway.wire import jsonutil
from gateway.wire.errors import UpstreamError, UpstreamProtocolError
from gateway.wire.sse import SSEDecoder


class EventStream(ChunkStream):
    """An upstream SSE body whose events are JSON objects, turned into chunks as they arrive.

    The loop every wire format shares lives here (decode SSE, parse each event, map transport errors);
    each format says what an event means (:meth:`on_event`) and whether a body that ended was complete
    (:meth:`on_end`, which raises for a cut stream: it never passes for success). A subclass with an end
    marker (OpenAI's ``[DONE]``) names it in ``end_marker``; one that recognises its own final event sets
    ``finished`` and the loop stops there.
    """

    end_marker: str | None = None

    def __init__(self, body: AsyncIterator[bytes], model: str) -> None:
        self._body = body
        self._model = model
        self.finished = False
        self.usage: Usage | None = None

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        decoder = SSEDecoder(self.max_event_bytes)
        with upstream_errors(self._model):
            async for raw in self._body:
                for ev in decoder.feed(raw):
                    if ev.data == self.end_marker:
                        self.finished = True
                        return
                    for chunk in self.on_event(self._parse(ev.data), ev.data):
                        yield chunk
                    if self.finished:
                        return
        for chunk in self.on_end():
            yield chunk

    def _parse(self, data: str) -> dict[str, Any]:
        try:
            event = jsonutil.loads(data)
        except jsonutil.JSONDecodeError as exc:
            raise UpstreamProtocolError(f"upstream '{self._model}' sent an event that is not JSON") from exc
        if not isinstance(event, dict):
            raise UpstreamProtocolError(f"upstream '{self._model}' sent an event that is not an object")
        return event

    def cut(self) -> UpstreamProtocolError:
        return UpstreamProtocolError(f"upstream '{self._model}' stream ended before the answer was complete")

    @abc.abstractmethod
    def on_event(self, event: dict[str, Any], data: str) -> list[dict[str, Any]]:
        """The chunks one event gives (``data``: its raw text, for error reports)."""

    @abc.abstractmethod
    def on_end(self) -> list[dict[str, Any]]:
        """The body ended without an end marker: the last chunks, or raise :meth:`cut`."""


class SSEChunkStream(EventStream):
    """Chunks of an OpenAI-style SSE body.

    A stream is finished when ``[DONE]`` arrives, or when the body ends after a ``finish_reason``.
    """

    end_marker = "[DONE]"

    def __init__(self, body: AsyncIterator[bytes], model: str) -> None:
        super().__init__(body, model)
        self._saw_finish = False

    def on_event(self, event: dict[str, Any], data: str) -> list[dict[str, Any]]:
        if "error" in event and "choices" not in event:
            raise UpstreamError(f"upstream '{self._model}' reported an error mid-stream", code="upstream_stream_error")
        usage = event.get("usage")
        if usage:
            self.usage = Usage.from_openai(usage) or self.usage
        for choice in event.get("choices") or ():
            if choice.get("finish_reason"):
                self._saw_finish = True
        return [event]

    def on_end(self) -> list[dict[str, Any]]:
        if not self._saw_finish:
            raise self.cut()
        self.finished = True
        return []


class _ListStream(ChunkStream):
    def __init__(self, chunks: list[dict[str, Any]], usage: Usage | None) -> None:
        self._chunks = chunks
        self.usage = usage
        self.finished = True

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        for c in self._chunks:
            yield c


def completion_as_stream(data: dict[str, Any]) -> ChunkStream:
    return _ListStream(completion_to_chunks(data), Usage.from_openai(data.get("usage")))


def completion_to_chunks(data: dict[str, Any]) -> list[dict[str, Any]]:
    base = {
        "id": data.get("id", "chatcmpl-upstream"),
        "object": "chat.completion.chunk",
        "created": data.get("created", 0),
        "model": data.get("model", ""),
    }
    chunks: list[dict[str, Any]] = []
    for choice in data.get("choices") or ():
        msg = choice.get("message") or {}
        delta: dict[str, Any] = {"role": msg.get("role", "assistant")}
        if msg.get("content") is not None:
            delta["content"] = msg["content"]
        if msg.get("refusal") is not None:
            delta["refusal"] = msg["refusal"]
        if msg.get("tool_calls"):
            delta["tool_calls"] = [{"index": i, **tc} for i, tc in enumerate(msg["tool_calls"])]
        chunks.append({**base, "choices": [{"index": choice.get("index", 0), "delta": delta, "finish_reason": None}]})
        chunks.append(
            {
                **base,
                "choices": [
                    {"index": choice.get("index", 0), "delta": {}, "finish_reason": choice.get("finish_reason")}
                ],
            }
        )
    if data.get("usage") is not None:
        chunks.append({**base, "choices": [], "usage": data["usage"]})
    return chunks
