"""One write per response instead of two: the HTTP server's writes coalesced within a loop iteration.

uvicorn writes a response's status line and headers as soon as the app sends ``http.response.start``,
then the body when it sends ``http.response.body``: two ``send`` syscalls, and for a client waiting on
another core two wake-ups, the first of which finds no body yet. On the reference machine (a VM, where a
cross-core wake-up costs an interrupt) writing the headers was the single largest cost of answering a
request. The gateway sends start and body back to back without yielding, so collecting the writes made
in one event-loop iteration and sending them together at its end costs nothing and halves the wake-ups.
A stream's events coalesce the same way when several are sent in one iteration.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class CoalescingTransport:
    """A write transport that sends what was written during one loop iteration in one call."""

    __slots__ = ("_buffer", "_closing", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._buffer: list[bytes] = []
        self._closing = False

    def write(self, data: bytes) -> None:
        if not data:
            return
        if not self._buffer:
            self._loop.call_soon(self.flush)
        self._buffer.append(data)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if not self._buffer:
            return
        data = self._buffer[0] if len(self._buffer) == 1 else b"".join(self._buffer)
        self._buffer.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        # What was written before close() goes out first, as with a plain transport.
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()  # the answer goes out before the half-close, not never
        self._transport.write_eof()

    def abort(self) -> None:
        self._buffer.clear()
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        # reading control, flow control, get_extra_info, is_closing ... are the real transport's
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, writing through a :class:`CoalescingTransport`."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but they have its interface
        real = cast(asyncio.Transport, transport)
        super().connection_made(cast(asyncio.Transport, CoalescingTransport(real, self.loop)))
