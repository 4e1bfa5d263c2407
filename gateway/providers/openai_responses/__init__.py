"""``type: openai`` with ``api: responses``: an upstream called over the OpenAI Responses API
(``POST {base_url}/responses``, always ``store: false``) behind OpenAI Chat Completions.

Translated both ways: see :mod:`.request` (instructions, input items, images, tools, ``text.format``,
reasoning effort), :mod:`.response` (output items, finish reasons, usage, errors) and :mod:`.stream`
(the semantic events). Embeddings go to ``{base_url}/embeddings`` as with ``api: chat_completions``.

Refused with a 400 before any upstream call, because ignoring them would change the answer: ``stop``
(the Responses API has no stop sequences), ``n > 1``, ``logprobs``/``top_logprobs``, ``logit_bias``,
non-zero ``presence_penalty``/``frequency_penalty``, non-text ``modalities``, audio content parts, legacy
``functions``/``function_call``, and any field not listed here. Dropped as harmless: ``stream_options``
(usage is always read), ``seed``, ``store`` (the call is never stored) and ``prediction``. Passed on as
they are: ``temperature``, ``top_p``, ``metadata``, ``user``, ``safety_identifier``, ``prompt_cache_key``,
``service_tier``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from gateway.config.loader import ModelSpec
from gateway.config.providers import OpenAIProviderConfig
from gateway.providers.base import ChunkStream
from gateway.providers.openai_compat import OpenAIProvider
from gateway.providers.openai_responses.request import ResponsesCall, build
from gateway.providers.openai_responses.response import to_completion
from gateway.providers.openai_responses.stream import ResponsesChunkStream
from gateway.providers.translate import guarded, who


class OpenAIResponsesProvider(OpenAIProvider):
    def __init__(self, name: str, config: OpenAIProviderConfig) -> None:
        super().__init__(name, config)
        self._url = config.base_url + "/responses"

    def _build(self, spec: ModelSpec, body: dict[str, Any], *, stream: bool) -> ResponsesCall:
        return guarded(who(spec.name, "openai responses"), lambda: build(body, spec.name, stream=stream))

    async def complete(self, spec: ModelSpec, body: dict[str, Any]) -> dict[str, Any]:
        call = self._build(spec, body, stream=False)
        data = await self._post_json(spec, self._url, call.payload)
        return to_completion(data, spec.name, str(call.payload["model"]), self._secrets)

    @asynccontextmanager
    async def stream(self, spec: ModelSpec, body: dict[str, Any]) -> AsyncIterator[ChunkStream]:
        call = self._build(spec, body, stream=True)

        def events(raw: AsyncIterator[bytes]) -> ChunkStream:
            return ResponsesChunkStream(raw, spec.name, call, self._secrets)

        def whole(data: Any) -> dict[str, Any]:
            return to_completion(data, spec.name, str(call.payload["model"]), self._secrets)

        async with self._post_stream(spec, self._url, call.payload, events, whole) as chunks:
            yield chunks


__all__ = ["OpenAIResponsesProvider"]
