"""Every error path answers the OpenAI envelope with the right status, and never leaks upstream bodies or keys."""

from __future__ import annotations

import time
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import GatewayRunner, fake_provider_yaml, sdk
from tests.support.fakes import (
    FakeUpstream,
    chunk,
    completion,
    drip,
    error_reply,
    hang,
    json_reply,
    sequence,
    sse_reply,
    text_chunks,
)

SIM = """
server: {max_body_bytes: 2048, max_messages: 5}
providers:
  sim: {type: simulator, profiles: {quick: {ttft_ms: 1, tokens_per_s: 5000}}}
models:
  quick: {provider: sim}
"""

SECRET = "sk-operator-secret-0123456789"


def fake_config(fake: FakeUpstream, extra: str = "") -> str:
    return "providers:\n" + fake_provider_yaml(fake.url, extra=extra) + "models:\n  m: {provider: up}\n"


def post(url: str, body: Any = None, *, content: bytes | None = None) -> httpx.Response:
    if content is not None:
        return httpx.post(url + "/v1/chat/completions", content=content, headers={"content-type": "application/json"})
    return httpx.post(url + "/v1/chat/completions", json=body, timeout=20)


def envelope(resp: httpx.Response) -> dict[str, Any]:
    data = resp.json()
    assert set(data) == {"error"}
    assert set(data["error"]) == {"message", "type", "param", "code"}
    return data["error"]  # type: ignore[no-any-return]


HI = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"messages": HI}, "model", "missing_required"),
        ({"model": 7, "messages": HI}, "model", "invalid_type"),
        ({"model": "quick"}, "messages", "missing_required"),
        ({"model": "quick", "messages": []}, "messages", "invalid_type"),
        ({"model": "quick", "messages": "hi"}, "messages", "invalid_type"),
        ({"model": "quick", "messages": [{"content": "hi"}]}, "messages[0].role", "missing_required"),
        ({"model": "quick", "messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role", "invalid_value"),
        ({"model": "quick", "messages": [{"role": "user", "content": 5}]}, "messages[0].content", "invalid_type"),
        ({"model": "quick", "messages": HI, "stream": "yes"}, "stream", "invalid_type"),
        ({"model": "quick", "messages": HI, "max_tokens": 0}, "max_tokens", "invalid_value"),
        ({"model": "quick", "messages": HI * 6}, "messages", "too_many_messages"),
        ({"model": "quick", "messages": HI, "api_base": "http://evil"}, "api_base", "forbidden_parameter"),
        (
            {"model": "quick", "messages": HI, "metadata": {"x": {"api_key": "k"}}},
            "metadata.x.api_key",
            "forbidden_parameter",
        ),
        ({"model": "quick", "messages": HI, "fusion": {"mode": "merge"}}, "fusion", "invalid_fusion_option"),
    ],
)
def test_bad_requests_get_400_with_param(gateway: GatewayRunner, body: dict[str, Any], param: str, code: str) -> None:
    with gateway(SIM) as (_, srv):
        resp = post(srv.url, body)
    assert resp.status_code == 400, resp.text
    err = envelope(resp)
    assert (err["type"], err["param"], err["code"]) == ("invalid_request_error", param, code)


