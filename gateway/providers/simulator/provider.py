"""``type: simulator``: simulated models served in-process, with the timing of their profile."""

from __future__ import annotations

import base64
import math
import random
import secrets
import struct
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio

from gateway.books.tokens import approximate
from gateway.books.usage import Usage
from gateway.config.loader import ModelSpec
from gateway.config.providers import SimulatorProviderConfig
from gateway.providers.base import ChunkStream, Provider
from gateway.providers.simulator.engine import Answer, Fault, SimulatedModel, Timing, stable_rng
from gateway.providers.transport import status_error
from gateway.wire.errors import UpstreamProtocolError

#: Simulated streams send a chunk at most this often; faster token rates batch several tokens per chunk.
CHUNK_INTERVAL_S = 0.02


class SimulatorProvider(Provider):
    config: SimulatorProviderConfig

    def __init__(self, name: str, config: SimulatorProviderConfig) -> None:
        super().__init__(name, config)
        # Timing noise and faults: one seeded stream per provider (deterministic sequence, not per prompt).
        self._chaos = random.Random(config.seed)

    def model(self, upstream: str) -> SimulatedModel:
        return SimulatedModel(upstream, self.config.profile(upstream), self.config.seed, self._chaos)

    async def complete(self, spec: ModelSpec, body: dict[str, Any]) -> dict[str, Any]:
        sim = self.model(str(body.get("model", spec.upstream)))
        fault, timing = await sim.first_byte(stream=False)
        _raise_status(spec, fault)
        answer = sim.answer(body)
        await anyio.sleep(len(answer.pieces) * timing.per_token_s)
        return completion_body(sim.name, answer)

    @asynccontextmanager
    async def stream(self, spec: ModelSpec, body: dict[str, Any]) -> AsyncIterator[ChunkStream]:
        sim = self.model(str(body.get("model", spec.upstream)))
        fault, timing = await sim.first_byte(stream=True)
        _raise_status(spec, fault)
        answer = sim.answer(body)
        opts = body.get("stream_options") or {}
        include_usage = bool(opts.get("include_usage")) and sim.profile.stream_usage
        yield _SimStream(spec.name, sim.name, answer, timing, include_usage, cut=fault is not None)


    serves_embeddings = True

    async def embed(self, spec: ModelSpec, body: dict[str, Any]) -> dict[str, Any]:
        sim = self.model(str(body.get("model", spec.upstream)))
        fault, _ = await sim.first_byte(stream=False)
        _raise_status(spec, fault)
        return embeddings_body(sim.name, body, self.config.seed)


def _raise_status(spec: ModelSpec, fault: Fault | None) -> None:
    """A simulated error status, raised as the upstream's would be."""
    if fault is not None and fault.kind == "status":
        raise status_error(
            spec.name, fault.status, b'{"error":{"message":"simulated failure"}}', _retry_headers(fault.status)
        )


def _retry_headers(status: int) -> dict[str, str]:
    return {"retry-after": "1"} if status == 429 else {}


def embeddings_body(model: str, body: dict[str, Any], seed: int) -> dict[str, Any]:
    """Deterministic unit vectors, one per input (same input, same vector), in OpenAI's ``list`` shape."""
    value = body.get("input")
    inputs = [value] if isinstance(value, str) or (isinstance(value, list) and value and
                                                    all(isinstance(v, int) for v in value)) else list(value or [])
    asked = body.get("dimensions")
    dims = asked if isinstance(asked, int) else EMBEDDING_DIMENSIONS
    data = []
    tokens = 0
    for i, item in enumerate(inputs):
        text = item if isinstance(item, str) else " ".join(map(str, item))
        tokens += approximate(text) if isinstance(item, str) else len(item)
        rng = stable_rng(seed, model, "embedding", text)
        vector = [rng.gauss(0, 1) for _ in range(dims)]
        norm = math.sqrt(sum(v * v for v in vector)) or 1.0
        unit = [v / norm for v in vector]
        encoded: Any = unit
        if body.get("encoding_format") == "base64":
            encoded = base64.b64encode(struct.pack(f"<{dims}f", *unit)).decode()
        data.append({"object": "embedding", "index": i, "embedding": encoded})
    return {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


#: the simulator's embedding size when the request gives no ``dimensions``
EMBEDDING_DIMENSIONS = 64


def completion_body(model: str, answer: Answer) -> dict[str, Any]:
    return {
        "id": "chatcmpl-sim-" + secrets.token_hex(8),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": i, "message": c.message, "finish_reason": c.finish_reason, "logprobs": _logprobs(c.logprobs)}
            for i, c in enumerate(answer.choices)
        ],
        "usage": answer.usage.to_openai(),
    }


