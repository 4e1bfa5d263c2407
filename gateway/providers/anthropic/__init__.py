"""``type: anthropic``: Anthropic's Messages API (``POST {base_url}/messages``) behind OpenAI Chat Completions.

Translated both ways: see :mod:`.request` (messages, system prompt, images, tools, ``response_format``,
sampling), :mod:`.response` (content, tool calls, finish reasons, usage) and :mod:`.stream` (events).

Refused with a 400 before any upstream call, because ignoring them would change the answer:
``n > 1``, ``logprobs``/``top_logprobs``, ``logit_bias``, non-zero ``presence_penalty``/``frequency_penalty``,
``response_format: json_object`` (Anthropic has no JSON mode; ``json_schema`` works), ``json_schema`` together
with ``tools``, non-text ``modalities``, audio and file content parts, legacy ``functions``/``function_call``,
and any field not listed here. Dropped as harmless: ``stream_options`` (usage is always read), ``seed``,
``service_tier``, ``store``, ``metadata``, ``prediction``, and an image's ``detail``. ``user`` becomes
``metadata.user_id``; ``top_k`` (a common extension) is passed on. Operators can add native fields
(``thinking``, ``top_k`` ...) to every request with the provider's ``extra_body``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from gateway.config.loader import ModelSpec
from gateway.config.providers import AnthropicProviderConfig
from gateway.providers.anthropic.request import AnthropicRequest, build
from gateway.providers.anthropic.response import to_completion
from gateway.providers.anthropic.stream import AnthropicChunkStream
from gateway.providers.base import ChunkStream
from gateway.providers.http_base import NativeHTTPProvider
from gateway.providers.translate import guarded, who


class AnthropicProvider(NativeHTTPProvider):
    config: AnthropicProviderConfig

    def __init__(self, name: str, config: AnthropicProviderConfig) -> None:
        key = config.api_key.get_secret_value() if config.api_key is not None else ""
        headers = {"content-type": "application/json", "anthropic-version": config.anthropic_version, **config.headers}
        if key:
            headers["x-api-key"] = key
        super().__init__(name, config, headers, key)
        self._url = config.base_url + "/messages"

    def _build(self, spec: ModelSpec, body: dict[str, Any], *, stream: bool) -> AnthropicRequest:
        return guarded(who(spec.name, "anthropic"), lambda: build(body, self.config, spec.name, stream=stream))

    async def complete(self, spec: ModelSpec, body: dict[str, Any]) -> dict[str, Any]:
        request = self._build(spec, body, stream=False)
        data = await self._post_json(spec, self._url, request.payload)
        return to_completion(data, request, spec.name)

    @asynccontextmanager
    async def stream(self, spec: ModelSpec, body: dict[str, Any]) -> AsyncIterator[ChunkStream]:
        request = self._build(spec, body, stream=True)

        def events(raw: AsyncIterator[bytes]) -> ChunkStream:
            return AnthropicChunkStream(raw, spec.name, request, self._secrets)

        def whole(data: Any) -> dict[str, Any]:
            return to_completion(data, request, spec.name)

        async with self._post_stream(spec, self._url, request.payload, events, whole) as chunks:
            yield chunks


__all__ = ["AnthropicProvider", "AnthropicRequest"]