def test_tool_parameters_named_like_credentials_are_fine(gateway: GatewayRunner) -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "login",
            "parameters": {"type": "object", "properties": {"api_key": {"type": "string"}}, "required": ["api_key"]},
        },
    }
    with gateway(SIM) as (_, srv):
        resp = post(srv.url, {"model": "quick", "messages": HI, "tools": [tool]})
    assert resp.status_code == 200, resp.text
    assert resp.json()["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "login"


def test_invalid_json_and_non_object(gateway: GatewayRunner) -> None:
    with gateway(SIM) as (_, srv):
        bad = post(srv.url, content=b'{"model": "quick", "messages": [')
        arr = post(srv.url, content=b"[1, 2]")
    assert bad.status_code == 400 and envelope(bad)["code"] == "invalid_json"
    assert arr.status_code == 400 and envelope(arr)["code"] == "invalid_type"


def test_unknown_model_is_404_model_not_found(gateway: GatewayRunner) -> None:
    with gateway(SIM) as (_, srv):
        resp = post(srv.url, {"model": "gpt-9", "messages": HI})
        with pytest.raises(openai.NotFoundError) as info:
            sdk(srv.url).chat.completions.create(model="gpt-9", messages=HI)  # type: ignore[arg-type]
    err = envelope(resp)
    assert resp.status_code == 404 and err["code"] == "model_not_found" and err["param"] == "model"
    assert "gpt-9" in err["message"]
    assert info.value.code == "model_not_found"


def test_oversized_body_is_413_before_any_work(gateway: GatewayRunner) -> None:
    with gateway(SIM) as (_, srv):
        resp = post(srv.url, {"model": "quick", "messages": [{"role": "user", "content": "x" * 5000}]})

        def chunks() -> Any:  # no content-length: the limit must hold while the body streams in
            yield b'{"model": "quick", "messages": [{"role": "user", "content": "'
            for _ in range(10):
                yield b"y" * 500
            yield b'"}]}'

        streamed = httpx.post(srv.url + "/v1/chat/completions", content=chunks())
    assert resp.status_code == 413 and envelope(resp)["type"] == "invalid_request_error"
    assert streamed.status_code == 413


def test_wrong_method_and_unknown_route(gateway: GatewayRunner) -> None:
    with gateway(SIM) as (_, srv):
        get = httpx.get(srv.url + "/v1/chat/completions")
        missing = httpx.get(srv.url + "/v1/nothing")
    assert get.status_code == 405 and envelope(get)["code"] == "method_not_allowed"
    assert missing.status_code == 404 and envelope(missing)["type"] == "invalid_request_error"


# ------------------------------------------------------------------ upstream failures


@pytest.mark.parametrize(
    ("upstream", "status", "code"),
    [
        (500, 502, "upstream_error"),
        (503, 503, "upstream_overloaded"),
        (404, 502, "upstream_not_found"),
    ],
)
def test_upstream_errors_map_without_their_bodies(
    gateway: GatewayRunner, fake: FakeUpstream, upstream: int, status: int, code: str
) -> None:
    fake.behaviours["m"] = error_reply(upstream, "internal detail: db password hunter2")
    with gateway(fake_config(fake, ", retry: {max_retries: 0}")) as (_, srv):
        resp = post(srv.url, {"model": "m", "messages": HI})
    err = envelope(resp)
    assert resp.status_code == status and err["code"] == code
    assert "hunter2" not in resp.text and SECRET not in resp.text


def test_upstream_401_is_502_and_never_echoes_the_key(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    fake.behaviours["m"] = error_reply(401, f"Incorrect API key provided: {SECRET}")
    with gateway(fake_config(fake)) as (_, srv):
        resp = post(srv.url, {"model": "m", "messages": HI})
    assert resp.status_code == 502
    assert envelope(resp)["code"] == "upstream_auth_failed"
    assert SECRET not in resp.text and "sk-" not in resp.text
    assert len(fake.requests_for("m")) == 1  # 4xx is never retried


def test_upstream_400_is_a_400_with_a_scrubbed_reason(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    fake.behaviours["m"] = error_reply(400, f"This model's maximum context length is 8192 tokens (key {SECRET})")
    with gateway(fake_config(fake)) as (_, srv):
        resp = post(srv.url, {"model": "m", "messages": HI})
    err = envelope(resp)
    assert resp.status_code == 400 and err["type"] == "invalid_request_error"
    assert "maximum context length is 8192 tokens" in err["message"]
    assert SECRET not in resp.text
    assert len(fake.requests_for("m")) == 1


def test_429_is_retried_honouring_retry_after(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    fake.behaviours["m"] = sequence(error_reply(429, headers={"retry-after": "0.3"}), json_reply(completion("fine")))
    with gateway(fake_config(fake)) as (_, srv):
        t0 = time.monotonic()
        resp = post(srv.url, {"model": "m", "messages": HI})
        elapsed = time.monotonic() - t0
    assert resp.status_code == 200 and resp.json()["choices"][0]["message"]["content"] == "fine"
    first, second = fake.requests_for("m")
    assert second.started - first.started >= 0.3  # waited as told
    assert elapsed < 5


def test_429_retry_after_beyond_the_deadline_is_not_waited_for(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    fake.behaviours["m"] = error_reply(429, headers={"retry-after": "30"})
    with gateway(fake_config(fake, ", timeouts: {total_s: 2}")) as (_, srv):
        t0 = time.monotonic()
        resp = post(srv.url, {"model": "m", "messages": HI})
    assert resp.status_code == 429 and resp.headers["retry-after"] == "30"
    assert time.monotonic() - t0 < 1.5
    assert len(fake.requests_for("m")) == 1


def test_unreachable_upstream_is_502(gateway: GatewayRunner) -> None:
    config = (
        "providers:\n  dead: {type: openai, base_url: 'http://127.0.0.1:9/v1',\n"
        "         retry: {max_retries: 1, backoff_base_s: 0.01}}\n"
        "models:\n  m: {provider: dead}\n"
    )
    with gateway(config) as (_, srv):
        resp = post(srv.url, {"model": "m", "messages": HI})
    assert resp.status_code == 502 and envelope(resp)["code"] == "upstream_unreachable"


def test_hung_upstream_hits_the_first_byte_timeout_of_a_stream(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    fake.behaviours["m"] = hang()
    with gateway(fake_config(fake, ", timeouts: {first_byte_s: 0.4, total_s: 30}")) as (_, srv):
        t0 = time.monotonic()
        resp = post(srv.url, {"model": "m", "messages": HI, "stream": True})
        elapsed = time.monotonic() - t0
    assert resp.status_code == 504 and envelope(resp)["code"] == "upstream_timeout"
    assert 0.35 < elapsed < 2


def test_hung_upstream_hits_the_wall_clock_of_a_json_call(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    # A non-streamed answer's first byte only comes when the whole answer is done: only total_s applies.
    fake.behaviours["m"] = hang()
    with gateway(fake_config(fake, ", timeouts: {first_byte_s: 0.2, total_s: 0.8}")) as (_, srv):
        t0 = time.monotonic()
        resp = post(srv.url, {"model": "m", "messages": HI})
        elapsed = time.monotonic() - t0
    assert resp.status_code == 504 and envelope(resp)["code"] == "upstream_timeout"
    assert 0.75 < elapsed < 2.5


def test_a_drip_feeding_upstream_cannot_outlive_the_wall_clock(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    fake.behaviours["m"] = drip(0.1)  # a byte every 100 ms: a per-read timeout would never fire
    with gateway(fake_config(fake, ", timeouts: {total_s: 1}")) as (_, srv):
        t0 = time.monotonic()
        with pytest.raises(openai.APIError):
            list(sdk(srv.url).chat.completions.create(model="m", messages=HI, stream=True))  # type: ignore[arg-type]
        assert time.monotonic() - t0 < 2.5
        t0 = time.monotonic()
        resp = post(srv.url, {"model": "m", "messages": HI})
    assert resp.status_code == 504
    assert time.monotonic() - t0 < 2.5


def test_error_before_the_first_byte_of_a_stream_keeps_its_status(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    fake.behaviours["m"] = error_reply(400, "bad tool schema")
    with gateway(fake_config(fake)) as (_, srv):
        resp = post(srv.url, {"model": "m", "messages": HI, "stream": True})
        with pytest.raises(openai.BadRequestError):
            list(sdk(srv.url).chat.completions.create(model="m", messages=HI, stream=True))  # type: ignore[arg-type]
    assert resp.status_code == 400
    assert resp.headers["content-type"].startswith("application/json")
    assert "bad tool schema" in envelope(resp)["message"]


def _stream_text(url: str) -> str:
    with httpx.stream("POST", url + "/v1/chat/completions", json={"model": "m", "messages": HI, "stream": True}) as r:
        assert r.status_code == 200
        return r.read().decode()


def test_stream_dying_after_the_200_ends_in_band_without_done(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    events = [chunk({"role": "assistant", "content": ""}), chunk({"content": "The capital "})]
    fake.behaviours["m"] = sse_reply(events, done=False)  # no finish_reason, no [DONE]: a cut stream
    with gateway(fake_config(fake)) as (_, srv):
        raw = _stream_text(srv.url)
        with pytest.raises(openai.APIError):
            list(sdk(srv.url).chat.completions.create(model="m", messages=HI, stream=True))  # type: ignore[arg-type]
    assert "[DONE]" not in raw
    assert '"finish_reason":"stop"' not in raw
    last = [line for line in raw.splitlines() if line.startswith("data: ")][-1]
    assert '"error"' in last and "hunter" not in last


def test_upstream_in_band_error_is_relayed_as_an_error(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    events = [chunk({"role": "assistant", "content": "Hi"}), {"error": {"message": "overloaded, secret hunter2"}}]
    fake.behaviours["m"] = sse_reply(events, done=False)
    with gateway(fake_config(fake)) as (_, srv):
        raw = _stream_text(srv.url)
    assert "[DONE]" not in raw and "hunter2" not in raw
    assert raw.rstrip().splitlines()[-1].startswith('data: {"error":')


def test_stream_without_done_but_finished_is_fine(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    fake.behaviours["m"] = sse_reply(text_chunks("All good."), done=False)
    with gateway(fake_config(fake)) as (_, srv):
        raw = _stream_text(srv.url)
    assert raw.rstrip().endswith("data: [DONE]")


def test_redirects_are_not_followed(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    fake.behaviours["m"] = json_reply({}, status=302, headers={"location": "http://169.254.169.254/"})
    with gateway(fake_config(fake)) as (_, srv):
        resp = post(srv.url, {"model": "m", "messages": HI})
    assert resp.status_code == 502 and envelope(resp)["code"] == "upstream_protocol_error"
    assert len(fake.seen) == 1
