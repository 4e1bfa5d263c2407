"""The front door: connection and request-head limits on top of uvicorn's HTTP protocols.

uvicorn bounds an idle kept-alive connection (``timeout_keep_alive``) and nothing else: a connection
that never sends a byte, a client that sends one header byte a second, or a Content-Length longer
than the body it sends keep their socket forever, and any number of them can be open, until the
process runs out of file descriptors and even ``/livez`` fails. ``server.limits`` closes those holes:

- ``max_connections``: at the limit, a new connection takes the place of the connection that has been
  quiet longest among those with no request being served (a slow or idle one); if every connection is
  busy serving, the new one gets a 503 and is closed. Either way ``/livez`` from a new connection is
  answered while the limit holds.
- ``header_read_timeout_s``: the request line and headers must arrive within this long of the
  connection's (or the request's) first byte; else 408, or a plain close when no byte came at all.
- ``body_read_timeout_s``: the body must arrive within this long of the headers; else 408.
- ``idle_timeout_s``: a kept-alive connection with no next request is closed (uvicorn's own timer).
- ``max_header_bytes``: a request head larger than this is refused with 431.

It works by subclassing whichever uvicorn protocol is in use and looking at its state after each read:
no change to uvicorn's parsing, and only a timer and a counter per connection.
"""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.config.server import ServerLimits
from gateway.wire import jsonutil
from gateway.wire.errors import RETRY_AFTER_503, envelope

#: what ``uvicorn.run(http=...)`` is given for worker processes: an import string, resolved by
#: :func:`__getattr__` in each worker from the config file the workers load
WORKER_PROTOCOL = "gateway.service.front_door:FromConfigFile"

#: how long a refused connection still reads (and drops) input before it closes
_LINGER_S = 2.0

_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large", 503: b"Service Unavailable"}


def _answer(status: int, message: str, code: str, extra: bytes = b"") -> bytes:
    """A whole HTTP/1.1 response that closes the connection, with the OpenAI error envelope."""
    body = jsonutil.dumps(envelope(message, "invalid_request_error" if status < 500 else "api_error", code=code))
    return (
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n%s\r\n"
        % (status, _REASONS[status], len(body), extra)
    ) + body


