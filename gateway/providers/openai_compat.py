"""``type: openai``: any endpoint that speaks OpenAI Chat Completions (OpenAI, vLLM, Ollama, llama.cpp ...)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from gateway import jsonutil
from gateway.config.loader import ModelSpec
from gateway.config.schema import OpenAIProviderConfig
from gateway.deadline import within
from gateway.errors import UpstreamProtocolError, UpstreamTimeout
from gateway.providers.base import ChunkStream, Provider
from gateway.providers.http import iter_body, new_session, status_error, upstream_errors
from gateway.providers.stream import SSEChunkStream, single_completion_stream

_MAX_ERROR_BODY = 64 * 1024


class OpenAIProvider(Provider):
    config: OpenAIProviderConfig

    def __init__(self, name: str, config: OpenAIProviderConfig) -> None:
        super().__init__(name, config)
        self._url = config.base_url + "/chat/completions"
        headers = {"content-type": "application/json", **config.headers}
        key = config.api_key.get_secret_value() if config.api_key is not None else ""
        if key:
            headers["authorization"] = f"Bearer {key}"
        self._headers = headers  # session defaults: merging per request costs more than sending them
        self._secrets = (key,) if key else ()
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        # Created on first use: an aiohttp session must be made inside the running event loop.
        if self._session is None:
            self._session = new_session(self.config.max_connections, self.config.timeouts, self._headers)
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _open(self, spec: ModelSpec, body: dict[str, Any], first_byte_s: float | None) -> aiohttp.ClientResponse:
        """Send the request and wait for headers; error statuses become errors here."""
        data = jsonutil.dumps(body)
        if first_byte_s is None:
            resp = await self._client().post(self._url, data=data, allow_redirects=False)
        else:
            try:
                async with within(first_byte_s):
                    resp = await self._client().post(self._url, data=data, allow_redirects=False)
            except TimeoutError as exc:
                raise UpstreamTimeout(f"upstream '{spec.name}' sent no response headers in time") from exc
        if resp.status < 300:
            return resp
        try:
            if resp.status < 400:
                raise UpstreamProtocolError(f"upstream '{spec.name}' answered a redirect; redirects are not followed")
            raw = await resp.content.read(_MAX_ERROR_BODY)
            raise status_error(spec.name, resp.status, raw, resp.headers, self._secrets)
        finally:
            resp.close()

    async def complete(self, spec: ModelSpec, body: dict[str, Any]) -> dict[str, Any]:
        # No first-byte limit here: a non-streamed answer's first byte comes when the whole answer is
        # done, so only the caller's wall clock (timeouts.total_s) is meaningful.
        with upstream_errors(spec.name):
            resp = await self._open(spec, body, None)
            try:
                raw = await resp.read()
            except BaseException:
                resp.close()
                raise
            resp.release()
        try:
            data = jsonutil.loads(raw)
        except jsonutil.JSONDecodeError as exc:
            raise UpstreamProtocolError(f"upstream '{spec.name}' answered with invalid JSON") from exc
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
            raise UpstreamProtocolError(f"upstream '{spec.name}' answered without choices")
        return data

    @asynccontextmanager
    async def stream(self, spec: ModelSpec, body: dict[str, Any]) -> AsyncIterator[ChunkStream]:
        with upstream_errors(spec.name):
            resp = await self._open(spec, body, spec.timeouts.first_byte_s)
        try:
            ctype = resp.headers.get("content-type", "")
            if ctype.startswith("application/json"):
                # Some servers ignore stream=true; an ordinary completion is still a valid answer.
                with upstream_errors(spec.name):
                    raw = await resp.read()
                yield single_completion_stream(raw, spec.name)
            else:
                chunks = SSEChunkStream(iter_body(resp), spec.name)
                yield chunks
                if chunks.finished:
                    resp.release()
        finally:
            resp.close()  # no-op after release; otherwise the connection is dropped, never reused half-read
