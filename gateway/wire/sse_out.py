"""An SSE response to the caller that starts as late as possible.

Headers go out with the first event (or the first keep-alive), so an error that happens before any
content still gets its real status code and JSON body. After that, errors can only go in-band:
``data: {"error": ...}``, then the body ends without ``[DONE]`` (the openai SDK raises ``APIError``).
Keep-alives are SSE comment lines; never an empty ``data:`` event (the openai SDK fails on those).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio

from gateway.wire import sse
from gateway.wire.asgi import Headers, Send, send_error
from gateway.wire.concurrency import beside
from gateway.wire.errors import GatewayError, ServiceUnavailable

#: writes an error answer (status, headers and body) before anything else was sent
ErrorWriter = Callable[[Send, GatewayError, Sequence[tuple[bytes, bytes]]], Awaitable[None]]

SSE_HEADERS: Headers = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # tell nginx-style proxies not to buffer the stream
]


class SSEResponse:
    def __init__(self, send: Send, headers: Headers, keepalive_s: float) -> None:
        self._send = send
        self._headers = headers
        self._keepalive_s = keepalive_s
        self._lock = anyio.Lock()
        self._last = time.monotonic()
        self.started = False
        self.closed = False

    async def _write(self, data: bytes, *, more: bool = True) -> None:
        if self.closed:
            return
        if not self.started:
            self.started = True
            await self._send({"type": "http.response.start", "status": 200, "headers": [*SSE_HEADERS, *self._headers]})
        await self._send({"type": "http.response.body", "body": data, "more_body": more})
        self._last = time.monotonic()
        if not more:
            self.closed = True

    async def event(self, obj: Any) -> None:
        data = sse.encode(obj)
        async with self._lock:
            await self._write(data)

    async def named(self, name: str, obj: Any) -> None:
        """An event with an ``event:`` line (the Responses and Anthropic streams name every event)."""
        data = b"event: " + name.encode() + b"\n" + sse.encode(obj)
        async with self._lock:
            await self._write(data)

    async def done(self) -> None:
        async with self._lock:
            await self._write(sse.DONE, more=False)

    async def end(self) -> None:
        """End the body without ``[DONE]`` (streams whose last event says they are complete)."""
        async with self._lock:
            await self._write(b"", more=False)

    async def fail(
        self,
        exc: GatewayError,
        headers: Sequence[tuple[bytes, bytes]] = (),
        *,
        before: ErrorWriter = send_error,
        inband: bytes | None = None,
    ) -> None:
        """Report ``exc``: with its real status (and ``headers``) if nothing was sent yet, written by
        ``before``; else in-band, as ``inband`` (default: the error envelope as a data event)."""
        async with self._lock:
            if self.closed:
                return
            if not self.started:
                self.closed = self.started = True
                await before(self._send, exc, [*self._headers, *headers])
                return
            await self._write(sse.encode(exc.envelope()) if inband is None else inband, more=False)

    async def until_shutdown(self, work: Awaitable[None], stop: anyio.Event) -> None:
        """Run ``work``; if ``stop`` fires first (the shutdown grace ran out), raise ServiceUnavailable so the
        stream ends with an in-band error instead of just breaking off."""
        stopped = False

        async def watch() -> None:
            nonlocal stopped
            await stop.wait()
            stopped = True
            scope.cancel()

        with anyio.CancelScope() as scope:
            await beside(work, watch)
        if stopped:
            raise ServiceUnavailable("the gateway is shutting down; retry the request")

    async def keepalive(self) -> None:
        """Run until cancelled: a comment line whenever the stream has been quiet for ``keepalive_s``."""
        while not self.closed:
            wait = self._last + self._keepalive_s - time.monotonic()
            if wait > 0:
                await anyio.sleep(wait)
                continue
            async with self._lock:
                await self._write(sse.comment("fusion keep-alive"))
