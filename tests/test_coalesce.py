"""The HTTP server's writes: one send per loop iteration, in order, nothing lost at close."""

from __future__ import annotations

import asyncio
import socket

import pytest

from gateway.wire.coalesce import CoalescingHttpToolsProtocol, CoalescingTransport
from tests.support.servers import serving


class _Recorder:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "write after close"
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


@pytest.mark.anyio
async def test_writes_of_one_iteration_go_out_as_one() -> None:
    real = _Recorder()
    t = CoalescingTransport(real, asyncio.get_running_loop())  # type: ignore[arg-type]
    t.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    t.write(b"{}")
    assert real.writes == []  # nothing sent yet: the iteration is not over
    await asyncio.sleep(0)
    assert real.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
    t.write(b"next")
    await asyncio.sleep(0)
    assert real.writes[1:] == [b"next"]
    assert t.get_extra_info("peername") == "info:peername"  # everything else is the real transport's


@pytest.mark.anyio
async def test_close_sends_what_was_written_first() -> None:
    real = _Recorder()
    t = CoalescingTransport(real, asyncio.get_running_loop())  # type: ignore[arg-type]
    t.write(b"last words")
    t.close()
    assert real.writes == [b"last words"] and real.closed
    await asyncio.sleep(0)  # the scheduled flush finds nothing more to send
    assert real.writes == [b"last words"]


@pytest.mark.anyio
async def test_a_half_close_sends_what_was_written_first() -> None:
    real = _Recorder()
    eofs: list[int] = []
    real.write_eof = lambda: eofs.append(len(real.writes))  # type: ignore[attr-defined]
    t = CoalescingTransport(real, asyncio.get_running_loop())  # type: ignore[arg-type]
    t.write(b"HTTP/1.1 408 Request Timeout\r\n\r\n")
    t.write_eof()
    assert real.writes == [b"HTTP/1.1 408 Request Timeout\r\n\r\n"] and eofs == [1]


@pytest.mark.parametrize("body_size", [2, 300_000])
def test_a_served_response_arrives_whole(body_size: int) -> None:
    """Through the real server: headers and body intact, small and large, keep-alive reused."""
    body = b"x" * body_size

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    with (
        serving(app, lifespan="off", http=CoalescingHttpToolsProtocol) as srv,
        socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock,
    ):
        for _ in range(2):  # the second request on the same kept-alive connection
            sock.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            data = b""
            while b"\r\n\r\n" not in data or not data.endswith(body):
                chunk = sock.recv(65536)
                assert chunk, "connection closed early"
                data += chunk
            head, _, rest = data.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200") and rest == body
