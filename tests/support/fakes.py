"""A scriptable OpenAI-compatible upstream, served over real loopback HTTP.

Each upstream model name gets a behaviour; the fake records every request body and whether (and when)
the client closed the connection, so tests can assert cancellation at the upstream itself.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import anyio

from gateway.wire.asgi import read_body, serve_lifespan

Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
BODY_LIMIT = 64 * 1024 * 1024


@dataclass
class Seen:
    model: str
    body: dict[str, Any]
    headers: dict[str, str]
    started: float
    disconnected: float | None = None
    finished: float | None = None
    path: str = ""


Behaviour = Callable[[Seen, Send], Awaitable[None]]


def completion(
    content: str = "Hello from the fake.",
    *,
    model: str = "upstream-model",
    usage: dict[str, Any] | None = None,
    finish_reason: str = "stop",
    tool_calls: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if tool_calls:
        message["tool_calls"] = tool_calls
        message["content"] = None
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1700000000,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}],
        "usage": usage or {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
    }


def chunk(
    delta: dict[str, Any] | None, finish: str | None = None, *, usage: dict[str, Any] | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "upstream-model",
        "choices": [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if usage is not None:
        out["usage"] = usage
    return out


def text_chunks(text: str, *, usage: dict[str, Any] | None = None, pieces: int = 3) -> list[dict[str, Any]]:
    step = max(1, len(text) // pieces)
    parts = [text[i : i + step] for i in range(0, len(text), step)]
    out = [chunk({"role": "assistant", "content": ""})]
    out += [chunk({"content": p}) for p in parts]
    out.append(chunk({}, "stop"))
    if usage is not None:
        out.append(chunk(None, usage=usage))
    return out


async def _start(send: Send, status: int, ctype: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send(
        {"type": "http.response.start", "status": status, "headers": [(b"content-type", ctype), *(headers or [])]}
    )


def json_reply(obj: Any, *, status: int = 200, delay: float = 0.0, headers: dict[str, str] | None = None) -> Behaviour:
    async def run(seen: Seen, send: Send) -> None:
        await anyio.sleep(delay)
        data = json.dumps(obj).encode()
        await _start(send, status, b"application/json", [(k.encode(), v.encode()) for k, v in (headers or {}).items()])
        await send({"type": "http.response.body", "body": data})

    return run


def error_reply(
    status: int, message: str = "upstream says no", *, headers: dict[str, str] | None = None, delay: float = 0.0
) -> Behaviour:
    return json_reply(
        {"error": {"message": message, "type": "server_error", "param": None, "code": None}},
        status=status,
        headers=headers,
        delay=delay,
    )


def sse_reply(
    events: list[Any], *, interval: float = 0.0, first_delay: float = 0.0, done: bool = True, raw: bool = False
) -> Behaviour:
    """``events``: dicts (sent as ``data: <json>``) or bytes (sent as they are, for malformed cases)."""

    async def run(seen: Seen, send: Send) -> None:
        await anyio.sleep(first_delay)
        await _start(send, 200, b"text/event-stream")
        for i, ev in enumerate(events):
            if i and interval:
                await anyio.sleep(interval)
            data = ev if isinstance(ev, bytes) else b"data: " + json.dumps(ev).encode() + b"\n\n"
            await send({"type": "http.response.body", "body": data, "more_body": True})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n" if done else b"", "more_body": False})

    return run


def hang() -> Behaviour:
    async def run(seen: Seen, send: Send) -> None:
        await anyio.sleep_forever()

    return run


def drip(interval: float = 0.2) -> Behaviour:
    """Headers, then a comment line every ``interval`` forever: never a chunk."""

    async def run(seen: Seen, send: Send) -> None:
        await _start(send, 200, b"text/event-stream")
        while True:
            await send({"type": "http.response.body", "body": b": waiting\n\n", "more_body": True})
            await anyio.sleep(interval)

    return run


def sequence(*behaviours: Behaviour) -> Behaviour:
    """One behaviour per call, in order; the last one repeats."""
    calls = {"n": 0}

    async def run(seen: Seen, send: Send) -> None:
        i = min(calls["n"], len(behaviours) - 1)
        calls["n"] += 1
        await behaviours[i](seen, send)

    return run


@dataclass
class FakeUpstream:
    """ASGI app. ``behaviours[model]`` answers requests for that upstream model name."""

    behaviours: dict[str, Behaviour] = field(default_factory=dict)
    default: Behaviour | None = None
    seen: list[Seen] = field(default_factory=list)
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
        body = await read_body(scope, receive, BODY_LIMIT)
        try:
            data = json.loads(body) if body else {}
        except ValueError:
            data = {}
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        seen = Seen(model=str(data.get("model", "")), body=data, headers=headers, started=time.monotonic(),
                    path=scope["path"])
        with self._lock:
            self.seen.append(seen)
        behaviour = self.behaviours.get(seen.model, self.default)
        if behaviour is None:
            await json_reply({"error": {"message": f"no behaviour for {seen.model}"}}, status=404)(seen, send)
            return

        async def watch(scope_: anyio.CancelScope) -> None:
            while True:
                m = await receive()
                if m["type"] == "http.disconnect":
                    if seen.finished is None:  # uvicorn also says "disconnect" once the response is complete
                        seen.disconnected = time.monotonic()
                    scope_.cancel()
                    return

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch, tg.cancel_scope)
            try:
                await behaviour(seen, send)
                seen.finished = time.monotonic()
            except OSError:
                seen.disconnected = seen.disconnected or time.monotonic()
            tg.cancel_scope.cancel()


# ---------------------------------------------------------------- pool members and judges


def answer(text: str, *, delay: float = 0.0, usage: dict[str, Any] | None = None, pieces: int = 3,
           interval: float = 0.0) -> Behaviour:
    """Answer ``text``: as SSE when the request streams (pool members and judges always do), else JSON."""
    use = usage or {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25}

    async def run(seen: Seen, send: Send) -> None:
        if seen.body.get("stream"):
            events = text_chunks(text, usage=use, pieces=pieces)
            await sse_reply(events, first_delay=delay, interval=interval)(seen, send)
        else:
            await json_reply(completion(text, usage=use), delay=delay)(seen, send)

    return run


def candidates_in(seen: Seen) -> list[Any]:
    """The candidate blocks of a judge prompt, in the order the judge saw them."""
    from fusion_modes.delimit import blocks

    return blocks(seen.body["messages"][-1]["content"], "CANDIDATE")


def judge_picking(predicate: Callable[[str], bool], *, delay: float = 0.0) -> Behaviour:
    """A judge that picks the first candidate whose text satisfies ``predicate`` (else the first)."""

    async def run(seen: Seen, send: Send) -> None:
        found = candidates_in(seen)
        label = next((b.label for b in found if predicate(b.body)), found[0].label if found else "?")
        verdict = json.dumps({"analysis": "compared the candidates", "winner": label})
        await answer(verdict, delay=delay, usage={"prompt_tokens": 300, "completion_tokens": 20,
                                                  "total_tokens": 320})(seen, send)

    return run
