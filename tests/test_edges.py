"""Smaller hardening: a connection dropped before any answer is retried, a silent passthrough stream is
kept alive, 503 answers say when to retry, and a limited key cannot enumerate names."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from tests.conftest import GatewayRunner
from tests.support.fakes import FakeUpstream, completion, error_reply, sse_reply, text_chunks

HI = [{"role": "user", "content": "hi"}]


@contextmanager
def drops_first_connection() -> Iterator[tuple[str, list[int]]]:
    """A raw HTTP upstream: the first connection is closed after the request arrives, with no byte of an
    answer; later ones get a completion. Yields its base URL and the count of connections."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    seen = [0]
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                seen[0] += 1
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                while len(body) < length:
                    body += conn.recv(65536)
                if seen[0] == 1:
                    continue  # closed: not a byte of an answer
                payload = json.dumps(completion("second time lucky")).encode()
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n"
                             b"content-length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", seen
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def test_a_connection_closed_before_any_answer_is_retried(gateway: GatewayRunner) -> None:
    with drops_first_connection() as (url, seen):
        config = (f"providers:\n  up: {{type: openai, base_url: '{url}/v1', retry: {{max_retries: 1, "
                  "backoff_base_s: 0.01}}\nmodels:\n  m: {provider: up}\n")
        with gateway(config) as (_, srv):
            resp = httpx.post(srv.url + "/v1/chat/completions", json={"model": "m", "messages": HI}, timeout=20)
    assert resp.status_code == 200, resp.text
    assert resp.json()["choices"][0]["message"]["content"] == "second time lucky"
    assert seen[0] == 2


def test_a_silent_passthrough_stream_is_kept_alive(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    fake.behaviours["m"] = sse_reply(text_chunks("late but here"), first_delay=1.2)
    config = (f"server: {{keepalive_s: 0.3}}\nproviders:\n  up: {{type: openai, base_url: '{fake.url}/v1'}}\n"
              "models:\n  m: {provider: up}\n")
    with gateway(config) as (_, srv), httpx.stream(
        "POST", srv.url + "/v1/chat/completions", json={"model": "m", "messages": HI, "stream": True}, timeout=20
    ) as resp:
        body = resp.read()
    assert resp.status_code == 200
    before_data = body.split(b"data: ", 1)[0]
    assert before_data.count(b": fusion keep-alive\n\n") >= 2, body[:200]
    assert body.endswith(b"data: [DONE]\n\n")


def test_503_answers_carry_retry_after(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    fake.behaviours["m"] = error_reply(503, "overloaded")
    fake.behaviours["n"] = error_reply(503, "overloaded", headers={"retry-after": "7"})
    config = (f"providers:\n  up: {{type: openai, base_url: '{fake.url}/v1', retry: {{max_retries: 0}}}}\n"
              "models:\n  m: {provider: up}\n  n: {provider: up}\n"
              "pools:\n  p: {mode: best-of, members: [m, m], judge: {model: m}}\n")
    with gateway(config) as (_, srv):
        answers = {model: httpx.post(srv.url + "/v1/chat/completions", json={"model": model, "messages": HI})
                   for model in ("m", "n", "p")}
    assert {m: (r.status_code, r.headers.get("retry-after")) for m, r in answers.items()} == {
        "m": (503, "1"), "n": (503, "7"), "p": (503, "1")}


def test_the_gateways_own_503s_carry_retry_after() -> None:
    from gateway.app import create_app
    from gateway.config import parse_config
    from gateway.wire.errors import ServiceUnavailable
    from tests.support.servers import serving

    assert ServiceUnavailable("the gateway is shutting down; retry the request").headers() == {"retry-after": "1"}
    app = create_app(parse_config("providers:\n  sim: {type: simulator}\nmodels:\n  m: {provider: sim}\n", "t.yaml"))
    with serving(app, lifespan="off") as srv:  # never started: not ready
        ready = httpx.get(srv.url + "/readyz")
    assert (ready.status_code, ready.headers.get("retry-after")) == (503, "1")
