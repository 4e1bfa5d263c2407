"""The upstream HTTP/1.1 client: kept-alive connections per origin, each request written in one piece,
each response parsed by httptools (llhttp, the parser of Node.js, which uvicorn uses for the inbound side).

Why its own client: a fused request makes N+1 upstream calls, so the client's cost per call is paid
N+1 times. One POST and its answer read cost about a quarter of the CPU here that they cost through
aiohttp's ``ClientSession`` (``tests/benchmarks/upstream_client.py``, both against the C mock in the same
run); the difference was most of what the gateway added to a passthrough (see README, "Why the gateway
has its own HTTP client for upstream calls"). Only what
the providers need is here: POST, response headers, the body whole or as it arrives, gzip and deflate,
TLS, a connection limit, no redirects, no cookies, no proxies.

Failures are this module's own exceptions (:class:`ClientError` and below); the provider layer turns
them into the gateway's error tree (:class:`gateway.providers.transport.upstream_errors`). Deadlines are
the caller's: it cancels, and a cancelled call closes its connection, never returns it to the pool.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import zlib
from collections import deque
from collections.abc import Mapping
from typing import NamedTuple, cast
from urllib.parse import quote, urlsplit

import httptools

#: a response head larger than this is refused (aiohttp and most servers stop at about 8 KiB a line)
MAX_HEAD_BYTES = 64 * 1024
#: body bytes buffered before the socket stops being read until the reader catches up
_HIGH_WATER = 256 * 1024
#: the most one read returns from a compressed body: a small bomb never inflates in one piece
_INFLATE_STEP = 64 * 1024
#: an idle kept-alive connection older than this is closed rather than reused
KEEPALIVE_S = 60.0

#: characters left as they are in a request target (RFC 3986's reserved and unreserved ones, and "%")
_URL_SAFE = "/?#[]@!$&'()*+,;=:%-._~"
_DEFAULT_HEADERS = {"user-agent": "fusion-gateway", "accept": "*/*", "accept-encoding": "gzip, deflate"}


class ClientError(Exception):
    """The upstream call failed below HTTP: no connection, a dropped one, or bytes that are not HTTP."""


class ConnectFailed(ClientError):
    """No connection could be made: refused, unknown host, unreachable, or the TLS handshake failed."""


class ConnectTimeout(ClientError, TimeoutError):
    """No connection within the provider's ``timeouts.connect_s``."""


class Disconnected(ClientError):
    """The connection closed before the response was complete."""

    def __init__(self, message: str, *, answered: bool) -> None:
        super().__init__(message)
        #: False: not one byte of a response head arrived, so the request may be sent again safely
        self.answered = answered


class BadResponse(ClientError):
    """The upstream's bytes are not a valid HTTP/1.1 response (or its head is too large)."""


class Origin(NamedTuple):
    scheme: str
    host: str
    port: int


class _Target(NamedTuple):
    origin: Origin
    #: request line and the headers that never change for this URL and client
    head: bytes


def header_block(headers: Mapping[str, str]) -> bytes:
    """``headers`` as HTTP/1.1 header lines. A name or value that could split the head is refused."""
    out = []
    for name, value in headers.items():
        if not name or any(c in name for c in " \t\r\n:\0") or any(c in value for c in "\r\n\0"):
            raise ValueError(f"header {name!r} cannot be sent: CR, LF and NUL are not allowed, nor spaces in names")
        out.append(f"{name}: {value}\r\n")
    return "".join(out).encode("latin-1")


