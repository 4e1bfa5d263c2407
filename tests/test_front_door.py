"""The front door of a real ``fusion-gateway serve`` process, probed with raw sockets: connection limit,
head and body read timeouts, idle keep-alive timeout, head size limit."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.procs import GatewayProcess, gateway_process

CONFIG = """
server:
  limits: {max_connections: 20, header_read_timeout_s: 1.0, body_read_timeout_s: 1.0, idle_timeout_s: 1,
           max_header_bytes: 8192}
providers:
  sim: {type: simulator, profiles: {m: {ttft_ms: 1, tokens_per_s: 50000}}}
models:
  m: {provider: sim}
"""

BODY = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()


@pytest.fixture(scope="module")
def gp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    with gateway_process(CONFIG, tmp_path_factory.mktemp("front")) as proc:
        yield proc


def connect(gp: GatewayProcess) -> socket.socket:
    return socket.create_connection(("127.0.0.1", gp.port), timeout=10)


def read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes the connection."""
    out = b""
    while True:
        data = sock.recv(65536)
        if not data:
            return out
        out += data


def status_and_error(raw: bytes) -> tuple[int, dict[str, str]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(body)["error"]


def test_a_head_sent_a_byte_at_a_time_gets_408(gp: GatewayProcess) -> None:
    with connect(gp) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n")
        started = time.monotonic()
        try:
            for _ in range(40):  # one byte every 0.1 s: never the end of the head
                sock.sendall(b"x")
                time.sleep(0.1)
        except OSError:
            pass  # the server closed on us: expected
        answer = read_all(sock)
        waited = time.monotonic() - started
    status, err = status_and_error(answer)
    assert status == 408 and err["message"] == "the request head did not arrive within 1.0 s"
    assert b"connection: close" in answer
    assert waited < 4


def test_a_body_shorter_than_its_content_length_gets_408(gp: GatewayProcess) -> None:
    with connect(gp) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                     b"content-length: %d\r\n\r\n" % (len(BODY) + 10) + BODY)
        status, err = status_and_error(read_all(sock))
    assert status == 408 and err["message"] == "the request body did not arrive within 1.0 s"


def test_a_head_over_the_limit_gets_431(gp: GatewayProcess) -> None:
    with connect(gp) as sock:
        sock.sendall(b"GET /livez HTTP/1.1\r\nhost: x\r\n")
        try:
            for _ in range(64):
                sock.sendall(b"x-filler: " + b"a" * 1000 + b"\r\n")
        except OSError:
            pass
        status, err = status_and_error(read_all(sock))
    assert status == 431 and err["message"] == "the request head is larger than 8192 bytes"


def test_silent_and_idle_connections_are_closed(gp: GatewayProcess) -> None:
    with connect(gp) as silent, connect(gp) as kept:
        kept.sendall(b"GET /livez HTTP/1.1\r\nhost: x\r\n\r\n")
        answer = b""
        while not answer.endswith(b'{"status":"ok"}'):
            answer += kept.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        assert read_all(silent) == b""  # never said anything: closed without a word
        assert read_all(kept) == b""  # kept alive, then idle: closed
        assert time.monotonic() - started < 4


def test_livez_answers_while_the_connection_limit_holds(gp: GatewayProcess) -> None:
    pid = gp.proc.pid
    fds_before = len(os.listdir(f"/proc/{pid}/fd"))
    idle = [connect(gp) for _ in range(60)]  # three times the limit, saying nothing
    try:
        time.sleep(0.3)
        live = httpx.get(gp.url + "/livez", timeout=5)
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        chat = httpx.post(gp.url + "/v1/chat/completions", content=BODY, timeout=10)
    finally:
        for sock in idle:
            sock.close()
    assert live.status_code == 200
    assert chat.status_code == 200
    assert fds - fds_before <= 21  # the limit, not the 60 that were opened


def test_the_limits_have_safe_defaults() -> None:
    from gateway.config.server import ServerLimits

    d = ServerLimits()
    assert (d.max_connections, d.header_read_timeout_s, d.body_read_timeout_s, d.idle_timeout_s,
            d.max_header_bytes) == (1000, 10.0, 60.0, 5, 32 * 1024)


def test_serve_raises_its_open_file_limit_to_the_hard_limit(gp: GatewayProcess) -> None:
    line = next(x for x in Path(f"/proc/{gp.proc.pid}/limits").read_text().splitlines()
                if x.startswith("Max open files"))
    soft, hard = line.split()[3:5]
    assert soft == hard or (hard == "unlimited" and soft == "65536")
