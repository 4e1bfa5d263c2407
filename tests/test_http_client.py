"""The upstream HTTP/1.1 client against real loopback servers that misbehave on purpose.

Each server is a plain asyncio TCP server that writes exactly the bytes a test gives it, so that every
case a real upstream can produce (a dropped connection, a body with no length, an interim answer,
garbage) is on the wire as it would be. Every test runs on both event loops: uvloop (what the gateway
serves on) and asyncio's own.
"""

from __future__ import annotations

import asyncio
import gzip
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from contextlib import asynccontextmanager
from typing import Any

import pytest
import uvloop

from gateway.providers.http_client import (
    KEEPALIVE_S,
    MAX_HEAD_BYTES,
    BadResponse,
    ConnectFailed,
    Disconnected,
    Response,
    UpstreamClient,
    header_block,
)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture(params=["uvloop", "asyncio"])
def run(request: pytest.FixtureRequest) -> Callable[[Coroutine[Any, Any, None]], None]:
    def runner(coro: Coroutine[Any, Any, None]) -> None:
        if request.param == "uvloop":
            uvloop.run(coro)
        else:
            asyncio.run(coro)

    return runner


class Server:
    """A loopback server: ``handler`` serves each connection; connections and requests are counted."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.open = 0
        self.most_open = 0
        self.requests: list[bytes] = []
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Server:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/v1/chat/completions"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.open -= 1
            writer.close()

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        """One whole request (head and a Content-Length body), recorded."""
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        length = next(int(line.split(b":")[1]) for line in lines if line.lower().startswith(b"content-length"))
        request = head + await reader.readexactly(length)
        self.requests.append(request)
        return request


def answer(body: bytes, *extra: bytes, status: bytes = b"200 OK") -> bytes:
    headers = b"".join(h + b"\r\n" for h in extra)
    return b"HTTP/1.1 %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n%s" % (
        status, len(body), headers, body)


def keep_answering(body: bytes = b'{"ok":true}', delay: float = 0.0) -> Callable[[Server], Handler]:
    def make(server: Server) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while True:
                await server.read_request(reader)
                if delay:
                    await asyncio.sleep(delay)
                writer.write(answer(body))
                await writer.drain()

        return handler

    return make


@asynccontextmanager
async def pooled(limit: int = 0, headers: Mapping[str, str] | None = None) -> AsyncIterator[UpstreamClient]:
    """The client a test uses, closed however the test ends."""
    client = UpstreamClient(limit, 5.0, headers or {})
    try:
        yield client
    finally:
        await client.aclose()


def serving(make: Callable[[Server], Handler]) -> Server:
    server = Server(lambda r, w: asyncio.sleep(0))
    server.handler = make(server)
    return server


async def read(resp: Response) -> bytes:
    parts = []
    while data := await resp.read_some():
        parts.append(data)
    resp.close()
    return b"".join(parts)


def test_the_request_goes_out_whole_with_the_providers_headers(run: Callable[..., None]) -> None:
    async def main() -> None:
        async with serving(keep_answering()) as server:
            headers = {"content-type": "application/json", "User-Agent": "mine/1", "authorization": "Bearer k"}
            async with pooled(headers=headers) as client:
                port = server.url.split(":")[2].split("/")[0]
                resp = await client.post(server.url + "?v=1", b'{"a":1}', {"traceparent": "00-ab-cd-01"})
                assert resp.status == 200 and resp.headers["content-type"] == "application/json"
                assert await read(resp) == b'{"ok":true}'
        head, _, body = server.requests[0].partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        assert lines[0] == "POST /v1/chat/completions?v=1 HTTP/1.1"
        fields = [line.split(": ", 1) for line in lines[1:]]
        names = [k.lower() for k, _ in fields]
        assert len(names) == len(set(names)), "no header twice: the provider's user-agent replaces the default"
        got = {k.lower(): v for k, v in fields}
        assert got["host"] == f"127.0.0.1:{port}"
        assert got["user-agent"] == "mine/1" and got["authorization"] == "Bearer k"
        assert got["traceparent"] == "00-ab-cd-01" and got["content-length"] == "7"
        assert got["accept-encoding"] == "gzip, deflate"
        assert body == b'{"a":1}'

    run(main())


def test_a_header_that_could_split_the_request_is_refused() -> None:
    for bad in ({"x-a": "v\r\nx-b: injected"}, {"x-a\r\nx-b": "v"}, {"x a": "v"}, {"": "v"}):
        with pytest.raises(ValueError, match="cannot be sent"):
            header_block(bad)


def test_a_kept_alive_connection_is_reused(run: Callable[..., None]) -> None:
    async def main() -> None:
        async with serving(keep_answering()) as server, pooled() as client:
            for _ in range(5):
                assert await read(await client.post(server.url, b"{}")) == b'{"ok":true}'
            assert server.connections == 1 and len(server.requests) == 5

    run(main())


def test_the_connection_limit_holds_and_every_call_is_served(run: Callable[..., None]) -> None:
    async def main() -> None:
        async with serving(keep_answering(delay=0.02)) as server, pooled(2) as client:

            async def one() -> bytes:
                return await read(await client.post(server.url, b"{}"))

            results = await asyncio.gather(*(one() for _ in range(9)))
            assert results == [b'{"ok":true}'] * 9
            assert server.most_open == 2 and server.connections == 2
            assert client.open_connections == 2

    run(main())


def test_a_caller_that_gives_up_while_waiting_for_a_slot_frees_nothing_it_did_not_hold(
    run: Callable[..., None],
) -> None:
    async def main() -> None:
        async with serving(keep_answering(delay=0.05)) as server, pooled(1) as client:
            first = asyncio.ensure_future(client.post(server.url, b"{}"))
            await asyncio.sleep(0.01)
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.01):
                    await client.post(server.url, b"{}")  # waits for the one slot, then gives up
            assert await read(await first) == b'{"ok":true}'
            assert await read(await client.post(server.url, b"{}")) == b'{"ok":true}'
            assert server.connections == 1 and client.open_connections == 1

    run(main())


def test_connection_close_is_honoured_and_the_next_call_opens_a_new_one(run: Callable[..., None]) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(answer(b"{}", b"connection: close"))
        await writer.drain()

    server = Server(handler)

    async def main() -> None:
        async with server, pooled() as client:
            for _ in range(3):
                assert await read(await client.post(server.url, b"{}")) == b"{}"
            assert server.connections == 3

    run(main())


def test_an_idle_connection_the_upstream_closed_is_not_used_again(run: Callable[..., None]) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(answer(b"{}"))  # kept alive by the headers, then closed anyway
        await writer.drain()

    server = Server(handler)

    async def main() -> None:
        async with server, pooled() as client:
            assert await read(await client.post(server.url, b"{}")) == b"{}"
            await asyncio.sleep(0.05)  # the close reaches the client while the connection is idle
            assert await read(await client.post(server.url, b"{}")) == b"{}"
            assert server.connections == 2

    run(main())


def test_a_connection_idle_too_long_is_not_used_again(
    run: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> None:
        async with serving(keep_answering()) as server, pooled() as client:
            assert await read(await client.post(server.url, b"{}")) == b'{"ok":true}'
            now = __import__("time").monotonic()
            monkeypatch.setattr("gateway.providers.http_client.time.monotonic", lambda: now + KEEPALIVE_S + 1)
            assert await read(await client.post(server.url, b"{}")) == b'{"ok":true}'
            assert server.connections == 2

    run(main())


def test_connections_idle_past_the_keep_alive_are_closed_without_another_call(
    run: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An upstream that never closes idle connections: a burst's connections do not stay open until the
    next call to it."""
    monkeypatch.setattr("gateway.providers.http_client.KEEPALIVE_S", 0.3)

    async def main() -> None:
        async with serving(keep_answering(delay=0.05)) as server, pooled() as client:
            answers = await asyncio.gather(*(client.post(server.url, b"{}") for _ in range(4)))
            assert [await read(a) for a in answers] == [b'{"ok":true}'] * 4
            assert server.open == 4 and client.open_connections == 4
            await asyncio.sleep(0.1)
            assert server.open == 4  # still within the keep-alive: kept for reuse
            for _ in range(100):
                if server.open == 0:
                    break
                await asyncio.sleep(0.02)
            assert server.open == 0 and client.open_connections == 0
            assert await read(await client.post(server.url, b"{}")) == b'{"ok":true}'  # a new one, as usual
            assert server.connections == 5

    run(main())


