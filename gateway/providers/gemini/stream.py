"""Gemini ``streamGenerateContent?alt=sse`` events -> OpenAI ``chat.completion.chunk`` dicts, as they arrive.

Each event is a whole ``GenerateContentResponse`` holding the next piece of each candidate. A candidate's
first piece brings the role chunk; text parts become content deltas; a ``functionCall`` part (Gemini sends
calls whole) becomes one tool-call delta with index, id, name and arguments; ``finishReason`` the final
chunk. ``usageMetadata`` is cumulative: the last one seen is the call's usage. An ``error`` event raises.
Gemini sends no end marker: the body ending is the end, and it is finished only if every candidate had
its finish reason (or the prompt was blocked). Anything else was cut, and raises.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from gateway.providers.gemini.request import GeminiRequest
from gateway.providers.gemini.response import blocked, candidates, error, finish_reason, read_parts, usage
from gateway.providers.stream import EventStream
from gateway.providers.translate import Chunks
from gateway.wire.errors import UpstreamProtocolError


class GeminiChunkStream(EventStream):
    def __init__(
        self, body: AsyncIterator[bytes], model: str, upstream: str, request: GeminiRequest, secrets: tuple[str, ...]
    ) -> None:
        super().__init__(body, model)
        self._request = request
        self._secrets = secrets
        self._chunks = Chunks("gemini", upstream, with_usage=request.include_usage)
        self._meta: Any = None
        self._started: set[int] = set()
        self._done: set[int] = set()
        #: candidate index -> tool calls sent so far
        self._calls: dict[int, int] = {}
        self._blocked = False

    def on_end(self) -> list[dict[str, Any]]:
        complete = self._blocked or (bool(self._done) and self._started <= self._done)
        if not complete:
            raise self.cut()
        self.usage = usage(self._meta)
        self.finished = True
        if self._request.include_usage and self.usage is not None:
            return [self._chunks.usage(self.usage)]
        return []

    def on_event(self, event: dict[str, Any], data: str) -> list[dict[str, Any]]:
        if "error" in event:
            err = event["error"]
            code = err.get("code") if isinstance(err, dict) else None
            status = code if isinstance(code, int) and 400 <= code <= 599 else 500
            raise error(self._model, status, data.encode(), None, self._secrets)
        if isinstance(event.get("responseId"), str):
            self._chunks.id = event["responseId"]
        if isinstance(event.get("modelVersion"), str):
            self._chunks.model = event["modelVersion"]
        if event.get("usageMetadata") is not None:
            self._meta = event["usageMetadata"]
        out: list[dict[str, Any]] = []
        found = candidates(event)
        for cand in found:
            index = cand.get("index", 0)
            if not isinstance(index, int):
                raise UpstreamProtocolError(f"upstream '{self._model}' sent a candidate without a valid index")
            out.extend(self._candidate(index, cand))
        if not found and blocked(event) and not self._started:
            self._blocked = True
            out.append(self._chunks.delta({"role": "assistant", "content": ""}))
            out.append(self._chunks.delta({}, "content_filter"))
        return out

    def _candidate(self, index: int, cand: dict[str, Any]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if index not in self._started:
            self._started.add(index)
            out.append(self._chunks.delta({"role": "assistant", "content": ""}, index=index))
        parts = read_parts(cand)
        text = "".join(parts.text)
        if text:
            out.append(self._chunks.delta({"content": text}, index=index))
        for call in parts.calls:
            n = self._calls.get(index, 0)
            self._calls[index] = n + 1
            out.append(self._chunks.delta({"tool_calls": [{"index": n, **call}]}, index=index))
        reason = finish_reason(cand.get("finishReason"), self._calls.get(index, 0) > 0)
        if reason is not None and index not in self._done:
            self._done.add(index)
            out.append(self._chunks.delta({}, reason, index=index))
        return out
