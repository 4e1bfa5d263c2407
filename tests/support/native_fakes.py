"""Fake Anthropic Messages and Gemini upstreams, served over real loopback HTTP, with recorded payloads.

One ASGI app serves both wire formats: ``POST .../messages`` (Anthropic; the model is in the body) and
``POST .../models/<model>:generateContent`` or ``:streamGenerateContent`` (Gemini; the model is in the
path). Each upstream model name gets a behaviour; every request is recorded with its path, query,
headers and body, so tests assert the translation on what the upstream really received.

The payloads below follow the shapes the two APIs document (ids, usage objects, event sequences);
they are written for these tests, not copied from anywhere.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from fusion_modes.delimit import blocks
from gateway.wire.asgi import read_body, serve_lifespan
from tests.support.fakes import BODY_LIMIT
from tests.support.servers import serving

Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


@dataclass
class Seen:
    path: str
    query: str
    model: str
    #: Gemini: generateContent or streamGenerateContent; Anthropic: "messages"
    method: str
    body: dict[str, Any]
    headers: dict[str, str]


Behaviour = Callable[[Seen, Send], Awaitable[None]]


async def _start(send: Send, status: int, ctype: bytes, headers: dict[str, str] | None = None) -> None:
    extra = [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", ctype), *extra]})


def reply(obj: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> Behaviour:
    async def run(seen: Seen, send: Send) -> None:
        await _start(send, status, b"application/json", headers)
        await send({"type": "http.response.body", "body": json.dumps(obj).encode()})

    return run


def anthropic_events(events: list[dict[str, Any]], *, interval: float = 0.0) -> Behaviour:
    """An Anthropic event stream: ``event: <type>`` and ``data: <json>`` per event, as the API sends them."""
    frames = [f"event: {ev['type']}\ndata: {json.dumps(ev)}\n\n".encode() for ev in events]
    return _sse(frames, interval)


def gemini_events(events: list[dict[str, Any]], *, interval: float = 0.0) -> Behaviour:
    """A Gemini ``alt=sse`` stream: ``data: <json>`` events separated by CRLF, as the API sends them."""
    return _sse([b"data: " + json.dumps(ev).encode() + b"\r\n\r\n" for ev in events], interval)


def _sse(frames: list[bytes], interval: float) -> Behaviour:
    async def run(seen: Seen, send: Send) -> None:
        await _start(send, 200, b"text/event-stream")
        for i, frame in enumerate(frames):
            if i and interval:
                await anyio.sleep(interval)
            await send({"type": "http.response.body", "body": frame, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    return run


def by_request(pick: Callable[[Seen], Behaviour]) -> Behaviour:
    """A behaviour chosen per request (e.g. a judge answering differently from a member)."""

    async def run(seen: Seen, send: Send) -> None:
        await pick(seen)(seen, send)

    return run


@dataclass
class NativeFake:
    behaviours: dict[str, Behaviour] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def requests_for(self, model: str) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.model == model]

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Send) -> None:
        if scope["type"] == "lifespan":
            await serve_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        raw = await read_body(scope, receive, BODY_LIMIT)
        body = json.loads(raw) if raw else {}
        path: str = scope["path"]
        if path.endswith("/messages"):
            model, method = str(body.get("model", "")), "messages"
        else:
            model, _, method = path.rsplit("/models/", 1)[-1].partition(":")
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        seen = Seen(path, scope["query_string"].decode(), model, method, body, headers)
        with self._lock:
            self.seen.append(seen)
        behaviour = self.behaviours.get(model)
        if behaviour is None:
            await reply({"error": {"message": f"no behaviour for {model}"}}, status=404)(seen, send)
            return
        await behaviour(seen, send)


@contextmanager
def native_fake() -> Iterator[NativeFake]:
    fake = NativeFake()
    with serving(fake) as server:
        fake.url = server.url
        yield fake


# --------------------------------------------------------------------------- Anthropic payloads


def anthropic_message(
    content: list[dict[str, Any]],
    *,
    stop_reason: str = "end_turn",
    usage: dict[str, Any] | None = None,
    model: str = "claude-x-20250514",
) -> dict[str, Any]:
    return {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage
        or {
            "input_tokens": 21,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 9,
            "service_tier": "standard",
        },
    }


ANTHROPIC_TEXT = anthropic_message(
    [{"type": "text", "text": "Paris is the capital of France."}],
    usage={
        "input_tokens": 25,
        "cache_creation_input_tokens": 1200,
        "cache_read_input_tokens": 3000,
        "output_tokens": 9,
        "service_tier": "standard",
    },
)

ANTHROPIC_THINKING = anthropic_message(
    [
        {
            "type": "thinking",
            "thinking": "The user asks for 27 * 453. 27 * 453 = 12231.",
            "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds",
        },
        {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP"},
        {"type": "text", "text": "27 * 453 = 12,231."},
    ],
    usage={"input_tokens": 48, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 311},
)

ANTHROPIC_TOOL_USE = anthropic_message(
    [
        {"type": "text", "text": "I'll look up the weather in San Francisco."},
        {
            "type": "tool_use",
            "id": "toolu_01A09q90qw90lq917835lq9",
            "name": "get_weather",
            "input": {"location": "San Francisco, CA", "unit": "celsius"},
        },
    ],
    stop_reason="tool_use",
    usage={"input_tokens": 384, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 76},
)


def anthropic_stream(
    deltas: list[str],
    *,
    thinking: bool = False,
    ping: bool = True,
    stop_reason: str = "end_turn",
    usage: bool = True,
    model: str = "claude-x-20250514",
) -> list[dict[str, Any]]:
    """A text answer as Anthropic streams it: message_start, blocks with deltas, message_delta, message_stop."""
    start_usage = (
        {"input_tokens": 472, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 1024, "output_tokens": 2}
        if usage
        else None
    )
    events: list[dict[str, Any]] = [
        {
            "type": "message_start",
            "message": {
                "id": "msg_014p7gG3wDgGV9EUtLvnow3U",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                **({"usage": start_usage} if start_usage else {}),
            },
        }
    ]
    index = 0
    if thinking:
        events += [
            {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
            {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Let me "}},
            {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "think."}},
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "signature_delta", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrk"},
            },
            {"type": "content_block_stop", "index": 0},
        ]
        index = 1
    events.append({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}})
    if ping:
        events.append({"type": "ping"})
    events += [
        {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": d}} for d in deltas
    ]
    events += [
        {"type": "content_block_stop", "index": index},
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            **({"usage": {"output_tokens": 15}} if usage else {}),
        },
        {"type": "message_stop"},
    ]
    return events


def anthropic_tool_stream(name: str, pieces: list[str], *, forced: bool = False) -> list[dict[str, Any]]:
    """A tool call as Anthropic streams it: a tool_use block whose input arrives as partial JSON."""
    events: list[dict[str, Any]] = [
        {
            "type": "message_start",
            "message": {
                "id": "msg_01T1x1fJ34qAmk2tNTrN7Up6",
                "type": "message",
                "role": "assistant",
                "model": "claude-x-20250514",
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {
                    "input_tokens": 610,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 0,
                    "output_tokens": 1,
                },
            },
        }
    ]
    index = 0
    if not forced:  # a forced tool comes without the text before it
        events += [
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Let me check."}},
            {"type": "content_block_stop", "index": 0},
        ]
        index = 1
    events.append(
        {
            "type": "content_block_start",
            "index": index,
            "content_block": {"type": "tool_use", "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "name": name, "input": {}},
        }
    )
    events += [
        {"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": p}}
        for p in ["", *pieces]
    ]
    events += [
        {"type": "content_block_stop", "index": index},
        {"type": "ping"},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use", "stop_sequence": None},
            "usage": {"output_tokens": 89},
        },
        {"type": "message_stop"},
    ]
    return events


ANTHROPIC_OVERLOADED_EVENT = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}


def anthropic_error(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy"}


# --------------------------------------------------------------------------- Gemini payloads


def gemini_response(
    parts: list[dict[str, Any]] | None,
    *,
    finish: str | None = "STOP",
    usage: dict[str, Any] | None = None,
    index: int | None = None,
) -> dict[str, Any]:
    cand: dict[str, Any] = {}
    if parts is not None:
        cand["content"] = {"parts": parts, "role": "model"}
    if finish is not None:
        cand["finishReason"] = finish
    if index is not None:
        cand["index"] = index
    out: dict[str, Any] = {
        "candidates": [cand],
        "modelVersion": "gemini-x-001",
        "responseId": "mM3aaPq3GKfUz7IP6Nm5sQ4",
    }
    if usage is not None:
        out["usageMetadata"] = usage
    return out


GEMINI_TEXT = gemini_response(
    [{"text": "Paris is the capital of France."}],
    usage={
        "promptTokenCount": 12,
        "candidatesTokenCount": 8,
        "totalTokenCount": 20,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 12}],
    },
)

GEMINI_THINKING_CACHED = gemini_response(
    [
        {"text": "**Computing the product**\n\nI multiply 27 by 453.", "thought": True},
        {"text": "27 * 453 = 12,231."},
    ],
    usage={
        "promptTokenCount": 1210,
        "candidatesTokenCount": 12,
        "totalTokenCount": 1533,
        "cachedContentTokenCount": 1024,
        "thoughtsTokenCount": 311,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 1210}],
        "cacheTokensDetails": [{"modality": "TEXT", "tokenCount": 1024}],
    },
)

GEMINI_FUNCTION_CALL = gemini_response(
    [
        {
            "functionCall": {"name": "get_weather", "args": {"location": "Paris", "unit": "celsius"}},
            "thoughtSignature": "CiQB0e2Kb3dRh+BnXj5Q1gkPqzj0ByCnCw==",
        }
    ],
    usage={"promptTokenCount": 95, "candidatesTokenCount": 19, "totalTokenCount": 114},
)

GEMINI_SAFETY = {
    "candidates": [
        {
            "finishReason": "SAFETY",
            "index": 0,
            "safetyRatings": [
                {"category": "HARM_CATEGORY_SEXUALLY_EXPLICIT", "probability": "NEGLIGIBLE"},
                {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True},
            ],
        }
    ],
    "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9},
    "modelVersion": "gemini-x-001",
}

GEMINI_PROMPT_BLOCKED = {
    "promptFeedback": {
        "blockReason": "PROHIBITED_CONTENT",
        "safetyRatings": [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH"}],
    },
    "usageMetadata": {"promptTokenCount": 8, "totalTokenCount": 8},
    "modelVersion": "gemini-x-001",
}


def gemini_error(code: int, status: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "status": status}}


def gemini_stream(pieces: list[str], *, usage: bool = True, finish: str = "STOP") -> list[dict[str, Any]]:
    """A text answer as Gemini streams it: each event a response with the next text and the usage so far."""
    events = []
    for i, piece in enumerate(pieces):
        last = i == len(pieces) - 1
        ev = gemini_response([{"text": piece}], finish=finish if last else None)
        if usage:
            ev["usageMetadata"] = {
                "promptTokenCount": 12,
                "candidatesTokenCount": 4 * (i + 1),
                "totalTokenCount": 12 + 4 * (i + 1) + (37 if last else 0),
                **({"thoughtsTokenCount": 37, "cachedContentTokenCount": 8} if last else {}),
            }
        events.append(ev)
    return events


# --------------------------------------------------------------------------- reading what the gateway sent


def candidate_labels(prompt: str) -> dict[str, str]:
    """Label -> candidate text, from a judge prompt the gateway built."""
    return {b.label: b.body for b in blocks(prompt, "CANDIDATE")}


def last_user_text(messages: list[dict[str, Any]], *, key: str = "content") -> str:
    """The text of the last user turn (Anthropic ``messages`` or Gemini ``contents``)."""
    for msg in reversed(messages):
        if msg.get("role") == "user":
            if key == "parts":
                return "".join(p.get("text", "") for p in msg["parts"])
            content = msg["content"]
            return content if isinstance(content, str) else "".join(b.get("text", "") for b in content)
    return ""


# --------------------------------------------------------------------------- reading what the gateway answered


def assemble(stream: Any) -> tuple[ChatCompletion, list[ChatCompletionChunk]]:
    """A streamed answer assembled by the openai SDK's own helper, with the chunks it came in."""
    state: ChatCompletionStreamState = ChatCompletionStreamState()
    chunks = []
    for c in stream:
        chunks.append(c)
        state.handle_chunk(c)
    return ChatCompletion.model_validate(state.get_final_completion().model_dump()), chunks