def test_a_close_before_the_answer_is_safe_to_retry_and_a_close_mid_body_is_not(run: Callable[..., None]) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await Server.read_request(before, reader)

    async def half(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await Server.read_request(mid, reader)
        writer.write(answer(b'{"a": "long"}')[:-5])
        await writer.drain()

    before, mid = Server(silent), Server(half)

    async def main() -> None:
        async with before, mid, pooled() as client:
            with pytest.raises(Disconnected) as unanswered:
                await client.post(before.url, b"{}")
            assert not unanswered.value.answered
            resp = await client.post(mid.url, b"{}")
            with pytest.raises(Disconnected) as cut:
                await read(resp)
            assert cut.value.answered
            resp.close()
            assert client.open_connections == 0

    run(main())


def test_a_body_with_no_length_ends_with_the_connection(run: Callable[..., None]) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n{\"until\":")
        await writer.drain()
        await asyncio.sleep(0.02)
        writer.write(b'"close"}')
        await writer.drain()

    server = Server(handler)

    async def main() -> None:
        async with server, pooled() as client:
            resp = await client.post(server.url, b"{}")
            assert resp.content_length is None
            assert await read(resp) == b'{"until":"close"}'

    run(main())


def test_a_chunked_stream_arrives_piece_by_piece(run: Callable[..., None]) -> None:
    gates: list[asyncio.Event] = []  # made inside the running loop

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        for piece in (b"data: 1\n\n", b"data: 2\n\n"):
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
            await gates[0].wait()  # the next piece only once the client has read this one
            gates[0].clear()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        await server.read_request(reader)  # the connection is reused for the next request
        writer.write(answer(b"{}"))
        await writer.drain()

    server = Server(handler)

    async def main() -> None:
        gates.append(asyncio.Event())
        async with server, pooled() as client:
            resp = await client.post(server.url, b"{}")
            got = []
            while data := await resp.read_some():
                got.append(data)
                gates[0].set()
            assert got == [b"data: 1\n\n", b"data: 2\n\n"]
            resp.close()
            assert await read(await client.post(server.url, b"{}")) == b"{}"
            assert server.connections == 1

    run(main())


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "raw-deflate"])
def test_compressed_bodies_are_inflated(run: Callable[..., None], encoding: str) -> None:
    text = b'{"content": "' + b"fusion " * 5000 + b'"}'
    if encoding == "gzip":
        wire = gzip.compress(text)
    elif encoding == "deflate":
        wire = zlib.compress(text)
    else:  # RFC 9110's deflate is zlib-wrapped, but some servers send the raw stream
        squeeze = zlib.compressobj(wbits=-15)
        wire = squeeze.compress(text) + squeeze.flush()
    name = b"gzip" if encoding == "gzip" else b"deflate"

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(answer(wire, b"content-encoding: " + name))
        await writer.drain()

    server = Server(handler)

    async def main() -> None:
        async with server, pooled() as client:
            assert await read(await client.post(server.url, b"{}")) == text

    run(main())