def limited_protocol(base: type[asyncio.Protocol], limits: ServerLimits) -> type[asyncio.Protocol]:
    """``base`` (uvicorn's httptools or h11 protocol class) with ``limits`` enforced."""

    class Limited(base):  # type: ignore[valid-type,misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._fd_timer: asyncio.TimerHandle | None = None
            self._fd_head_bytes = 0  # bytes of the request head read so far (0: between requests)
            self._fd_in_head = True  # reading a request head (or waiting for the first byte of one)
            self._fd_body_cycle: Any = None  # the request whose body is awaited
            self._fd_quiet_since = 0.0
            self._fd_lingering = False  # refused and closing: input is dropped

        # -- connection lifecycle

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            self._fd_quiet_since = self.loop.time()
            if len(self.connections) > limits.max_connections and not self._fd_make_room():
                self.transport.write(_answer(503, "the gateway is at its connection limit; retry shortly",
                                             "too_many_connections", b"retry-after: " + RETRY_AFTER_503.encode()
                                             + b"\r\n"))
                self.transport.close()
                return
            self._fd_arm(limits.header_read_timeout_s, self._fd_head_timeout)

        def connection_lost(self, exc: Exception | None) -> None:
            self._fd_disarm()
            super().connection_lost(exc)

        def _fd_busy(self) -> bool:
            cycle = self.cycle
            return cycle is not None and not cycle.response_complete and not self._fd_in_head

        def _fd_make_room(self) -> bool:
            """Close the quietest connection that is serving nothing; False if there is none."""
            victim = None
            for conn in self.connections:
                if conn is self or not isinstance(conn, Limited) or conn._fd_busy():
                    continue
                if victim is None or conn._fd_quiet_since < victim._fd_quiet_since:
                    victim = conn
            if victim is None:
                return False
            victim._fd_disarm()
            victim.transport.close()
            self.connections.discard(victim)
            return True

        # -- reads

        def data_received(self, data: bytes) -> None:
            if self._fd_lingering:
                return  # refused: what still comes is read and dropped until the close
            self._fd_quiet_since = self.loop.time()
            cycle_before = self.cycle
            new_head = False
            if not self._fd_in_head and (cycle_before is None or cycle_before.response_complete):
                self._fd_in_head = True  # the first bytes of the next request on a kept-alive connection
                self._fd_head_bytes = 0
                new_head = True
            if self._fd_in_head:
                self._fd_head_bytes += len(data)
            super().data_received(data)
            cycle = self.cycle
            if self._fd_in_head and cycle is not None and cycle is not cycle_before:
                self._fd_in_head = False  # the head is complete: the app has the request
                self._fd_disarm()
                if cycle.more_body:
                    self._fd_body_cycle = cycle
                    self._fd_arm(limits.body_read_timeout_s, self._fd_body_timeout)
            elif self._fd_in_head and self._fd_head_bytes > limits.max_header_bytes:
                self._fd_refuse(431, f"the request head is larger than {limits.max_header_bytes} bytes",
                                "request_header_too_large")
                return
            elif new_head and self._fd_in_head:
                # Armed only when a head is left incomplete: a request whose head came in one read (nearly
                # all of them) costs no timer at all.
                self._fd_arm(limits.header_read_timeout_s, self._fd_head_timeout)
            body_cycle = self._fd_body_cycle
            if body_cycle is not None and not body_cycle.more_body:
                self._fd_body_cycle = None
                self._fd_disarm()

        # -- timers

        def _fd_arm(self, delay: float, callback: Any) -> None:
            self._fd_disarm()
            self._fd_timer = self.loop.call_later(delay, callback)

        def _fd_disarm(self) -> None:
            if self._fd_timer is not None:
                self._fd_timer.cancel()
                self._fd_timer = None

        def _fd_head_timeout(self) -> None:
            self._fd_timer = None
            if self.transport.is_closing() or not self._fd_in_head:
                return
            if self._fd_head_bytes == 0 and (self.cycle is None or self.cycle.response_complete):
                self.transport.close()  # nothing was asked: just close
                return
            self._fd_refuse(408, f"the request head did not arrive within {limits.header_read_timeout_s} s",
                            "request_timeout")

        def _fd_body_timeout(self) -> None:
            self._fd_timer = None
            cycle = self._fd_body_cycle
            self._fd_body_cycle = None
            if self.transport.is_closing() or cycle is None or not cycle.more_body:
                return
            started = cycle.response_started
            cycle.disconnected = True  # from here the app's sends go nowhere; its receive says disconnect
            if started:
                self.transport.close()
                return
            self._fd_refuse(408, f"the request body did not arrive within {limits.body_read_timeout_s} s",
                            "request_timeout")

        def _fd_refuse(self, status: int, message: str, code: str) -> None:
            """Answer and close the way servers must when the client may still be sending: send the
            answer and end our side, then read and drop what still comes for a moment before closing.
            A plain close with unread input resets the connection, and the client never sees the answer."""
            self._fd_disarm()
            self._fd_lingering = True
            transport = self.transport
            transport.write(_answer(status, message, code))
            if transport.can_write_eof():
                transport.write_eof()
                self._fd_timer = self.loop.call_later(_LINGER_S, transport.close)
            else:
                transport.close()

    Limited.__name__ = Limited.__qualname__ = f"Limited{base.__name__}"
    return Limited


def protocol_for(limits: ServerLimits) -> type[asyncio.Protocol]:
    """uvicorn's fastest HTTP protocol available (httptools, else h11), with ``limits``."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        from uvicorn.protocols.http.h11_impl import H11Protocol

        return limited_protocol(H11Protocol, limits)
    return limited_protocol(HttpToolsProtocol, limits)


def __getattr__(name: str) -> Any:
    if name == "FromConfigFile":
        from gateway.config import default_config_path, load_config

        return protocol_for(load_config(default_config_path()).server.limits)
    raise AttributeError(name)
