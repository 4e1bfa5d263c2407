"""The HTTP side of every HTTP provider: one client, POST a request, map error statuses.

Translation, where there is any, lives in each provider's own modules; this module only moves bytes and
turns transport failures and error statuses into the gateway's error tree.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from gateway.config.loader import ModelSpec
from gateway.config.providers import HTTPProviderConfig
from gateway.providers.base import ChunkStream, Provider
from gateway.providers.http_client import Disconnected, Response, UpstreamClient
from gateway.providers.stream import completion_as_stream
from gateway.providers.transport import (
    call_headers,
    iter_body,
    read_at_most,
    read_body,
    status_error,
    upstream_errors,
)
from gateway.wire import jsonutil
from gateway.wire.deadline import within
from gateway.wire.errors import UpstreamConnectError, UpstreamProtocolError, UpstreamStatusError, UpstreamTimeout

_MAX_ERROR_BODY = 64 * 1024

#: (the open response's body, as it arrives) -> the chunk stream that translates it
StreamFactory = Callable[[AsyncIterator[bytes]], ChunkStream]
#: a native non-streamed answer -> an OpenAI ``chat.completion``
CompletionFactory = Callable[[Any], dict[str, Any]]


class NativeHTTPProvider(Provider):
    """Base of the providers that reach their upstream over HTTP: client, POST, errors."""

    config: HTTPProviderConfig

    def __init__(self, name: str, config: HTTPProviderConfig, headers: dict[str, str], key: str) -> None:
        super().__init__(name, config)
        self._headers = headers  # the client's defaults: merging per request costs more than sending them
        self._secrets = (key,) if key else ()
        self._upstream: UpstreamClient | None = None

    def _client(self) -> UpstreamClient:
        # Created on first use: its connections belong to the running event loop. Only the connect timeout
        # lives in the client (it costs nothing on a pooled connection); first byte and wall clock are
        # enforced per call, and there is deliberately no per-read timeout: a drip-feeding upstream is
        # cut by the wall clock instead.
        if self._upstream is None:
            config = self.config
            self._upstream = UpstreamClient(config.max_connections, config.timeouts.connect_s, self._headers)
        return self._upstream

    async def aclose(self) -> None:
        if self._upstream is not None:
            await self._upstream.aclose()
            self._upstream = None

    def error_for(self, spec: ModelSpec, status: int, raw: bytes, headers: Any) -> UpstreamStatusError:
        """The error for an upstream error status. Providers whose error bodies say more override this."""
        return status_error(spec.name, status, raw, headers, self._secrets)

    async def _post(
        self, spec: ModelSpec, url: str, payload: dict[str, Any], first_byte_s: float | None
    ) -> Response:
        """Send the request and wait for headers; error statuses become errors here."""
        data = jsonutil.dumps(payload)
        headers = call_headers.get()
        try:
            if first_byte_s is None:
                resp = await self._client().post(url, data, headers)
            else:
                async with within(first_byte_s):
                    resp = await self._client().post(url, data, headers)
        except TimeoutError as exc:
            raise UpstreamTimeout(f"upstream '{spec.name}' sent no response headers in time") from exc
        except Disconnected as exc:
            if exc.answered:
                raise
            # Closed before a single byte of the answer (often a kept-alive connection the upstream had
            # just dropped): nothing was answered, so it is safe to try again, like a refused connection.
            raise UpstreamConnectError(f"upstream '{spec.name}' closed the connection before answering") from exc
        if resp.status < 300:
            return resp
        try:
            if resp.status < 400:
                raise UpstreamProtocolError(f"upstream '{spec.name}' answered a redirect; redirects are not followed")
            raw = await read_at_most(resp, _MAX_ERROR_BODY)
            raise self.error_for(spec, resp.status, raw, resp.headers)
        finally:
            resp.close()

    async def _post_json(self, spec: ModelSpec, url: str, payload: dict[str, Any]) -> Any:
        """A non-streamed call: the parsed JSON answer. Only the caller's wall clock bounds it."""
        with upstream_errors(spec.name):
            resp = await self._post(spec, url, payload, None)
            try:
                raw = await read_body(resp, spec.name, self.config.max_response_bytes)
            finally:
                resp.close()  # reused when the body was read to its end, else dropped
        try:
            return jsonutil.loads(raw)
        except jsonutil.JSONDecodeError as exc:
            raise UpstreamProtocolError(f"upstream '{spec.name}' answered with invalid JSON") from exc

    @asynccontextmanager
    async def _post_stream(
        self,
        spec: ModelSpec,
        url: str,
        payload: dict[str, Any],
        make_stream: StreamFactory,
        make_completion: CompletionFactory,
    ) -> AsyncIterator[ChunkStream]:
        """A streamed call. An upstream that answers JSON instead of an event stream still gives a valid
        answer: its completion, as chunks."""
        with upstream_errors(spec.name):
            resp = await self._post(spec, url, payload, spec.timeouts.first_byte_s)
        try:
            if resp.headers.get("content-type", "").startswith("application/json"):
                with upstream_errors(spec.name):
                    raw = await read_body(resp, spec.name, self.config.max_response_bytes)
                try:
                    data = jsonutil.loads(raw)
                except jsonutil.JSONDecodeError as exc:
                    raise UpstreamProtocolError(f"upstream '{spec.name}' answered with invalid JSON") from exc
                yield completion_as_stream(make_completion(data))
            else:
                chunks = make_stream(iter_body(resp, spec.name, self.config.max_response_bytes))
                chunks.max_event_bytes = self.config.max_event_bytes
                yield chunks
        finally:
            resp.close()  # reused when the body was read to its end; a half-read one is dropped, never reused