def test_a_bomb_inflates_a_piece_at_a_time(run: Callable[..., None]) -> None:
    wire = gzip.compress(b"\0" * (50 * 1024 * 1024))  # about 50 KB on the wire

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(answer(wire, b"content-encoding: gzip"))
        await writer.drain()

    server = Server(handler)

    async def main() -> None:
        async with server, pooled() as client:
            resp = await client.post(server.url, b"{}")
            biggest = total = 0
            while data := await resp.read_some():
                biggest = max(biggest, len(data))
                total += len(data)
                if total > 1024 * 1024:
                    break  # the caller's limit: what is left is never inflated
            assert biggest <= 64 * 1024
            resp.close()

    run(main())


def test_a_reader_that_falls_behind_stops_the_socket_not_the_memory(run: Callable[..., None]) -> None:
    body = b"x" * (8 * 1024 * 1024)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(answer(body))
        await writer.drain()

    server = Server(handler)

    async def main() -> None:
        async with server, pooled() as client:
            resp = await client.post(server.url, b"{}")
            await asyncio.sleep(0.2)  # the upstream sends as fast as it can; nobody reads
            assert resp._buffered < 1024 * 1024, "reading stopped near the high-water mark"
            assert await read(resp) == body

    run(main())


def test_an_interim_answer_is_skipped(run: Callable[..., None]) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </x>\r\n\r\n" + answer(b"{}"))
        await writer.drain()
        await server.read_request(reader)
        writer.write(answer(b"[]"))
        await writer.drain()

    server = Server(handler)

    async def main() -> None:
        async with server, pooled() as client:
            resp = await client.post(server.url, b"{}")
            assert resp.status == 200 and "link" not in resp.headers
            assert await read(resp) == b"{}"
            assert await read(await client.post(server.url, b"{}")) == b"[]"

    run(main())


