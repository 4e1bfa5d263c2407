"""The back door: an upstream answer larger than its provider's caps fails as a member error (a pool
degrades, a passthrough answers 502), counted after decompression, decoded in linear time, and the
memory it took goes back."""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.wire.sse import EventTooLarge, SSEDecoder
from tests.conftest import GatewayRunner
from tests.support.fakes import FakeUpstream, Seen, Send, answer, completion, judge_picking
from tests.support.procs import gateway_process

HI = [{"role": "user", "content": "hi"}]
MB = 1024 * 1024


def config(url: str, caps: str = "") -> str:
    return f"""
providers:
  up: {{type: openai, base_url: '{url}/v1'{caps}}}
models:
  big: {{provider: up}}
  a: {{provider: up}}
  j: {{provider: up}}
pools:
  p: {{mode: best-of, members: [a, big], judge: {{model: j}}, quorum: 1}}
"""


def body_of(pieces: Callable[[], Iterator[bytes]], ctype: bytes,
            headers: list[tuple[bytes, bytes]] | None = None) -> Any:
    """An upstream answering the bytes of ``pieces()``, afresh for every request."""

    async def run(seen: Seen, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", ctype), *(headers or [])]})
        for piece in pieces():
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    return run


def huge_json(total: int) -> Iterator[bytes]:
    """A chat.completion whose content is ``total`` bytes of text, sent in 1 MB pieces."""
    head, tail = json.dumps(completion("@@")).encode().split(b"@@")
    yield head
    for _ in range(total // MB):
        yield b"x" * MB
    yield tail


def one_long_line(total: int) -> Iterator[bytes]:
    """An SSE body whose first event never ends: ``total`` bytes without a line end."""
    yield b'data: {"choices": [{"index": 0, "delta": {"content": "'
    for _ in range(total // MB):
        yield b"y" * MB


def gzip_bomb(total: int) -> Iterator[bytes]:
    """``total`` bytes of zeros, gzip-compressed as they are made: about a thousandth of it on the wire."""
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = b"0" * MB
    yield z.compress(b'{"id": "x", "choices": [{"message": {"content": "')
    for _ in range(total // MB):
        out = z.compress(zeros)
        if out:
            yield out
    yield z.flush()


@pytest.mark.parametrize("stream", [False, True])
def test_an_oversized_answer_is_a_502_for_a_passthrough(gateway: GatewayRunner, fake: FakeUpstream,
                                                        stream: bool) -> None:
    fake.behaviours["big"] = (body_of(lambda: one_long_line(8 * MB), b"text/event-stream") if stream
                              else body_of(lambda: huge_json(8 * MB), b"application/json"))
    caps = ", max_response_bytes: 2000000, max_event_bytes: 100000"
    with gateway(config(fake.url, caps)) as (_, srv):
        resp = httpx.post(srv.url + "/v1/chat/completions", json={"model": "big", "messages": HI, "stream": stream},
                          timeout=30)
    assert resp.status_code == 502, resp.text
    err = resp.json()["error"]
    assert err["code"] == "upstream_response_too_large"
    if stream:
        assert err["message"] == ("upstream 'big' sent an event too large to accept: "
                                  "an event is longer than 100000 bytes")
    else:
        assert err["message"] == "upstream 'big' sent an answer larger than its limit of 2000000 bytes"


def test_a_gzip_bomb_is_stopped_at_the_decompressed_cap(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    fake.behaviours["big"] = body_of(lambda: gzip_bomb(200 * MB), b"application/json", [(b"content-encoding", b"gzip")])
    with gateway(config(fake.url, ", max_response_bytes: 1000000")) as (_, srv):
        resp = httpx.post(srv.url + "/v1/chat/completions", json={"model": "big", "messages": HI}, timeout=30)
    assert resp.status_code == 502
    assert resp.json()["error"]["message"] == "upstream 'big' sent an answer larger than its limit of 1000000 bytes"


def test_an_oversized_member_degrades_the_pool(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    fake.behaviours["big"] = body_of(lambda: one_long_line(8 * MB), b"text/event-stream")
    fake.behaviours["a"] = answer("small and fine")
    fake.behaviours["j"] = judge_picking(lambda _: True)
    with gateway(config(fake.url, ", max_event_bytes: 100000")) as (_, srv):
        resp = httpx.post(srv.url + "/v1/chat/completions", json={"model": "p", "messages": HI}, timeout=30)
    assert resp.status_code == 200, resp.text
    fusion = resp.json()["fusion"]
    assert fusion["degraded"] is True
    assert {m["model"]: m["error_type"] for m in fusion["members"]} == {"a": None, "big": "response_too_large"}
    assert resp.json()["choices"][0]["message"]["content"] == "small and fine"


def test_the_decoder_is_linear_and_bounded() -> None:
    # 64 MB in 64 KB pieces with no line end: every piece used to copy the whole buffer again
    decoder = SSEDecoder(max_event_bytes=128 * MB)
    piece = b"z" * 65536
    started = time.process_time()
    decoder.feed(b"data: ")
    for _ in range(1024):
        assert decoder.feed(piece) == []
    (event,) = decoder.feed(b"\n\n")
    linear_s = time.process_time() - started
    assert len(event.data) == 64 * MB
    # the same bytes fed as one piece cost the same order of time: no copy per piece
    started = time.process_time()
    SSEDecoder(max_event_bytes=128 * MB).feed(b"data: " + piece * 1024 + b"\n\n")
    assert linear_s < 20 * max(time.process_time() - started, 0.01)
    small = SSEDecoder(max_event_bytes=1000)
    with pytest.raises(EventTooLarge):
        for _ in range(10):
            small.feed(b"a" * 200)
    many_lines = SSEDecoder(max_event_bytes=1000)
    with pytest.raises(EventTooLarge):  # short lines, one long event
        many_lines.feed(b"data: xxxxxxxxxx\n" * 100)
    assert SSEDecoder(max_event_bytes=1000).feed(b"data: ok\n\n" * 500)[-1].data == "ok"


def error_code(resp: httpx.Response) -> str:
    """The error's code: from a 502, or in-band when keep-alives had already started a stream."""
    if resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream"):
        last = [x for x in resp.text.split("\n\n") if x.startswith("data: ")][-1]
        return str(json.loads(last[6:])["error"]["code"])
    assert resp.status_code == 502, resp.text
    return str(resp.json()["error"]["code"])


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_memory_goes_back_after_oversized_answers(tmp_path: Path, fake: FakeUpstream) -> None:
    """Defaults (32 MB answers, 4 MB events): RSS of a real gateway process is back within 20 MB."""
    fake.behaviours["big"] = body_of(lambda: huge_json(300 * MB), b"application/json")
    fake.behaviours["a"] = body_of(lambda: one_long_line(300 * MB), b"text/event-stream")
    fake.behaviours["j"] = body_of(lambda: gzip_bomb(300 * MB), b"application/json", [(b"content-encoding", b"gzip")])
    with gateway_process(config(fake.url), tmp_path) as gp, httpx.Client(base_url=gp.url, timeout=60) as client:
        warm = client.post("/v1/chat/completions", json={"model": "nothing", "messages": HI})
        assert warm.status_code == 404
        before = rss_kb(gp.proc.pid)
        for model, stream in [("big", False), ("a", True), ("j", False), ("big", True)]:
            resp = client.post("/v1/chat/completions", json={"model": model, "messages": HI, "stream": stream})
            assert error_code(resp) == "upstream_response_too_large", (model, stream, resp.text[:300])
        after = rss_kb(gp.proc.pid)
    assert after - before < 20 * 1024, (before, after)


def test_the_caps_have_sane_defaults() -> None:
    from gateway.config.providers import OpenAIProviderConfig

    cfg = OpenAIProviderConfig.model_validate({"type": "openai", "base_url": "http://127.0.0.1:1/v1"})
    assert (cfg.max_response_bytes, cfg.max_event_bytes) == (32 * MB, 4 * MB)


