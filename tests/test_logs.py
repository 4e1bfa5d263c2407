"""Logs as a real ``fusion-gateway serve`` process writes them: every line one JSON object."""

from __future__ import annotations

import json
import logging
import re
import socket
from pathlib import Path
from typing import Any

import httpx

from tests.support.fakes import FakeUpstream, answer, judge_picking
from tests.support.procs import gateway_process
from tests.support.servers import wait_until

HI = [{"role": "user", "content": "hello"}]
KEY = "sk-logs-0123456789"
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def test_every_line_of_a_serving_process_is_json(tmp_path: Path, fake: FakeUpstream) -> None:
    fake.behaviours["a"] = answer("fine", usage={"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14})
    fake.behaviours["b"] = answer("also fine", usage={"prompt_tokens": 11, "completion_tokens": 4, "total_tokens": 15})
    fake.behaviours["j"] = judge_picking(lambda text: "also" in text)
    config = f"""
auth:
  keys: [{{name: app, key: {KEY}, pools: ["*"], models: ["*"]}}]
providers:
  up: {{type: openai, base_url: '{fake.url}/v1', api_key: sk-up, retry: {{max_retries: 0}}}}
models:
  a: {{provider: up, price: {{input: 1, output: 1}}}}
  b: {{provider: up, price: {{input: 1, output: 1}}}}
  j: {{provider: up}}
pools:
  p: {{mode: best-of, members: [a, b], judge: {{model: j}}}}
"""
    auth = {"authorization": f"Bearer {KEY}"}
    with gateway_process(config, tmp_path) as gw:
        direct = httpx.post(gw.url + "/v1/chat/completions", json={"model": "a", "messages": HI}, headers=auth)
        pooled = httpx.post(gw.url + "/v1/chat/completions", json={"model": "p", "messages": HI}, headers=auth)
        refused = httpx.post(gw.url + "/v1/chat/completions", json={"model": "a", "messages": HI})
        models = httpx.get(gw.url + "/v1/models", headers=auth)
        # not HTTP at all: the server itself complains, in its own words, as JSON
        with socket.create_connection(("127.0.0.1", gw.port)) as s:
            s.sendall(b"\x16\x03\x01 this is not http\r\n\r\n")
            s.recv(1024)
        assert wait_until(lambda: "Invalid HTTP request" in gw.log(), timeout=10)
    log = gw.log_path.read_text()  # after the process ended: shut-down lines included
    assert (direct.status_code, pooled.status_code, refused.status_code, models.status_code) == (200, 200, 401, 200)

    lines: list[dict[str, Any]] = []
    for raw in log.splitlines():
        lines.append(json.loads(raw))  # a line that is not JSON fails here, with its text
    for line in lines:
        assert ISO_UTC.fullmatch(line["ts"]), line
        assert {"level", "logger", "msg"} <= line.keys()
    server = [x["msg"] for x in lines if x["logger"].startswith("uvicorn")]
    assert any(m.startswith("Uvicorn running on http://127.0.0.1:") for m in server)
    assert "Application startup complete." in server and "Invalid HTTP request received." in server
    assert any(m.startswith("Finished server process") for m in server)

    requests = [x for x in lines if x["msg"] == "request"]
    by_model = {x.get("model"): x for x in requests if x["path"] == "/v1/chat/completions" and x["status"] == 200}
    one, fused = by_model["a"], by_model["p"]
    assert (one["method"], one["client"], one["key"]) == ("POST", "127.0.0.1", "app")
    assert (one["tokens_in"], one["tokens_out"]) == (11, 3)
    # a pool's tokens are every call it made: two members and the judge
    judged = len(fake.requests_for("j"))
    assert judged >= 1 and fused["winner"] == "b"
    assert (fused["tokens_in"], fused["tokens_out"]) == (22 + 300 * judged, 7 + 20 * judged)
    (denied,) = [x for x in requests if x["status"] == 401]
    assert denied["error"] == "invalid_api_key" and denied["client"] == "127.0.0.1"
    (listing,) = [x for x in requests if x["path"] == "/v1/models"]
    assert (listing["method"], listing["status"], listing["client"]) == ("GET", 200, "127.0.0.1")


def test_timestamps_are_iso_8601_utc_to_the_millisecond_across_second_boundaries() -> None:
    import io
    from datetime import UTC, datetime

    from gateway.books.logs import JsonLinesHandler, iso_utc

    handler = JsonLinesHandler(io.StringIO())
    for t in (0.0, 1764640279.0004, 1764640279.9996, 1764640280.5, 1764640279.25, 1798761599.999):
        expected = datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        assert handler.timestamp(t) == iso_utc(t) == expected, t


def test_request_lines_written_on_the_loop_go_out_together_in_order_and_at_exit() -> None:
    import asyncio
    import io

    from gateway.books.logs import JsonFormatter, JsonLinesHandler

    class Stream(io.StringIO):
        writes = 0

        def write(self, s: str) -> int:
            self.writes += 1
            return super().write(s)

    stream = Stream()
    handler = JsonLinesHandler(stream)
    handler.setFormatter(JsonFormatter())

    def lines() -> list[str]:
        return [json.loads(line)["msg"] for line in stream.getvalue().splitlines()]

    async def main() -> None:
        handler.write_line(b'{"msg": "one"}\n')
        handler.write_line(b'{"msg": "two"}\n')
        assert stream.getvalue() == ""  # the loop's pass is not over yet
        await asyncio.sleep(0)
        assert lines() == ["one", "two"] and stream.writes == 1  # together, in one write
        handler.write_line(b'{"msg": "three"}\n')
        # any other line writes what is collected first
        handler.emit(logging.LogRecord("x", logging.WARNING, __file__, 1, "four", None, None))
        assert lines() == ["one", "two", "three", "four"]
        handler.write_line(b'{"msg": "five"}\n')
        handler.flush()  # what logging.shutdown does at exit, when the loop may not run again
        assert lines()[-1] == "five"

    asyncio.run(main())
    handler.write_line(b'{"msg": "six"}\n')  # off the loop: written at once
    assert lines()[-1] == "six"