@pytest.mark.parametrize("reply", [b"SSH-2.0-OpenSSH\r\n\r\n", b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n",
                                   b"HTTP/1.1 200 OK\r\nx-big: " + b"a" * (MAX_HEAD_BYTES + 10)])
def test_bytes_that_are_not_http_are_refused(run: Callable[..., None], reply: bytes) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(reply)
        await writer.drain()
        await asyncio.sleep(1)

    server = Server(handler)

    async def main() -> None:
        async with server, pooled() as client:
            with pytest.raises(BadResponse):
                await client.post(server.url, b"{}")
            await asyncio.sleep(0)
            assert client.open_connections == 0

    run(main())


def test_a_cancelled_call_drops_its_connection(run: Callable[..., None]) -> None:
    async def main() -> None:
        async with serving(keep_answering(delay=0.2)) as server, pooled() as client:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.05):
                    await client.post(server.url, b"{}")
            # the late answer must not be read as the answer to the next request
            assert await read(await client.post(server.url, b'{"n":2}')) == b'{"ok":true}'
            assert server.connections == 2

    run(main())


def test_a_response_closed_half_read_is_not_reused(run: Callable[..., None]) -> None:
    async def main() -> None:
        async with serving(keep_answering(body=b"y" * 500_000)) as server, pooled() as client:
            resp = await client.post(server.url, b"{}")
            assert await resp.read_some()
            resp.close()  # not read to the end: dropped, not pooled
            assert await read(await client.post(server.url, b"{}")) == b"y" * 500_000
            assert server.connections == 2

    run(main())


def test_nothing_listening_is_a_connect_failure(run: Callable[..., None]) -> None:
    async def main() -> None:
        async with serving(keep_answering()) as server:
            url = server.url
        async with pooled() as client:
            with pytest.raises(ConnectFailed):
                await client.post(url, b"{}")
            assert client.open_connections == 0

    run(main())


def test_a_path_that_is_not_ascii_goes_out_percent_encoded(run: Callable[..., None]) -> None:
    async def main() -> None:
        async with serving(keep_answering()) as server, pooled() as client:
            url = server.url.replace("/v1/", "/v1/modèle x/") + "?q=a%20b"
            assert await read(await client.post(url, b"{}")) == b'{"ok":true}'
        assert server.requests[0].split(b"\r\n")[0] == b"POST /v1/mod%C3%A8le%20x/chat/completions?q=a%20b HTTP/1.1"

    run(main())
