"""A loopback upstream that speaks the OpenAI Responses API (``POST /v1/responses``), for
:class:`tests.support.fakes.FakeUpstream`.

A behaviour answers with a Response object: as JSON, or, when the request streams, as the semantic event
stream the Responses API sends (``event: <type>`` and ``data: <json>`` per event, no ``[DONE]``), derived
from the Response. Every Response and every event is checked against the official schemas before it is
sent, so the gateway is only ever tested on answers a real upstream could give; every request is checked
against the official ``CreateResponse`` and refused with a 400 saying why when it is not valid, as a real
upstream would refuse it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import jsonschema

from tests.openapi_schemas import validate, validate_event
from tests.support.fakes import Behaviour, Seen, Send, _start, error_reply, json_reply

CREATED = 1_700_000_000


def message(text: str, *, id: str = "msg_1", refusal: str | None = None) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if text:
        content.append({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
    if refusal is not None:
        content.append({"type": "refusal", "refusal": refusal})
    return {"id": id, "type": "message", "role": "assistant", "status": "completed", "content": content}


def function_call(call_id: str, name: str, arguments: str, *, id: str = "fc_1") -> dict[str, Any]:
    return {"id": id, "type": "function_call", "status": "completed", "call_id": call_id, "name": name,
            "arguments": arguments}  # fmt: skip


def reasoning(id: str = "rs_1") -> dict[str, Any]:
    return {"id": id, "type": "reasoning", "summary": []}


def usage(input: int, output: int, *, cached: int = 0, reasoning: int = 0) -> dict[str, Any]:
    return {
        "input_tokens": input,
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": input + output,
    }


def response(
    output: list[dict[str, Any]],
    *,
    model: str = "up-model-2025",
    status: str = "completed",
    incomplete: str | None = None,
    error: dict[str, Any] | None = None,
    use: dict[str, Any] | None = None,
    id: str = "resp_upstream_1",
) -> dict[str, Any]:
    """A Response object with every field the official schema requires."""
    out = {
        "id": id,
        "object": "response",
        "created_at": CREATED,
        "status": status,
        "error": error,
        "incomplete_details": {"reason": incomplete} if incomplete else None,
        "instructions": None,
        "max_output_tokens": None,
        "model": model,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "store": False,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "metadata": {},
    }
    if use is not None:
        out["usage"] = use
    validate(out, "Response")
    return out


def events(final: dict[str, Any], *, pieces: int = 3) -> list[dict[str, Any]]:
    """The semantic events that stream ``final``, in the order the Responses API sends them."""
    seq: list[dict[str, Any]] = []

    def ev(kind: str, **fields: Any) -> None:
        seq.append({"type": kind, "sequence_number": len(seq), **fields})

    start = {**final, "status": "in_progress", "output": [], "incomplete_details": None, "error": None}
    start.pop("usage", None)
    ev("response.created", response=start)
    ev("response.in_progress", response=start)
    for index, item in enumerate(final["output"]):
        item_id = item["id"]
        if item["type"] == "message":
            ev("response.output_item.added", output_index=index, item={**item, "status": "in_progress", "content": []})
            for c, part in enumerate(item["content"]):
                at = {"item_id": item_id, "output_index": index, "content_index": c}
                if part["type"] == "output_text":
                    ev("response.content_part.added", **at, part={**part, "text": ""})
                    for piece in _split(part["text"], pieces):
                        ev("response.output_text.delta", **at, delta=piece, logprobs=[])
                    ev("response.output_text.done", **at, text=part["text"], logprobs=[])
                else:
                    ev("response.content_part.added", **at, part={**part, "refusal": ""})
                    ev("response.refusal.delta", **at, delta=part["refusal"])
                    ev("response.refusal.done", **at, refusal=part["refusal"])
                ev("response.content_part.done", **at, part=part)
        elif item["type"] == "function_call":
            ev("response.output_item.added", output_index=index,
               item={**item, "status": "in_progress", "arguments": ""})  # fmt: skip
            for piece in _split(item["arguments"], pieces):
                ev("response.function_call_arguments.delta", item_id=item_id, output_index=index, delta=piece)
            ev("response.function_call_arguments.done", item_id=item_id, output_index=index, name=item["name"],
               arguments=item["arguments"])  # fmt: skip
        else:
            ev("response.output_item.added", output_index=index, item=item)
        ev("response.output_item.done", output_index=index, item=item)
    kind = {"completed": "response.completed", "incomplete": "response.incomplete"}.get(final["status"])
    ev(kind or "response.failed", response=final)
    return seq


def _split(text: str, pieces: int) -> list[str]:
    step = max(1, -(-len(text) // pieces))
    return [text[i : i + step] for i in range(0, len(text), step)]


def error_event(code: str, message: str, sequence_number: int = 0) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message, "param": None, "sequence_number": sequence_number}


def stream_reply(evs: list[dict[str, Any]]) -> Behaviour:
    """``evs`` as the Responses API streams them (a list without a final event is a cut stream)."""
    for e in evs:
        validate_event(e)

    async def run(seen: Seen, send: Send) -> None:
        if await _refused(seen, send):
            return
        await _start(send, 200, b"text/event-stream")
        for e in evs:
            frame = f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode()
            await send({"type": "http.response.body", "body": frame, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    return run


def answering(make: Callable[[Seen], dict[str, Any]]) -> Behaviour:
    """Answer each request with the Response ``make`` gives for it: streamed when asked, else JSON."""

    async def run(seen: Seen, send: Send) -> None:
        if await _refused(seen, send):
            return
        final = make(seen)
        if seen.body.get("stream"):
            await stream_reply(events(final))(seen, send)
        else:
            await json_reply(final)(seen, send)

    return run


def replying(final: dict[str, Any]) -> Behaviour:
    return answering(lambda seen: final)


async def _refused(seen: Seen, send: Send) -> bool:
    """Answer 400 to a request that is not a valid ``CreateResponse``; True when it was refused."""
    try:
        validate(seen.body, "CreateResponse")
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path)
        await error_reply(400, f"not a valid CreateResponse at '{where}': {exc.message}")(seen, send)
        return True
    return False