def _logprobs(entries: list[dict[str, Any]] | None) -> dict[str, Any] | None:
    return None if entries is None else {"content": entries, "refusal": None}


def stream_chunks(model: str, answer: Answer, include_usage: bool) -> list[tuple[int, dict[str, Any]]]:
    """(tokens this chunk carries, chunk) pairs for a streamed answer, in order: each choice in turn."""
    base = {
        "id": "chatcmpl-sim-" + secrets.token_hex(8),
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
    }
    extra: dict[str, Any] = {"usage": None} if include_usage else {}

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None, logprobs: Any = None) -> dict[str, Any]:
        choice = {"index": index, "delta": delta, "finish_reason": finish, "logprobs": logprobs}
        return {**base, "choices": [choice], **extra}

    out: list[tuple[int, dict[str, Any]]] = []
    for i, c in enumerate(answer.choices):
        out.append((0, chunk(i, {"role": "assistant", "content": ""})))
        calls = c.message.get("tool_calls")
        if calls:
            out.append((c.tokens, chunk(i, {"tool_calls": [{"index": 0, **calls[0]}]})))
        else:
            for j, p in enumerate(c.pieces):
                lp = None if c.logprobs is None else {"content": [c.logprobs[j]], "refusal": None}
                out.append((1, chunk(i, {"content": p}, logprobs=lp)))
        out.append((0, chunk(i, {}, c.finish_reason)))
    if include_usage:
        out.append((0, {**base, "choices": [], "usage": answer.usage.to_openai()}))
    return out


class StreamCut(Exception):
    """The simulated stream stops here, as a dropped connection would."""


async def paced(
    chunks: list[tuple[int, dict[str, Any]]], timing: Timing, *, cut: bool
) -> AsyncIterator[dict[str, Any]]:
    """Chunks at the profile's token rate, batched to one chunk per ``CHUNK_INTERVAL_S`` at most.
    With ``cut``, raises :class:`StreamCut` half-way: no finish_reason, no usage, no [DONE]."""
    per_chunk = max(1, round(CHUNK_INTERVAL_S / timing.per_token_s))
    cut_at = len(chunks) // 2 if cut else None
    owed = 0
    for i, (tokens, c) in enumerate(chunks):
        if cut_at is not None and i >= cut_at:
            raise StreamCut
        owed += tokens
        if owed >= per_chunk or (tokens == 0 and owed):
            await anyio.sleep(owed * timing.per_token_s)
            owed = 0
        yield c


class _SimStream(ChunkStream):
    def __init__(self, name: str, model: str, answer: Answer, timing: Timing, include_usage: bool, cut: bool) -> None:
        self._name = name
        self._chunks = stream_chunks(model, answer, include_usage)
        self._timing = timing
        self._cut = cut
        self._final_usage = answer.usage if include_usage else None
        self.usage: Usage | None = None

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        try:
            async for c in paced(self._chunks, self._timing, cut=self._cut):
                if c.get("usage") is not None:
                    self.usage = self._final_usage
                yield c
        except StreamCut:
            raise UpstreamProtocolError(
                f"upstream '{self._name}' stream ended before the answer was complete"
            ) from None
