"""Anthropic Messages stream events -> OpenAI ``chat.completion.chunk`` dicts, as they arrive.

``text_delta`` gives content; a ``tool_use`` block its tool-call chunk (index, id, name) and its
``input_json_delta`` the arguments; ``message_delta`` the finish reason (sent with ``message_stop``) and the
usage, which is cumulative (each one replaces the counts it carries). Thinking deltas are not shown, ``ping``
is ignored, and an ``error`` event raises, so the caller's stream ends with an in-band error.

The role rides on the first chunk with something in it (text, a tool call, or the finish), not on
``message_start``: Anthropic often reports ``overloaded_error`` right after ``message_start``, and while
nothing has gone out to the caller the call can still be retried, or fail with its real status.

The stream is finished only at ``message_stop``: a body that ends before it was cut, and raises.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from gateway.providers.anthropic.request import AnthropicRequest
from gateway.providers.anthropic.response import finish_reason, usage
from gateway.providers.stream import EventStream
from gateway.providers.translate import Chunks
from gateway.providers.transport import status_error
from gateway.wire.anthropic import ERROR_STATUS
from gateway.wire.errors import UpstreamProtocolError


class AnthropicChunkStream(EventStream):
    def __init__(
        self, body: AsyncIterator[bytes], model: str, request: AnthropicRequest, secrets: tuple[str, ...]
    ) -> None:
        super().__init__(body, model)
        self._request = request
        self._secrets = secrets
        self._chunks = Chunks("msg", str(request.payload.get("model") or ""), with_usage=request.include_usage)
        self._usage: dict[str, Any] = {}
        #: Anthropic block index -> OpenAI tool-call index
        self._tools: dict[int, int] = {}
        #: block index of the forced response_format tool
        self._json_block: int | None = None
        self._finish: str | None = None

    def on_end(self) -> list[dict[str, Any]]:
        raise self.cut()  # finished only at message_stop

    def on_event(self, event: dict[str, Any], data: str) -> list[dict[str, Any]]:
        kind = event.get("type")
        try:
            if kind == "message_start":
                return self._start(event["message"])
            if kind == "content_block_start":
                return self._block_start(event["index"], event["content_block"])
            if kind == "content_block_delta":
                return self._block_delta(event["index"], event["delta"])
            if kind == "message_delta":
                return self._message_delta(event)
            if kind == "message_stop":
                return self._stop()
            if kind == "error":
                raise self._error(event, data)
        except (KeyError, TypeError, AttributeError) as exc:
            raise UpstreamProtocolError(f"upstream '{self._model}' sent a malformed '{kind}' event") from exc
        return []  # ping, content_block_stop, and event types added after this was written

    def _start(self, message: dict[str, Any]) -> list[dict[str, Any]]:
        self._chunks.id = str(message.get("id") or self._chunks.id)
        self._chunks.model = str(message.get("model") or self._chunks.model)
        self._merge_usage(message.get("usage"))
        return []

    def _block_start(self, index: int, block: dict[str, Any]) -> list[dict[str, Any]]:
        kind = block.get("type")
        if kind == "tool_use":
            if self._request.json_tool is not None and block.get("name") == self._request.json_tool:
                self._json_block = index
                return []
            n = self._tools[index] = len(self._tools)
            fn = {"name": block["name"], "arguments": ""}
            call = {"index": n, "id": block["id"], "type": "function", "function": fn}
            return [self._chunks.answer({"tool_calls": [call]})]
        if kind == "text" and block.get("text") and self._request.json_tool is None:
            return [self._chunks.answer({"content": block["text"]})]
        return []  # thinking, redacted_thinking, server tools: not part of the answer

    def _block_delta(self, index: int, delta: dict[str, Any]) -> list[dict[str, Any]]:
        kind = delta.get("type")
        if kind == "text_delta" and self._request.json_tool is None:
            text = delta["text"]
            return [self._chunks.answer({"content": text})] if text else []
        if kind == "input_json_delta":
            piece = delta["partial_json"]
            if not piece:
                return []
            if index == self._json_block:
                return [self._chunks.answer({"content": piece})]
            n = self._tools.get(index)
            if n is not None:
                return [self._chunks.answer({"tool_calls": [{"index": n, "function": {"arguments": piece}}]})]
        return []  # thinking_delta, signature_delta, citations: not shown

    def _message_delta(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        self._merge_usage(event.get("usage"))
        # Held until message_stop: a stream cut after this event must not look finished to the caller.
        self._finish = finish_reason((event.get("delta") or {}).get("stop_reason"), self._request.json_tool)
        return []

    def _stop(self) -> list[dict[str, Any]]:
        self.finished = True
        self.usage = usage(self._usage)
        return self._chunks.finish(self._finish or "stop", self.usage)


    def _merge_usage(self, data: Any) -> None:
        if isinstance(data, dict):
            self._usage.update({k: v for k, v in data.items() if v is not None})

    def _error(self, event: dict[str, Any], data: str) -> Exception:
        err = event.get("error")
        kind = err.get("type") if isinstance(err, dict) else None
        status = ERROR_STATUS.get(kind, 500) if isinstance(kind, str) else 500
        return status_error(self._model, status, data.encode(), None, self._secrets)
