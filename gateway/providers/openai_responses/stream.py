"""OpenAI Responses stream events -> OpenAI ``chat.completion.chunk`` dicts, as they arrive.

``response.output_text.delta`` gives content, ``response.refusal.delta`` the refusal; a ``function_call``
item's ``response.output_item.added`` gives its tool-call chunk (index, id, name) and its
``response.function_call_arguments.delta`` events the arguments. A ``.done`` event that carries more than
its deltas did (an upstream that skipped them) gives the rest. ``response.completed`` and
``response.incomplete`` end the stream with the finish reason and the usage; ``response.failed`` and
``error`` raise the error their code stands for, so the caller's stream ends with an in-band error.

The role rides on the first chunk with something in it, not on ``response.created``: while nothing has
gone out to the caller, a failure right after the start can still be retried, or fail with its status.

The stream is finished only at ``response.completed`` or ``response.incomplete``: a body that ends before
was cut, and raises.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from gateway.providers.openai_responses.request import ResponsesCall
from gateway.providers.openai_responses.response import check_finished, failure, finish_reason, usage
from gateway.providers.stream import EventStream
from gateway.providers.translate import Chunks
from gateway.wire.errors import UpstreamProtocolError

_FINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})


class ResponsesChunkStream(EventStream):
    def __init__(self, body: AsyncIterator[bytes], model: str, call: ResponsesCall, secrets: tuple[str, ...]) -> None:
        super().__init__(body, model)
        self._secrets = secrets
        self._chunks = Chunks("resp", str(call.payload.get("model") or ""), with_usage=call.include_usage)
        #: output index -> chat tool-call index
        self._tools: dict[int, int] = {}
        #: (event kind, output index, content index) -> what its deltas said so far
        self._said: dict[tuple[str, int, int], str] = {}

    def on_end(self) -> list[dict[str, Any]]:
        raise self.cut()  # finished only at response.completed or response.incomplete

    def on_event(self, event: dict[str, Any], data: str) -> list[dict[str, Any]]:
        kind = event.get("type")
        try:
            if kind == "response.output_text.delta":
                return self._text("content", event, event["delta"])
            if kind == "response.output_text.done":
                return self._text("content", event, self._rest("content", event, event["text"]))
            if kind == "response.refusal.delta":
                return self._text("refusal", event, event["delta"])
            if kind == "response.refusal.done":
                return self._text("refusal", event, self._rest("refusal", event, event["refusal"]))
            if kind == "response.output_item.added":
                return self._item(event["output_index"], event["item"])
            if kind == "response.function_call_arguments.delta":
                return self._arguments(event["output_index"], event["delta"])
            if kind == "response.function_call_arguments.done":
                rest = self._rest("arguments", event, event["arguments"])
                return self._arguments(event["output_index"], rest)
            if kind == "response.created":
                return self._start(event["response"])
            if kind in _FINAL:
                return self._end(event["response"])
            if kind == "error":
                raise failure(self._model, event, self._secrets)
        except (KeyError, TypeError, AttributeError) as exc:
            raise UpstreamProtocolError(f"upstream '{self._model}' sent a malformed '{kind}' event") from exc
        return []  # in_progress, content_part and item .done events, reasoning, and types added after this

    def _start(self, response: dict[str, Any]) -> list[dict[str, Any]]:
        self._chunks.id = str(response.get("id") or self._chunks.id)
        self._chunks.model = str(response.get("model") or self._chunks.model)
        if isinstance(response.get("created_at"), int):
            self._chunks.created = response["created_at"]
        return []

    def _rest(self, what: str, event: dict[str, Any], whole: str) -> str:
        """What a ``.done`` event's whole text holds beyond the deltas already passed on."""
        said = self._said.get((what, event["output_index"], event.get("content_index", 0)), "")
        return whole[len(said) :] if isinstance(whole, str) and whole.startswith(said) else ""

    def _text(self, what: str, event: dict[str, Any], piece: str) -> list[dict[str, Any]]:
        if not isinstance(piece, str) or not piece:
            return []
        key = (what, event["output_index"], event.get("content_index", 0))
        self._said[key] = self._said.get(key, "") + piece
        return [self._chunks.answer({what: piece})]

    def _item(self, index: int, item: dict[str, Any]) -> list[dict[str, Any]]:
        if item.get("type") != "function_call":
            return []  # a message opens with its first text; reasoning is not shown
        n = self._tools[index] = len(self._tools)
        args = item.get("arguments") or ""
        self._said[("arguments", index, 0)] = args
        fn = {"name": item["name"], "arguments": args}
        call = {"index": n, "id": item["call_id"], "type": "function", "function": fn}
        return [self._chunks.answer({"tool_calls": [call]})]

    def _arguments(self, index: int, piece: str) -> list[dict[str, Any]]:
        n = self._tools.get(index)
        if n is None or not isinstance(piece, str) or not piece:
            return []
        self._said[("arguments", index, 0)] = self._said.get(("arguments", index, 0), "") + piece
        return [self._chunks.answer({"tool_calls": [{"index": n, "function": {"arguments": piece}}]})]

    def _end(self, response: dict[str, Any]) -> list[dict[str, Any]]:
        check_finished(response, self._model, self._secrets)
        self.finished = True
        self.usage = usage(response.get("usage"))
        return self._chunks.finish(finish_reason(response, bool(self._tools)), self.usage)
