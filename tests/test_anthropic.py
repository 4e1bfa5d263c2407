"""``type: anthropic``: OpenAI requests become Messages requests, Messages answers become OpenAI answers.

The upstream is a fake Anthropic API on a real loopback port; the client is the official openai SDK,
whose own types validate every answer. Request translation is asserted on what the fake received.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import GatewayRunner, sdk
from tests.support.fakes import sequence
from tests.support.native_fakes import (
    ANTHROPIC_OVERLOADED_EVENT,
    ANTHROPIC_TEXT,
    ANTHROPIC_THINKING,
    ANTHROPIC_TOOL_USE,
    NativeFake,
    anthropic_error,
    anthropic_events,
    anthropic_message,
    anthropic_stream,
    anthropic_tool_stream,
    assemble,
    native_fake,
    reply,
)

SECRET = "sk-ant-api03-operator-secret-0123456789"
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
def upstream() -> Iterator[NativeFake]:
    with native_fake() as fake:
        yield fake


def config(url: str, extra: str = "") -> str:
    return (
        "providers:\n"
        f"  an: {{type: anthropic, base_url: '{url}/v1', api_key: {SECRET}{extra}}}\n"
        "models:\n"
        "  claude: {provider: an, model: claude-x}\n"
    )


def post(url: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(url + "/v1/chat/completions", json={"model": "claude", **body}, timeout=20)


def stream_text(url: str, body: dict[str, Any]) -> str:
    with httpx.stream("POST", url + "/v1/chat/completions", json={"model": "claude", "stream": True, **body}) as r:
        assert r.status_code == 200
        return r.read().decode()


def test_text_answer_usage_with_cache_and_the_request_sent(gateway: GatewayRunner, upstream: NativeFake) -> None:
    upstream.behaviours["claude-x"] = reply(ANTHROPIC_TEXT)
    with gateway(config(upstream.url)) as (_, srv):
        resp = sdk(srv.url).chat.completions.create(
            model="claude",
            messages=[
                {"role": "system", "content": "Be brief."},
                {"role": "developer", "content": [{"type": "text", "text": "Answer in English."}]},
                {"role": "user", "content": "What is the capital"},
                {"role": "user", "content": [{"type": "text", "text": "of France?"}]},
            ],
            temperature=0.2,
            top_p=0.9,
            stop="\n\n",
            user="u-42",
            seed=7,  # dropped: Anthropic has no seed, and it cannot change what the answer means
            service_tier="auto",
        )
    assert resp.model == "claude" and resp.object == "chat.completion"
    assert resp.choices[0].message.content == "Paris is the capital of France."
    assert resp.choices[0].message.tool_calls is None
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None
    # Anthropic's input_tokens is only the uncached rest: the prompt is all three counts together.
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens, resp.usage.total_tokens) == (4225, 9, 4234)
    assert resp.usage.prompt_tokens_details is not None and resp.usage.prompt_tokens_details.cached_tokens == 3000

    (seen,) = upstream.requests_for("claude-x")
    assert seen.path == "/v1/messages"
    assert seen.headers["x-api-key"] == SECRET
    assert seen.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in seen.headers
    assert seen.body == {
        "model": "claude-x",
        "system": "Be brief.\n\nAnswer in English.",
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "What is the capital"}, {"type": "text", "text": "of France?"}],
            }
        ],
        "max_tokens": 4096,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop_sequences": ["\n\n"],
        "metadata": {"user_id": "u-42"},
    }


def test_max_tokens_comes_from_the_request_else_the_provider(gateway: GatewayRunner, upstream: NativeFake) -> None:
    upstream.behaviours["claude-x"] = reply(ANTHROPIC_TEXT)
    extra = ", max_tokens: 512, extra_body: {top_k: 40, max_tokens: 1}, headers: {anthropic-beta: beta-x}"
    with gateway(config(upstream.url, extra)) as (_, srv):
        client = sdk(srv.url)
        client.chat.completions.create(model="claude", messages=HI)  # type: ignore[arg-type]
        client.chat.completions.create(model="claude", messages=HI, max_tokens=100)  # type: ignore[arg-type]
        client.chat.completions.create(model="claude", messages=HI, max_completion_tokens=200)  # type: ignore[arg-type]
    sent = [s.body for s in upstream.requests_for("claude-x")]
    assert [b["max_tokens"] for b in sent] == [512, 100, 200]  # the translated request wins over extra_body
    assert all(b["top_k"] == 40 for b in sent)
    assert upstream.requests_for("claude-x")[0].headers["anthropic-beta"] == "beta-x"


def test_history_with_images_tool_calls_and_results(gateway: GatewayRunner, upstream: NativeFake) -> None:
    upstream.behaviours["claude-x"] = reply(ANTHROPIC_TOOL_USE)
    weather = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather",
            "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
        },
    }
    clock = {"type": "function", "function": {"name": "get_time"}}
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Where is this, and what is the weather there?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "high"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
            ],
        },
        {
            "role": "assistant",
            "content": "Let me check.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'},
                },
                {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": ""}},
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18°C and sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "14:05"}]},
        {"role": "user", "content": "Thanks! And tomorrow?"},
    ]
    with gateway(config(upstream.url)) as (_, srv):
        resp = sdk(srv.url).chat.completions.create(
            model="claude",
            messages=messages,  # type: ignore[arg-type]
            tools=[weather, clock],  # type: ignore[list-item]
            tool_choice="required",
            parallel_tool_calls=False,
        )
    (seen,) = upstream.requests_for("claude-x")
    assert seen.body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Where is this, and what is the weather there?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"location": "Paris"}},
                {"type": "tool_use", "id": "call_2", "name": "get_time", "input": {}},
            ],
        },
        {
            # both results and the next question: one user turn, results first
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "18°C and sunny"},
                {"type": "tool_result", "tool_use_id": "call_2", "content": "14:05"},
                {"type": "text", "text": "Thanks! And tomorrow?"},
            ],
        },
    ]
    assert seen.body["tools"] == [
        {"name": "get_weather", "description": "Current weather", "input_schema": weather["function"]["parameters"]},
        {"name": "get_time", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert seen.body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}

    msg = resp.choices[0].message
    assert resp.choices[0].finish_reason == "tool_calls"
    assert msg.content == "I'll look up the weather in San Francisco."
    assert msg.tool_calls is not None and len(msg.tool_calls) == 1
    call = msg.tool_calls[0]
    assert call.id == "toolu_01A09q90qw90lq917835lq9" and call.type == "function"
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {"location": "San Francisco, CA", "unit": "celsius"}  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("none", {"type": "none"}),
        ({"type": "function", "function": {"name": "get_time"}}, {"type": "tool", "name": "get_time"}),
    ],
)
def test_tool_choice(gateway: GatewayRunner, upstream: NativeFake, choice: Any, expected: dict[str, Any]) -> None:
    upstream.behaviours["claude-x"] = reply(ANTHROPIC_TEXT)
    tool = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}
    with gateway(config(upstream.url)) as (_, srv):
        assert post(srv.url, {"messages": HI, "tools": [tool], "tool_choice": choice}).status_code == 200
    assert upstream.requests_for("claude-x")[0].body["tool_choice"] == expected


def test_thinking_is_not_shown_but_is_counted(gateway: GatewayRunner, upstream: NativeFake) -> None:
    upstream.behaviours["claude-x"] = reply(ANTHROPIC_THINKING)
    with gateway(config(upstream.url)) as (_, srv):
        raw = post(srv.url, {"messages": [{"role": "user", "content": "27 * 453?"}]})
    resp = openai.types.chat.ChatCompletion.model_validate(raw.json())
    assert resp.choices[0].message.content == "27 * 453 = 12,231."
    assert "The user asks" not in raw.text and "EqQBCgIYAh" not in raw.text and "EmwKAhgB" not in raw.text
    assert resp.usage is not None and resp.usage.completion_tokens == 311  # thinking tokens are output tokens


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
    ],
)
def test_stop_reasons(gateway: GatewayRunner, upstream: NativeFake, stop_reason: str, finish: str) -> None:
    upstream.behaviours["claude-x"] = reply(
        anthropic_message([{"type": "text", "text": "Part"}], stop_reason=stop_reason)
    )
    upstream.behaviours["claude-s"] = anthropic_events(anthropic_stream(["Part"], stop_reason=stop_reason))
    cfg = config(upstream.url) + "  claude-s: {provider: an}\n"
    with gateway(cfg) as (_, srv):
        client = sdk(srv.url)
        plain = client.chat.completions.create(model="claude", messages=HI)  # type: ignore[arg-type]
        # (not the SDK's stream helper: it refuses to assemble an answer cut by the length limit)
        chunks = list(client.chat.completions.create(model="claude-s", messages=HI, stream=True))  # type: ignore[arg-type]
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert plain.choices[0].finish_reason == finish and finishes == [finish]
    assert plain.choices[0].message.content == text == "Part"


def test_stream_with_thinking_and_ping_becomes_standard_chunks(gateway: GatewayRunner, upstream: NativeFake) -> None:
    upstream.behaviours["claude-x"] = anthropic_events(
        anthropic_stream(["Paris is", " the capital", " of France."], thinking=True), interval=0.01
    )
    with gateway(config(upstream.url)) as (_, srv):
        final, chunks = assemble(
            sdk(srv.url).chat.completions.create(
                model="claude",
                messages=HI,  # type: ignore[arg-type]
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    assert chunks[0].choices[0].delta.role == "assistant"
    texts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert texts == ["Paris is", " the capital", " of France."]  # relayed piece by piece, thinking left out
    assert final.choices[0].message.content == "Paris is the capital of France."
    assert final.choices[0].finish_reason == "stop"
    assert len({c.id for c in chunks}) == 1 and all(c.model == "claude" for c in chunks)
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert all(c.usage is None and "usage" in c.model_fields_set for c in chunks[:-1])  # usage: null, as OpenAI
    usage = chunks[-1].usage
    assert (usage.prompt_tokens, usage.completion_tokens) == (472 + 1024, 15)  # message_delta's count is cumulative
    assert usage.prompt_tokens_details is not None and usage.prompt_tokens_details.cached_tokens == 1024
    (seen,) = upstream.requests_for("claude-x")
    assert seen.body["stream"] is True and "stream_options" not in seen.body


def test_stream_tool_use_becomes_tool_call_deltas(gateway: GatewayRunner, upstream: NativeFake) -> None:
    pieces = ['{"location": "San Fra', 'ncisco, CA", ', '"unit": "fahrenheit"}']
    upstream.behaviours["claude-x"] = anthropic_events(anthropic_tool_stream("get_weather", pieces))
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}}}
    with gateway(config(upstream.url)) as (_, srv):
        final, chunks = assemble(
            sdk(srv.url).chat.completions.create(model="claude", messages=HI, tools=[tool], stream=True)  # type: ignore[arg-type, list-item]
        )
    deltas = [c.choices[0].delta.tool_calls for c in chunks if c.choices and c.choices[0].delta.tool_calls]
    assert deltas[0] is not None and deltas[0][0].id == "toolu_01T1x1fJ34qAmk2tNTrN7Up6"
    assert deltas[0][0].function is not None and deltas[0][0].function.name == "get_weather"
    assert [d[0].function.arguments for d in deltas[1:] if d[0].function] == pieces
    msg = final.choices[0].message
    assert msg.content == "Let me check." and final.choices[0].finish_reason == "tool_calls"
    assert msg.tool_calls is not None and len(msg.tool_calls) == 1
    assert json.loads(msg.tool_calls[0].function.arguments) == {"location": "San Francisco, CA", "unit": "fahrenheit"}  # type: ignore[union-attr]


def test_mid_stream_error_ends_the_callers_stream_in_band(gateway: GatewayRunner, upstream: NativeFake) -> None:
    events = [*anthropic_stream(["Paris is", " the capital"])[:5], ANTHROPIC_OVERLOADED_EVENT]
    upstream.behaviours["claude-x"] = anthropic_events(events)
    with gateway(config(upstream.url)) as (_, srv):
        raw = stream_text(srv.url, {"messages": HI})
        with pytest.raises(openai.APIError):
            list(sdk(srv.url).chat.completions.create(model="claude", messages=HI, stream=True))  # type: ignore[arg-type]
    last = raw.rstrip().splitlines()[-1]
    assert "[DONE]" not in raw and '"finish_reason":"stop"' not in raw
    assert last.startswith('data: {"error":') and '"code":"upstream_overloaded"' in last
    assert len(upstream.requests_for("claude-x")) == 2  # text had gone out: never restarted


def test_overloaded_before_any_text_is_retried(gateway: GatewayRunner, upstream: NativeFake) -> None:
    first = [*anthropic_stream(["x"])[:1], ANTHROPIC_OVERLOADED_EVENT]
    upstream.behaviours["claude-x"] = sequence(anthropic_events(first), anthropic_events(anthropic_stream(["Fine."])))
    with gateway(config(upstream.url, ", retry: {backoff_base_s: 0.01}")) as (_, srv):
        final, _ = assemble(sdk(srv.url).chat.completions.create(model="claude", messages=HI, stream=True))  # type: ignore[arg-type]
    assert final.choices[0].message.content == "Fine."
    assert len(upstream.requests_for("claude-x")) == 2


@pytest.mark.parametrize("cut_after", [5, 8], ids=["mid-text", "after-message_delta"])
def test_stream_ending_without_message_stop_is_cut(
    gateway: GatewayRunner, upstream: NativeFake, cut_after: int
) -> None:
    events = anthropic_stream(["Paris is", " the capital", " of France."])
    assert events[cut_after - 1]["type"] in ("content_block_delta", "message_delta")
    upstream.behaviours["claude-x"] = anthropic_events(events[:cut_after])
    with gateway(config(upstream.url)) as (_, srv):
        raw = stream_text(srv.url, {"messages": HI})
    assert "[DONE]" not in raw and '"finish_reason":"stop"' not in raw
    assert raw.rstrip().splitlines()[-1].startswith('data: {"error":')


@pytest.mark.parametrize(
    ("status", "kind", "expected", "code"),
    [
        (529, "overloaded_error", 503, "upstream_overloaded"),
        (429, "rate_limit_error", 429, "upstream_rate_limited"),
        (401, "authentication_error", 502, "upstream_auth_failed"),
        (500, "api_error", 502, "upstream_error"),
    ],
)
def test_error_statuses_map_without_upstream_bodies(
    gateway: GatewayRunner, upstream: NativeFake, status: int, kind: str, expected: int, code: str
) -> None:
    body = anthropic_error(kind, f"internal detail hunter2, key {SECRET}")
    upstream.behaviours["claude-x"] = reply(body, status=status, headers={"retry-after": "7"} if status == 429 else {})
    with gateway(config(upstream.url, ", retry: {max_retries: 0}")) as (_, srv):
        resp = post(srv.url, {"messages": HI})
        streamed = post(srv.url, {"messages": HI, "stream": True})
    for r in (resp, streamed):
        assert r.status_code == expected and r.json()["error"]["code"] == code
        assert "hunter2" not in r.text and SECRET not in r.text
    if status == 429:
        assert resp.headers["retry-after"] == "7"


def test_400_keeps_a_scrubbed_reason(gateway: GatewayRunner, upstream: NativeFake) -> None:
    body = anthropic_error(
        "invalid_request_error", f"max_tokens: 999999 > 64000, the maximum for this model ({SECRET})"
    )
    upstream.behaviours["claude-x"] = reply(body, status=400)
    with gateway(config(upstream.url)) as (_, srv):
        resp = post(srv.url, {"messages": HI, "max_tokens": 999999})
    err = resp.json()["error"]
    assert resp.status_code == 400 and err["type"] == "invalid_request_error"
    assert "max_tokens: 999999 > 64000" in err["message"] and SECRET not in resp.text


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"logit_bias": {"50256": -100}}, "logit_bias"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"functions": [{"name": "f", "parameters": {}}]}, "functions"),
        ({"reasoning_effort": "high"}, "reasoning_effort"),
        (
            {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "AA=="}}]}]},
            "messages[0].content[0].type",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "data:image/bmp;base64,Qk0="}}],
                    }
                ]
            },
            "messages[0].content[0].image_url.url",
        ),
        (
            {
                "messages": [
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1]"}}],
                    }
                ]
            },
            "messages[0].tool_calls[0].function.arguments",
        ),
    ],
)
def test_what_anthropic_cannot_honour_is_a_clear_400(
    gateway: GatewayRunner, upstream: NativeFake, extra: dict[str, Any], param: str
) -> None:
    upstream.behaviours["claude-x"] = reply(ANTHROPIC_TEXT)
    with gateway(config(upstream.url)) as (_, srv):
        resp = post(srv.url, {"messages": HI, **extra})
        streamed = post(srv.url, {"messages": HI, "stream": True, **extra})
    for r in (resp, streamed):
        assert r.status_code == 400, r.text
        err = r.json()["error"]
        assert (err["type"], err["code"], err["param"]) == ("invalid_request_error", "unsupported_parameter", param)
        assert "model 'claude' (anthropic)" in err["message"]
    assert upstream.seen == []  # refused before any upstream call


def test_json_schema_is_a_forced_tool_whose_input_is_the_content(gateway: GatewayRunner, upstream: NativeFake) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
        "required": ["city", "population"],
        "additionalProperties": False,
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "city_facts", "strict": True, "schema": schema}}
    answer = anthropic_message(
        [
            {
                "type": "tool_use",
                "id": "toolu_01",
                "name": "city_facts",
                "input": {"city": "Paris", "population": 2102650},
            }
        ],
        stop_reason="tool_use",
    )
    pieces = ['{"city": "Pa', 'ris", "population": 2102650}']
    upstream.behaviours["claude-x"] = reply(answer)
    upstream.behaviours["claude-s"] = anthropic_events(anthropic_tool_stream("city_facts", pieces, forced=True))
    with gateway(config(upstream.url) + "  claude-s: {provider: an}\n") as (_, srv):
        client = sdk(srv.url)
        plain = client.chat.completions.create(model="claude", messages=HI, response_format=fmt)  # type: ignore[arg-type]
        streamed, _ = assemble(
            client.chat.completions.create(model="claude-s", messages=HI, response_format=fmt, stream=True)  # type: ignore[arg-type]
        )
    for resp in (plain, streamed):
        msg = resp.choices[0].message
        assert json.loads(msg.content or "") == {"city": "Paris", "population": 2102650}
        assert msg.tool_calls is None and resp.choices[0].finish_reason == "stop"
    assert streamed.choices[0].message.content == "".join(pieces)
    sent = upstream.requests_for("claude-x")[0].body
    assert sent["tools"] == [
        {"name": "city_facts", "description": sent["tools"][0]["description"], "input_schema": schema}
    ]
    assert sent["tool_choice"] == {"type": "tool", "name": "city_facts"}
    assert "response_format" not in sent


def test_cache_writes_and_reads_are_priced_apart(gateway: GatewayRunner, upstream: NativeFake) -> None:
    upstream.behaviours["claude-x"] = reply(ANTHROPIC_TEXT)  # 25 fresh, 1200 written, 3000 read, 9 out
    priced = config(upstream.url).replace(
        "model: claude-x}",
        "model: claude-x, price: {input: 3, output: 15, cached_input: 0.30, cache_write_input: 3.75}}",
    )
    with gateway(priced) as (_, srv):
        resp = post(srv.url, {"messages": [{"role": "user", "content": "hi"}]})
    details = resp.json()["usage"]["prompt_tokens_details"]
    assert details == {"cached_tokens": 3000, "cache_write_tokens": 1200}
    # by hand: 25 x 3 + 3000 x 0.30 + 1200 x 3.75 + 9 x 15 = 75 + 900 + 4500 + 135 = 5610 micro-USD
    assert resp.headers["x-fusion-cost-usd"] == "0.00561"
