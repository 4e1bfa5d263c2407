"""``type: gemini``: Google's Gemini API (``generateContent`` / ``streamGenerateContent?alt=sse``) behind
OpenAI Chat Completions.

Translated both ways: see :mod:`.request` (contents, system instruction, images, tools, ``response_format``,
generation settings), :mod:`.schema` (JSON schemas), :mod:`.response` (candidates, tool calls, finish
reasons, usage) and :mod:`.stream` (events). ``n`` becomes ``candidateCount``, one choice per candidate.

Refused with a 400 before any upstream call, because ignoring them would change the answer:
``logprobs``/``top_logprobs``, ``logit_bias``, ``parallel_tool_calls: false`` (with tools), image URLs other than base64
``data:`` URLs, non-text ``modalities``, audio and file content parts, legacy ``functions``/``function_call``,
and any field not listed here. Dropped as harmless: ``stream_options`` (usage is always read), ``user``,
``service_tier``, ``store``, ``metadata``, ``prediction``, and an image's ``detail``. Operators can add
native fields (``safetySettings``, ``generationConfig.thinkingConfig`` ...) with the provider's ``extra_body``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

from gateway.config.loader import ModelSpec
from gateway.config.providers import GeminiProviderConfig
from gateway.providers.base import ChunkStream
from gateway.providers.gemini.request import GeminiRequest, build
from gateway.providers.gemini.response import error, to_completion
from gateway.providers.gemini.stream import GeminiChunkStream
from gateway.providers.http_base import NativeHTTPProvider
from gateway.providers.translate import guarded, who
from gateway.wire.errors import UpstreamStatusError


class GeminiProvider(NativeHTTPProvider):
    config: GeminiProviderConfig

    def __init__(self, name: str, config: GeminiProviderConfig) -> None:
        key = config.api_key.get_secret_value() if config.api_key is not None else ""
        headers = {"content-type": "application/json", **config.headers}
        if key:
            headers["x-goog-api-key"] = key  # a header, never ?key=: URLs end up in logs
        super().__init__(name, config, headers, key)

    def error_for(self, spec: ModelSpec, status: int, raw: bytes, headers: Any) -> UpstreamStatusError:
        return error(spec.name, status, raw, headers, self._secrets)

    def _url(self, request: GeminiRequest, method: str) -> str:
        return f"{self.config.base_url}/{quote(request.resource, safe='/')}:{method}"

    def _build(self, spec: ModelSpec, body: dict[str, Any]) -> GeminiRequest:
        return guarded(who(spec.name, "gemini"), lambda: build(body, self.config, spec.name))

    async def complete(self, spec: ModelSpec, body: dict[str, Any]) -> dict[str, Any]:
        request = self._build(spec, body)
        data = await self._post_json(spec, self._url(request, "generateContent"), request.payload)
        return to_completion(data, spec.name, spec.upstream)

    @asynccontextmanager
    async def stream(self, spec: ModelSpec, body: dict[str, Any]) -> AsyncIterator[ChunkStream]:
        request = self._build(spec, body)
        upstream = str(body.get("model") or spec.upstream)

        def events(raw: AsyncIterator[bytes]) -> ChunkStream:
            return GeminiChunkStream(raw, spec.name, upstream, request, self._secrets)

        def whole(data: Any) -> dict[str, Any]:
            return to_completion(data, spec.name, upstream)

        url = self._url(request, "streamGenerateContent") + "?alt=sse"
        async with self._post_stream(spec, url, request.payload, events, whole) as chunks:
            yield chunks


__all__ = ["GeminiProvider"]
