"""Chat completion chunks -> the Responses API's semantic stream events, in order, numbered.

``response.created`` and ``response.in_progress`` open the stream. Text opens a ``message`` item
(``output_item.added``, ``content_part.added``, then ``output_text.delta``s); a tool call closes it and
opens a ``function_call`` item (``function_call_arguments.delta``s). :meth:`ResponseEvents.finish` closes
what is open (``.done`` events in reverse order of opening) and ends with ``response.completed``, or
``response.incomplete`` when the answer was cut by the token limit or a content filter. A failure after
the stream started ends it with ``response.failed``. Every event carries its ``sequence_number``.

The whole request's usage and, for a pool, the ``fusion`` object arrive on the last chunks; they go
into the final Response. Opt-in fusion progress events pass through as ``fusion.event`` events.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from gateway.wire.errors import GatewayError
from gateway.wire.responses import (
    INCOMPLETE,
    ResponsesRequest,
    error_object,
    function_call_item,
    message_item,
    new_item_id,
    new_response_id,
    response_object,
    text_part,
    usage,
)

Event = dict[str, Any]


@dataclass(slots=True)
class _Call:
    output_index: int
    item_id: str
    call_id: str
    name: str
    arguments: str = ""


class ResponseEvents:
    """The event state of one streamed Response. Each method returns the events to send, in order."""

    def __init__(self, req: ResponsesRequest) -> None:
        self._req = req
        self.id = new_response_id()
        self._created = int(time.time())
        self._seq = 0
        self._output: list[dict[str, Any]] = []  # finished items
        self._text: list[str] | None = None  # the open message item's text
        self._text_item: tuple[int, str] | None = None  # (output index, item id) of the open message
        self._calls: dict[int, _Call] = {}  # chat tool-call index -> its function_call item
        self._open_call: _Call | None = None
        self._finish: str | None = None
        self._usage: dict[str, Any] | None = None
        self._fusion: Any = None

    def _ev(self, kind: str, **fields: Any) -> Event:
        event = {"type": kind, "sequence_number": self._seq, **fields}
        self._seq += 1
        return event

    def _response(self, status: str, error: dict[str, Any] | None = None) -> dict[str, Any]:
        out = response_object(
            self._req,
            id=self.id,
            created_at=self._created,
            status=status,
            output=list(self._output),
            usage=self._usage if status != "in_progress" else None,
            finish_reason=self._finish,
            error=error,
        )
        if self._fusion is not None:
            out["fusion"] = self._fusion
        return out

    def start(self) -> list[Event]:
        response = self._response("in_progress")
        return [self._ev("response.created", response=response), self._ev("response.in_progress", response=response)]

    def chunk(self, chunk: dict[str, Any]) -> list[Event]:
        out: list[Event] = []
        if chunk.get("fusion_event") is not None:
            out.append(self._ev("fusion.event", event=chunk["fusion_event"]))
        if isinstance(chunk.get("usage"), dict):
            self._usage = usage(chunk["usage"])
        if chunk.get("fusion") is not None:
            self._fusion = chunk["fusion"]
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            text = delta.get("content")
            if isinstance(text, str) and text:
                out.extend(self._text_delta(text))
            for call in delta.get("tool_calls") or ():
                out.extend(self._call_delta(call))
            if choice.get("finish_reason"):
                self._finish = choice["finish_reason"]
        return out

    def _text_delta(self, text: str) -> list[Event]:
        out = self._close_call()
        if self._text is None:
            item_id, index = new_item_id("msg"), self._next_index()
            self._text, self._text_item = [], (index, item_id)
            out.append(self._ev("response.output_item.added", output_index=index,
                                item=message_item(item_id, [], "in_progress")))
            out.append(self._ev("response.content_part.added", item_id=item_id, output_index=index, content_index=0,
                                part=text_part("")))
        assert self._text_item is not None
        self._text.append(text)
        index, item_id = self._text_item
        out.append(self._ev("response.output_text.delta", item_id=item_id, output_index=index, content_index=0,
                            delta=text, logprobs=[]))
        return out

    def _call_delta(self, delta: dict[str, Any]) -> list[Event]:
        out: list[Event] = []
        n = delta.get("index", 0)
        fn = delta.get("function") or {}
        call = self._calls.get(n)
        if call is None:
            out.extend(self._close_text())
            out.extend(self._close_call())
            call = _Call(self._next_index(), new_item_id("fc"), str(delta.get("id") or new_item_id("call")),
                         str(fn.get("name") or ""))
            self._calls[n] = self._open_call = call
            out.append(self._ev("response.output_item.added", output_index=call.output_index,
                                item=function_call_item(call.item_id, call.call_id, call.name, "", "in_progress")))
        args = fn.get("arguments")
        if isinstance(args, str) and args:
            call.arguments += args
            out.append(self._ev("response.function_call_arguments.delta", item_id=call.item_id,
                                output_index=call.output_index, delta=args))
        return out

    def _next_index(self) -> int:
        return len(self._output) + (self._text is not None) + (self._open_call is not None)

    def _close_text(self) -> list[Event]:
        if self._text is None or self._text_item is None:
            return []
        index, item_id = self._text_item
        text = "".join(self._text)
        part = text_part(text)
        status = "incomplete" if self._finish in INCOMPLETE else "completed"
        item = message_item(item_id, [part], status)
        self._text = self._text_item = None
        self._output.append(item)
        return [
            self._ev("response.output_text.done", item_id=item_id, output_index=index, content_index=0, text=text,
                     logprobs=[]),
            self._ev("response.content_part.done", item_id=item_id, output_index=index, content_index=0, part=part),
            self._ev("response.output_item.done", output_index=index, item=item),
        ]

    def _close_call(self) -> list[Event]:
        call = self._open_call
        if call is None:
            return []
        self._open_call = None
        item = function_call_item(call.item_id, call.call_id, call.name, call.arguments, "completed")
        self._output.append(item)
        return [
            self._ev("response.function_call_arguments.done", item_id=call.item_id, output_index=call.output_index,
                     name=call.name, arguments=call.arguments),
            self._ev("response.output_item.done", output_index=call.output_index, item=item),
        ]

    def finish(self) -> list[Event]:
        """The answer is complete: close what is open, then ``response.completed`` (or ``.incomplete``)."""
        out = [*self._close_text(), *self._close_call()]
        response = self._response("completed")
        kind = "response.incomplete" if response["status"] == "incomplete" else "response.completed"
        out.append(self._ev(kind, response=response))
        return out

    def failed(self, exc: GatewayError) -> list[Event]:
        """The answer failed after the stream started."""
        error = error_object(exc.http_status, str(exc))
        return [self._ev("response.failed", response=self._response("failed", error))]
