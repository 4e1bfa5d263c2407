"""Upstream SSE bodies as chunk dicts, with the checks that tell a finished stream from a cut one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from gateway.books.usage import Usage
from gateway.providers.base import ChunkStream
from gateway.providers.transport import upstream_errors
from gateway.wire import jsonutil
from gateway.wire.errors import UpstreamError, UpstreamProtocolError
from gateway.wire.sse import SSEDecoder


class SSEChunkStream(ChunkStream):
    """Chunks of an OpenAI-style SSE body.

    A stream is finished when ``[DONE]`` arrives, or when the body ends after a ``finish_reason``.
    A body that ends with neither was cut: that raises, it never passes for success.
    """

    def __init__(self, body: AsyncIterator[bytes], model: str) -> None:
        self._body = body
        self._model = model
        self.finished = False
        self.usage: Usage | None = None

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        decoder = SSEDecoder(self.max_event_bytes)
        saw_finish = False
        with upstream_errors(self._model):
            async for raw in self._body:
                for ev in decoder.feed(raw):
                    data = ev.data
                    if data == "[DONE]":
                        self.finished = True
                        return
                    chunk = self._parse(data)
                    usage = chunk.get("usage")
                    if usage:
                        self.usage = Usage.from_openai(usage) or self.usage
                    for choice in chunk.get("choices") or ():
                        if choice.get("finish_reason"):
                            saw_finish = True
                    yield chunk
        if saw_finish:
            self.finished = True
            return
        raise UpstreamProtocolError(f"upstream '{self._model}' stream ended before the answer was complete")

    def _parse(self, data: str) -> dict[str, Any]:
        try:
            chunk = jsonutil.loads(data)
        except jsonutil.JSONDecodeError as exc:
            raise UpstreamProtocolError(f"upstream '{self._model}' sent an event that is not JSON") from exc
        if not isinstance(chunk, dict):
            raise UpstreamProtocolError(f"upstream '{self._model}' sent an event that is not an object")
        if "error" in chunk and "choices" not in chunk:
            raise UpstreamError(f"upstream '{self._model}' reported an error mid-stream", code="upstream_stream_error")
        return chunk


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
