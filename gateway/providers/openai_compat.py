"""``type: openai``: any endpoint that speaks OpenAI Chat Completions (OpenAI, vLLM, Ollama, llama.cpp ...)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import anyio

from gateway import jsonutil
from gateway.config.loader import ModelSpec
from gateway.config.schema import OpenAIProviderConfig
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
        self._headers = headers
        self._secrets = (key,) if key else ()
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        # Created on first use: an aiohttp session must be made inside the running event loop.
        if self._session is None:
            self._session = new_session(self.config.max_connections, self.config.timeouts)
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _open(self, spec: ModelSpec, body: dict[str, Any], deadline: float) -> aiohttp.ClientResponse:
        """Send the request and wait for headers; error statuses become errors here."""
        first_byte = min(spec.timeouts.first_byte_s, deadline - time.monotonic())
        try:
            with anyio.fail_after(first_byte):
                resp = await self._client().post(
                    self._url, data=jsonutil.dumps(body), headers=self._headers, allow_redirects=False
                )
        except TimeoutError as exc:
            raise UpstreamTimeout(f"upstream '{spec.name}' sent no response headers in time") from exc
        if resp.status < 300:
            return resp
        try:
            if 300 <= resp.status < 400:
                raise UpstreamProtocolError(f"upstream '{spec.name}' answered a redirect; redirects are not followed")
            with anyio.fail_after(max(0.001, deadline - time.monotonic())):
                raw = await resp.content.read(_MAX_ERROR_BODY)
            raise status_error(spec.name, resp.status, raw, resp.headers, self._secrets)
        finally:
            resp.close()

    async def complete(self, spec: ModelSpec, body: dict[str, Any]) -> dict[str, Any]:
        deadline = time.monotonic() + spec.timeouts.total_s
        with upstream_errors(spec.name):
            resp = await self._open(spec, body, deadline)
            try:
                with anyio.fail_after(max(0.001, deadline - time.monotonic())):
                    raw = await resp.read()
            except TimeoutError as exc:
                resp.close()
                raise UpstreamTimeout(f"upstream '{spec.name}' exceeded its wall-clock limit") from exc
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
        deadline = time.monotonic() + spec.timeouts.total_s
        with upstream_errors(spec.name):
            resp = await self._open(spec, body, deadline)
        try:
            ctype = resp.headers.get("content-type", "")
            if ctype.startswith("application/json"):
                # Some servers ignore stream=true; an ordinary completion is still a valid answer.
                with upstream_errors(spec.name):
                    with anyio.fail_after(max(0.001, deadline - time.monotonic())):
                        raw = await resp.read()
                yield single_completion_stream(raw, spec.name)
            else:
                chunks = SSEChunkStream(iter_body(resp, deadline, spec.name), spec.name)
                yield chunks
                if chunks.finished:
                    resp.release()
        finally:
            resp.close()  # no-op after release; otherwise the connection is dropped, never reused half-read