class Response:
    """An upstream response: status and headers at once, the body as it arrives.

    Read it with :meth:`read_some` (a piece at a time, ``b""`` at the end) or :meth:`read_all`, then
    :meth:`close` it: the connection goes back to the pool if the body was read to its end."""

    __slots__ = ("_buffered", "_conn", "_encoding", "_error", "_inflate", "_pending", "_waiter", "complete",
                 "content_length", "headers", "status")

    def __init__(self, conn: _Connection, status: int, headers: dict[str, str]) -> None:
        self._conn: _Connection | None = conn
        self.status = status
        #: lower-cased names; repeated headers joined with ", " as RFC 9110 allows
        self.headers = headers
        length = headers.get("content-length")
        self.content_length = int(length) if length is not None and length.isdigit() else None
        encoding = headers.get("content-encoding", "").strip().lower()
        self._inflate: zlib._Decompress | None = None
        #: "gzip" or "deflate" until the first body bytes say how to inflate them
        self._encoding = encoding if encoding in ("gzip", "x-gzip", "deflate") else None
        self._pending: deque[bytes] = deque()  # body bytes as they came off the wire (de-chunked)
        self._buffered = 0
        self.complete = False  # the whole body has arrived
        self._error: ClientError | None = None
        self._waiter: asyncio.Future[None] | None = None

    # -- fed by the connection

    def _feed(self, data: bytes) -> None:
        self._pending.append(data)
        self._buffered += len(data)
        if self._buffered > _HIGH_WATER and self._conn is not None:
            self._conn.pause()
        self._wake()

    def _finish(self) -> None:
        self.complete = True
        self._wake()

    def _fail(self, error: ClientError) -> None:
        if not self.complete:
            self._error = error
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def _wait(self) -> None:
        self._waiter = asyncio.get_running_loop().create_future()
        await self._waiter

    # -- read by the caller

    async def read_some(self) -> bytes:
        """The next piece of the body (decompressed), ``b""`` once it has all been read."""
        inflate = self._inflate
        while True:
            if inflate is not None and inflate.unconsumed_tail:
                out = inflate.decompress(inflate.unconsumed_tail, _INFLATE_STEP)
                if out:
                    return out
            if self._pending:
                data = self._pending.popleft() if len(self._pending) == 1 else b"".join(self._pending)
                self._pending.clear()
                self._buffered = 0
                if self._conn is not None:
                    self._conn.resume()
                if inflate is None:
                    if self._encoding is None:
                        return data
                    inflate = self._inflate = _decompressor(self._encoding, data)
                    self._encoding = None
                try:
                    out = inflate.decompress(data, _INFLATE_STEP)
                except zlib.error as exc:
                    raise BadResponse(f"the body does not decompress: {exc}") from None
                if out:
                    return out
                continue
            if self._error is not None:
                raise self._error
            if self.complete:
                if inflate is not None and not inflate.eof:
                    tail, self._inflate = inflate.flush(), None
                    return tail
                return b""
            await self._wait()

    async def read_all(self) -> bytes:
        """The whole body at once, for an answer whose declared length the caller has already accepted.
        (A compressed body is read piece by piece: its declared length says nothing of what it inflates to.)"""
        if self._inflate is not None or self._encoding is not None:
            parts = []
            while data := await self.read_some():
                parts.append(data)
            return b"".join(parts)
        conn = self._conn
        if conn is not None:
            conn.unbounded = True  # the whole body is wanted: no reason to stop the socket half way
            conn.resume()
        while not self.complete and self._error is None:
            await self._wait()
        if self._error is not None and not self.complete:
            raise self._error
        data = b"".join(self._pending)
        self._pending.clear()
        self._buffered = 0
        return data

    def close(self) -> None:
        """Done with the response: its connection goes back to the pool if the body was read to its end,
        and is closed otherwise (a body left half read, a failure, a cancelled call). Idempotent."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.done(self, reuse=self.complete and not self._pending and self._error is None)


def _decompressor(encoding: str, first: bytes) -> zlib._Decompress:
    if encoding != "deflate":
        return zlib.decompressobj(16 + zlib.MAX_WBITS)  # gzip
    # "deflate" is zlib-wrapped (RFC 9110), but some servers send the raw stream: a zlib header's low
    # four bits say "deflate" (8), which a raw stream's first byte does not
    return zlib.decompressobj(zlib.MAX_WBITS if first[0] & 0x0F == 8 else -zlib.MAX_WBITS)


class _Connection(asyncio.Protocol):
    """One kept-alive connection: one request at a time, its response parsed as it arrives."""

    def __init__(self, client: UpstreamClient, origin: Origin) -> None:
        self.client = client
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.counted = True  # it holds one of the client's connection slots
        self.idle_since = 0.0
        self.unbounded = False  # the reader takes the whole body at once: never pause
        self._paused = False
        self._reusable = False
        self._lost = False
        self._head_waiter: asyncio.Future[Response] | None = None
        self._response: Response | None = None
        self._head_bytes = 0
        self._headers: dict[str, str] = {}

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's

    def data_received(self, data: bytes) -> None:
        if self._head_waiter is None and self._response is None:
            self._close()  # bytes nobody asked for: the connection cannot be trusted with another request
            return
        if self._head_waiter is not None:
            self._head_bytes += len(data)  # counted per read: a read holds at most a few hundred KiB
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._broken(BadResponse("the upstream switched protocols"))
            return
        except httptools.HttpParserError as exc:
            response = self._response
            if response is not None and response.complete:
                self._reusable = False  # bytes after a complete response: answered, but not reusable
                return
            self._broken(BadResponse(f"invalid HTTP response: {exc}"))
            return
        if self._head_waiter is not None and self._head_bytes > MAX_HEAD_BYTES:
            self._broken(BadResponse(f"the response head is larger than {MAX_HEAD_BYTES} bytes"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._reusable = False
        self.client.forget(self)
        waiter = self._head_waiter
        if waiter is not None:
            self._head_waiter = None
            if not waiter.done():
                reason = f": {exc}" if exc is not None else ""
                waiter.set_exception(Disconnected(f"closed before answering{reason}", answered=self._head_bytes > 0))
            return
        response = self._response
        if response is not None and not response.complete:
            headers = response.headers
            if response.content_length is None and "chunked" not in headers.get("transfer-encoding", "").lower():
                response._finish()  # no length, not chunked: the body ends where the connection does
            else:
                response._fail(Disconnected("closed mid-answer", answered=True))

    # -- httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        had = self._headers.get(key)
        self._headers[key] = text if had is None else f"{had}, {text}"

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        headers, self._headers = self._headers, {}
        if 100 <= status < 200:
            return  # an interim answer (100 Continue, 103 Early Hints): the real one follows
        waiter, self._head_waiter = self._head_waiter, None
        if waiter is None or waiter.done():
            return
        self._response = Response(self, status, headers)
        waiter.set_result(self._response)

    def on_body(self, body: bytes) -> None:
        response = self._response
        if response is not None:
            response._feed(body)

    def on_message_complete(self) -> None:
        response = self._response
        if response is None:
            return  # the end of an interim answer
        self._reusable = self.parser.should_keep_alive()
        response._finish()

    # -- used by the client and the response

    async def send(self, data: bytes) -> Response:
        assert self.transport is not None
        if self._lost:  # closed by the upstream between the connect and this request
            raise Disconnected("closed before the request was sent", answered=False)
        self._head_bytes = 0
        self._response = None
        self.unbounded = False
        waiter: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._head_waiter = waiter
        self.transport.write(data)
        return await waiter

    def pause(self) -> None:
        if not self._paused and not self.unbounded and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()

    def done(self, response: Response, *, reuse: bool) -> None:
        if response is not self._response:
            return
        self._response = None
        self.resume()
        if reuse and self._reusable and not self._lost:
            self.client.release(self)
        else:
            self._close()

    def abort(self) -> None:
        """The call was cancelled or failed mid-request: the connection is in an unknown state."""
        self._head_waiter = None
        response = self._response
        self._response = None
        if response is not None:
            response._conn = None
        self._close()

    def _broken(self, error: ClientError) -> None:
        waiter = self._head_waiter
        self._head_waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
        elif self._response is not None:
            self._response._fail(error)
        self._close()

    def _close(self) -> None:
        self._reusable = False
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    @property
    def usable(self) -> bool:
        return not self._lost and self.transport is not None and not self.transport.is_closing()


class UpstreamClient:
    """Kept-alive connections to the upstreams of one provider, at most ``max_connections`` at once
    (0: no limit). Made inside the running event loop; :meth:`aclose` closes every connection."""

    def __init__(self, max_connections: int, connect_s: float, headers: Mapping[str, str]) -> None:
        given = {name.lower() for name in headers}  # the provider's own user-agent, say, replaces ours
        self._headers = header_block({k: v for k, v in _DEFAULT_HEADERS.items() if k not in given} | dict(headers))
        self._limit = max_connections
        self._connect_s = connect_s
        self._open = 0
        self._idle: dict[Origin, deque[_Connection]] = {}
        self._waiters: deque[asyncio.Future[_Connection | None]] = deque()
        self._targets: dict[str, _Target] = {}
        self._ssl: ssl.SSLContext | None = None
        self._closed = False
        #: closes idle connections past ``KEEPALIVE_S``; pending while any connection is idle
        self._sweep: asyncio.TimerHandle | None = None

    async def post(self, url: str, body: bytes, headers: Mapping[str, str] | None = None) -> Response:
        """Send ``body`` to ``url`` and wait for the response head. The body is the caller's to read."""
        target = self._targets.get(url) or self._target(url)
        head = target.head
        if headers:
            head += header_block(headers)
        data = b"%scontent-length: %d\r\n\r\n%s" % (head, len(body), body)
        conn = await self._acquire(target.origin)
        try:
            return await conn.send(data)
        except BaseException:
            conn.abort()
            raise

    def _target(self, url: str) -> _Target:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        port = parts.port or (443 if scheme == "https" else 80)
        default_port = port == (443 if scheme == "https" else 80)
        host = parts.hostname
        host_header = f"[{host}]" if ":" in host else host
        if not default_port:
            host_header += f":{port}"
        # what is not already URL-safe (a non-ASCII path in a base_url, say) is percent-encoded
        path = quote((parts.path or "/") + (f"?{parts.query}" if parts.query else ""), safe=_URL_SAFE)
        head = f"POST {path} HTTP/1.1\r\nhost: {host_header}\r\n".encode("latin-1") + self._headers
        target = _Target(Origin(scheme, host, port), head)
        if len(self._targets) < 64:  # providers call a handful of URLs; a stray one is not remembered
            self._targets[url] = target
        return target

    # -- the pool

    async def _acquire(self, origin: Origin) -> _Connection:
        while True:
            if self._closed:
                raise ConnectFailed("the client is closed")
            conn = self._take_idle(origin)
            if conn is not None:
                return conn
            if self._limit == 0 or self._open < self._limit or self._evict_idle():
                return await self._connect(origin)
            waiter: asyncio.Future[_Connection | None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                given = await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled() and (handed := waiter.result()) is not None:
                    self.release(handed)  # handed over just as the caller gave up: pass it on
                elif waiter.done() and not waiter.cancelled():
                    self._wake_one()  # a slot freed for this caller: let the next one have it
                raise
            if given is not None:
                if given.origin == origin and given.usable:
                    return given
                self.forget(given, wake=False)  # another origin's: its slot is this caller's now
                given._close()

    def _take_idle(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        if not idle:
            return None
        horizon = time.monotonic() - KEEPALIVE_S
        while idle:
            conn = idle.pop()  # the most recently used: the least likely to have been closed by the upstream
            if conn.usable and conn.idle_since > horizon:
                return conn
            conn._close()
        return None

    def _evict_idle(self) -> bool:
        """Close the oldest idle connection to make room for a new one; False if none is idle."""
        oldest: _Connection | None = None
        for idle in self._idle.values():
            if idle and (oldest is None or idle[0].idle_since < oldest.idle_since):
                oldest = idle[0]
        if oldest is None:
            return False
        self._idle[oldest.origin].popleft()
        self.forget(oldest, wake=False)  # the slot is the caller's
        oldest._close()
        return True

    async def _connect(self, origin: Origin) -> _Connection:
        self._open += 1
        loop = asyncio.get_running_loop()
        conn = _Connection(self, origin)
        tls = self._tls() if origin.scheme == "https" else None
        try:
            async with asyncio.timeout(self._connect_s):
                await loop.create_connection(
                    lambda: conn, origin.host, origin.port, ssl=tls, server_hostname=origin.host if tls else None
                )
        except TimeoutError:
            self.forget(conn)
            conn._close()
            raise ConnectTimeout(f"no connection to {origin.host}:{origin.port} within {self._connect_s} s") from None
        except (OSError, ssl.SSLError) as exc:
            self.forget(conn)
            raise ConnectFailed(f"cannot connect to {origin.host}:{origin.port}: {exc}") from exc
        except BaseException:
            self.forget(conn)
            conn._close()
            raise
        return conn

    def _tls(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    def release(self, conn: _Connection) -> None:
        """A connection whose response was read to the end: to the next waiter, or to the idle pool."""
        if self._closed or not conn.usable:
            conn._close()
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        conn.idle_since = time.monotonic()
        self._idle.setdefault(conn.origin, deque()).append(conn)
        if self._sweep is None:  # the sweep closes what waits too long from here
            self._sweep = asyncio.get_running_loop().call_later(KEEPALIVE_S, self._sweep_idle)

    def _sweep_idle(self) -> None:
        """Close the connections idle past ``KEEPALIVE_S`` without waiting for the next call to their origin:
        an upstream that never closes idle connections would otherwise keep a burst's worth of them open
        for as long as nothing calls it again."""
        self._sweep = None
        now = time.monotonic()
        horizon = now - KEEPALIVE_S
        next_due: float | None = None
        for idle in self._idle.values():
            while idle and idle[0].idle_since <= horizon:
                idle.popleft()._close()
            if idle and (next_due is None or idle[0].idle_since < next_due):
                next_due = idle[0].idle_since
        if next_due is not None:
            self._sweep = asyncio.get_running_loop().call_later(next_due + KEEPALIVE_S - now, self._sweep_idle)

    def forget(self, conn: _Connection, *, wake: bool = True) -> None:
        """``conn`` is closed or closing: its slot is free (for the next waiter, if ``wake``)."""
        if not conn.counted:
            return
        conn.counted = False
        self._open -= 1
        idle = self._idle.get(conn.origin)
        if idle and conn in idle:
            idle.remove(conn)
        if wake:
            self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # room for one more connection: the waiter makes it
                return

    @property
    def open_connections(self) -> int:
        return self._open

    async def aclose(self) -> None:
        self._closed = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for idle in self._idle.values():
            while idle:
                idle.pop()._close()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
        await asyncio.sleep(0)  # let the transports' close callbacks run
