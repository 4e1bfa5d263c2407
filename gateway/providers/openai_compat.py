"""``type: openai``: any endpoint that speaks OpenAI Chat Completions (OpenAI, vLLM, Ollama, llama.cpp ...).

Nothing to translate: the body goes up as it is, and the answer comes back as it is. The HTTP side
(client, first-byte limit, error statuses, an upstream that ignores ``stream``) is shared with the
translating providers in :mod:`gateway.providers.http_base`.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any

from gateway.config.loader import ModelSpec
from gateway.config.providers import OpenAIProviderConfig
from gateway.providers.base import ChunkStream
from gateway.providers.http_base import NativeHTTPProvider
from gateway.providers.stream import SSEChunkStream
from gateway.wire.errors import UpstreamProtocolError


class OpenAIProvider(NativeHTTPProvider):
    config: OpenAIProviderConfig

    def __init__(self, name: str, config: OpenAIProviderConfig) -> None:
        headers = {"content-type": "application/json", **config.headers}
        key = config.api_key.get_secret_value() if config.api_key is not None else ""
        if key:
            headers["authorization"] = f"Bearer {key}"
        super().__init__(name, config, headers, key)
        self._url = config.base_url + "/chat/completions"
        self._embeddings_url = config.base_url + "/embeddings"

    serves_embeddings = True

    async def embed(self, spec: ModelSpec, body: dict[str, Any]) -> dict[str, Any]:
        data = await self._post_json(spec, self._embeddings_url, body)
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            raise UpstreamProtocolError(f"upstream '{spec.name}' answered without embeddings")
        return data

    async def complete(self, spec: ModelSpec, body: dict[str, Any]) -> dict[str, Any]:
        return _completion(spec, await self._post_json(spec, self._url, body))

    def stream(self, spec: ModelSpec, body: dict[str, Any]) -> AbstractAsyncContextManager[ChunkStream]:
        return self._post_stream(
            spec,
            self._url,
            body,
            make_stream=lambda raw: SSEChunkStream(raw, spec.name),
            make_completion=lambda data: _completion(spec, data),
        )


def _completion(spec: ModelSpec, data: Any) -> dict[str, Any]:
    if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
        raise UpstreamProtocolError(f"upstream '{spec.name}' answered without choices")
    return data
