"""``type: gemini``: OpenAI requests become generateContent requests, Gemini answers become OpenAI answers.

The upstream is a fake Gemini API on a real loopback port; the client is the official openai SDK,
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
from tests.support.native_fakes import (
    GEMINI_FUNCTION_CALL,
    GEMINI_PROMPT_BLOCKED,
    GEMINI_SAFETY,
    GEMINI_TEXT,
    GEMINI_THINKING_CACHED,
    NativeFake,
    assemble,
    gemini_error,
    gemini_events,
    gemini_response,
    gemini_stream,
    native_fake,
    reply,
)

SECRET = "AIzaSyOperatorSecret0123456789abcdefgh"
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
def upstream() -> Iterator[NativeFake]:
    with native_fake() as fake:
        yield fake


def config(url: str, extra: str = "") -> str:
    return (
        "providers:\n"
        f"  ge: {{type: gemini, base_url: '{url}/v1beta', api_key: {SECRET}{extra}}}\n"
        "models:\n"
        "  gem: {provider: ge, model: gemini-x}\n"
    )


def post(url: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(url + "/v1/chat/completions", json={"model": "gem", **body}, timeout=20)


def stream_text(url: str, body: dict[str, Any]) -> str:
    with httpx.stream("POST", url + "/v1/chat/completions", json={"model": "gem", "stream": True, **body}) as r:
        assert r.status_code == 200
        return r.read().decode()


def test_text_answer_and_the_request_sent(gateway: GatewayRunner, upstream: NativeFake) -> None:
    upstream.behaviours["gemini-x"] = reply(GEMINI_TEXT)
    with gateway(config(upstream.url)) as (_, srv):
        resp = sdk(srv.url).chat.completions.create(
            model="gem",
            messages=[
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "What is the capital of France?"},
                {"role": "assistant", "content": "Paris."},
                {"role": "developer", "content": "Answer in English."},
                {"role": "user", "content": "And"},
                {"role": "user", "content": [{"type": "text", "text": "of Italy?"}]},
            ],
            max_completion_tokens=300,
            temperature=0.3,
            top_p=0.95,
            stop=["END"],
            seed=11,
            presence_penalty=0.1,
            frequency_penalty=0.2,
            user="u-1",  # dropped: Gemini has no such field, and it cannot change the answer
        )
    assert resp.model == "gem" and resp.choices[0].message.content == "Paris is the capital of France."
    assert resp.choices[0].finish_reason == "stop" and resp.choices[0].message.tool_calls is None
    assert resp.usage is not None and (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (12, 8)

    (seen,) = upstream.requests_for("gemini-x")
    assert (seen.path, seen.method, seen.query) == ("/v1beta/models/gemini-x:generateContent", "generateContent", "")
    assert seen.headers["x-goog-api-key"] == SECRET and "authorization" not in seen.headers
    assert seen.body == {
        "systemInstruction": {"parts": [{"text": "Be brief.\n\nAnswer in English."}]},
        "contents": [
            {"role": "user", "parts": [{"text": "What is the capital of France?"}]},
            {"role": "model", "parts": [{"text": "Paris."}]},
            {"role": "user", "parts": [{"text": "And"}, {"text": "of Italy?"}]},
        ],
        "generationConfig": {
            "maxOutputTokens": 300,
            "temperature": 0.3,
            "topP": 0.95,
            "stopSequences": ["END"],
            "seed": 11,
            "presencePenalty": 0.1,
            "frequencyPenalty": 0.2,
        },
    }


def test_extra_body_and_max_tokens(gateway: GatewayRunner, upstream: NativeFake) -> None:
    upstream.behaviours["gemini-x"] = reply(GEMINI_TEXT)
    extra = (
        ", extra_body: {safetySettings: [{category: HARM_CATEGORY_HARASSMENT, threshold: BLOCK_NONE}],"
        " generationConfig: {thinkingConfig: {thinkingBudget: 1024}, maxOutputTokens: 9}}"
    )
    with gateway(config(upstream.url, extra)) as (_, srv):
        assert post(srv.url, {"messages": HI, "max_tokens": 50}).status_code == 200
    body = upstream.requests_for("gemini-x")[0].body
    assert body["safetySettings"] == [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]
    # merged object by object; the caller's max_tokens wins over the operator's default
    assert body["generationConfig"] == {"thinkingConfig": {"thinkingBudget": 1024}, "maxOutputTokens": 50}


def test_tools_history_images_and_function_responses(gateway: GatewayRunner, upstream: NativeFake) -> None:
    upstream.behaviours["gemini-x"] = reply(GEMINI_TEXT)
    weather = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather",
            "parameters": {
                "type": "object",
                "properties": {
                    "location": {"type": "string"},
                    "unit": {"type": ["string", "null"], "enum": ["c", "f"]},
                },
                "required": ["location"],
                "additionalProperties": False,
            },
        },
    }
    clock = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}
    sig = {"google": {"thought_signature": "CiQB0e2Kb3dRh+Bn"}}
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Weather where this photo was taken?"},
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQSkZJRg==", "detail": "low"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'},
                    "extra_content": sig,
                },
                {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "tool_call_id": "call_a", "content": '{"temp_c": 18, "sky": "sunny"}'},
        {"role": "tool", "tool_call_id": "call_b", "content": "14:05"},
    ]
    with gateway(config(upstream.url)) as (_, srv):
        resp = post(srv.url, {"messages": messages, "tools": [weather, clock], "tool_choice": "required"})
    assert resp.status_code == 200, resp.text
    body = upstream.requests_for("gemini-x")[0].body
    assert body["contents"] == [
        {
            "role": "user",
            "parts": [
                {"text": "Weather where this photo was taken?"},
                {"inlineData": {"mimeType": "image/jpeg", "data": "/9j/4AAQSkZJRg=="}},
            ],
        },
        {
            "role": "model",
            "parts": [
                {
                    "functionCall": {"name": "get_weather", "args": {"location": "Paris"}},
                    "thoughtSignature": "CiQB0e2Kb3dRh+Bn",
                },
                {"functionCall": {"name": "get_time", "args": {}}},
            ],
        },
        {
            # the names come from the tool_call_id of the calls they answer
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "get_weather", "response": {"temp_c": 18, "sky": "sunny"}}},
                {"functionResponse": {"name": "get_time", "response": {"content": "14:05"}}},
            ],
        },
    ]
    assert body["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Current weather",
                    "parameters": {
                        "type": "OBJECT",
                        "properties": {
                            "location": {"type": "STRING"},
                            "unit": {"type": "STRING", "nullable": True, "enum": ["c", "f"]},
                        },
                        "propertyOrdering": ["location", "unit"],
                        "required": ["location"],
                    },
                },
                {"name": "get_time"},  # Gemini refuses an OBJECT without properties
            ]
        }
    ]
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"mode": "AUTO"}),
        ("none", {"mode": "NONE"}),
        ({"type": "function", "function": {"name": "f"}}, {"mode": "ANY", "allowedFunctionNames": ["f"]}),
    ],
)
def test_tool_choice(gateway: GatewayRunner, upstream: NativeFake, choice: Any, expected: dict[str, Any]) -> None:
    upstream.behaviours["gemini-x"] = reply(GEMINI_TEXT)
    tool = {"type": "function", "function": {"name": "f"}}
    with gateway(config(upstream.url)) as (_, srv):
        assert post(srv.url, {"messages": HI, "tools": [tool], "tool_choice": choice}).status_code == 200
    assert upstream.requests_for("gemini-x")[0].body["toolConfig"] == {"functionCallingConfig": expected}


def test_function_call_answer_carries_its_thought_signature(gateway: GatewayRunner, upstream: NativeFake) -> None:
    upstream.behaviours["gemini-x"] = reply(GEMINI_FUNCTION_CALL)
    with gateway(config(upstream.url)) as (_, srv):
        raw = post(srv.url, {"messages": HI, "tools": [{"type": "function", "function": {"name": "get_weather"}}]})
    resp = openai.types.chat.ChatCompletion.model_validate(raw.json())
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    assert choice.message.tool_calls is not None and len(choice.message.tool_calls) == 1
    call = choice.message.tool_calls[0]
    assert call.id.startswith("call_") and len(call.id) > 10
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {"location": "Paris", "unit": "celsius"}  # type: ignore[union-attr]
    raw_call = raw.json()["choices"][0]["message"]["tool_calls"][0]
    assert raw_call["extra_content"] == {"google": {"thought_signature": "CiQB0e2Kb3dRh+BnXj5Q1gkPqzj0ByCnCw=="}}


def test_thoughts_are_not_shown_and_usage_counts_them_and_the_cache(
    gateway: GatewayRunner, upstream: NativeFake
) -> None:
    upstream.behaviours["gemini-x"] = reply(GEMINI_THINKING_CACHED)
    with gateway(config(upstream.url)) as (_, srv):
        raw = post(srv.url, {"messages": HI})
    resp = openai.types.chat.ChatCompletion.model_validate(raw.json())
    assert resp.choices[0].message.content == "27 * 453 = 12,231."
    assert "Computing the product" not in raw.text
    usage = resp.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (1210, 12 + 311, 1533)
    assert usage.prompt_tokens_details is not None and usage.prompt_tokens_details.cached_tokens == 1024
    assert usage.completion_tokens_details is not None and usage.completion_tokens_details.reasoning_tokens == 311


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("OTHER", "stop"),
    ],
)
def test_finish_reasons(gateway: GatewayRunner, upstream: NativeFake, reason: str, finish: str) -> None:
    upstream.behaviours["gemini-x"] = reply(gemini_response([{"text": "Part"}], finish=reason))
    with gateway(config(upstream.url)) as (_, srv):
        resp = sdk(srv.url).chat.completions.create(model="gem", messages=HI)  # type: ignore[arg-type]
    assert resp.choices[0].finish_reason == finish and resp.choices[0].message.content == "Part"


@pytest.mark.parametrize("payload", [GEMINI_SAFETY, GEMINI_PROMPT_BLOCKED], ids=["answer-blocked", "prompt-blocked"])
def test_safety_blocks_are_content_filter_with_empty_content(
    gateway: GatewayRunner, upstream: NativeFake, payload: dict[str, Any]
) -> None:
    upstream.behaviours["gemini-x"] = reply(payload)
    upstream.behaviours["gemini-s"] = gemini_events([payload])
    with gateway(config(upstream.url) + "  gem-s: {provider: ge, model: gemini-s}\n") as (_, srv):
        client = sdk(srv.url)
        plain = client.chat.completions.create(model="gem", messages=HI)  # type: ignore[arg-type]
        chunks = list(client.chat.completions.create(model="gem-s", messages=HI, stream=True))  # type: ignore[arg-type]
    assert plain.choices[0].finish_reason == "content_filter" and plain.choices[0].message.content == ""
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "content_filter"
    ]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ""


def test_n_is_candidate_count_with_one_choice_per_candidate(gateway: GatewayRunner, upstream: NativeFake) -> None:
    answer = gemini_response([{"text": "One."}], usage={"promptTokenCount": 5, "candidatesTokenCount": 4})
    answer["candidates"].append(
        {"content": {"parts": [{"text": "Two."}], "role": "model"}, "finishReason": "STOP", "index": 1}
    )
    upstream.behaviours["gemini-x"] = reply(answer)
    with gateway(config(upstream.url)) as (_, srv):
        resp = sdk(srv.url).chat.completions.create(model="gem", messages=HI, n=2)  # type: ignore[arg-type]
    assert [(c.index, c.message.content) for c in resp.choices] == [(0, "One."), (1, "Two.")]
    assert upstream.requests_for("gemini-x")[0].body["generationConfig"] == {"candidateCount": 2}


def test_stream_becomes_standard_chunks_with_usage(gateway: GatewayRunner, upstream: NativeFake) -> None:
    upstream.behaviours["gemini-x"] = gemini_events(
        gemini_stream(["Paris is", " the capital", " of France."]), interval=0.01
    )
    with gateway(config(upstream.url)) as (_, srv):
        final, chunks = assemble(
            sdk(srv.url).chat.completions.create(
                model="gem",
                messages=HI,  # type: ignore[arg-type]
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    (seen,) = upstream.requests_for("gemini-x")
    assert (seen.method, seen.query) == ("streamGenerateContent", "alt=sse")
    assert chunks[0].choices[0].delta.role == "assistant"
    texts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert texts == ["Paris is", " the capital", " of France."]
    assert final.choices[0].message.content == "Paris is the capital of France."
    assert final.choices[0].finish_reason == "stop"
    assert len({c.id for c in chunks}) == 1 and all(c.model == "gem" for c in chunks)
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (12, 12 + 37)  # the last usageMetadata, thoughts included
    assert usage.prompt_tokens_details is not None and usage.prompt_tokens_details.cached_tokens == 8
    assert usage.completion_tokens_details is not None and usage.completion_tokens_details.reasoning_tokens == 37


def test_stream_function_call(gateway: GatewayRunner, upstream: NativeFake) -> None:
    events = [gemini_response([{"text": "Checking."}], finish=None), GEMINI_FUNCTION_CALL]
    upstream.behaviours["gemini-x"] = gemini_events(events)
    tool = {"type": "function", "function": {"name": "get_weather"}}
    with gateway(config(upstream.url)) as (_, srv):
        final, chunks = assemble(
            sdk(srv.url).chat.completions.create(model="gem", messages=HI, tools=[tool], stream=True)  # type: ignore[arg-type, list-item]
        )
    msg = final.choices[0].message
    assert msg.content == "Checking." and final.choices[0].finish_reason == "tool_calls"
    assert msg.tool_calls is not None and msg.tool_calls[0].function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(msg.tool_calls[0].function.arguments) == {"location": "Paris", "unit": "celsius"}  # type: ignore[union-attr]
    delta = next(c.choices[0].delta for c in chunks if c.choices and c.choices[0].delta.tool_calls)
    assert delta.tool_calls is not None and delta.tool_calls[0].index == 0 and delta.tool_calls[0].id


def test_stream_without_finish_reason_is_cut(gateway: GatewayRunner, upstream: NativeFake) -> None:
    events = gemini_stream(["Paris is", " the capital"])
    del events[-1]["candidates"][0]["finishReason"]
    upstream.behaviours["gemini-x"] = gemini_events(events)
    with gateway(config(upstream.url)) as (_, srv):
        raw = stream_text(srv.url, {"messages": HI})
    assert "Paris is" in raw and "[DONE]" not in raw and '"finish_reason":"stop"' not in raw
    assert raw.rstrip().splitlines()[-1].startswith('data: {"error":')


def test_mid_stream_error_event_ends_in_band(gateway: GatewayRunner, upstream: NativeFake) -> None:
    events = [
        *gemini_stream(["Paris is", " the capital"])[:1],
        gemini_error(503, "UNAVAILABLE", f"overloaded {SECRET}"),
    ]
    upstream.behaviours["gemini-x"] = gemini_events(events)
    with gateway(config(upstream.url)) as (_, srv):
        raw = stream_text(srv.url, {"messages": HI})
    last = raw.rstrip().splitlines()[-1]
    assert last.startswith('data: {"error":') and '"code":"upstream_overloaded"' in last
    assert SECRET not in raw and "[DONE]" not in raw


@pytest.mark.parametrize(
    ("http", "status", "expected", "code"),
    [
        (429, "RESOURCE_EXHAUSTED", 429, "upstream_rate_limited"),
        (400, "RESOURCE_EXHAUSTED", 429, "upstream_rate_limited"),  # the named status decides
        (503, "UNAVAILABLE", 503, "upstream_overloaded"),
        (403, "PERMISSION_DENIED", 502, "upstream_auth_failed"),
        (500, "INTERNAL", 502, "upstream_error"),
    ],
)
def test_error_statuses(
    gateway: GatewayRunner, upstream: NativeFake, http: int, status: str, expected: int, code: str
) -> None:
    upstream.behaviours["gemini-x"] = reply(gemini_error(http, status, f"Quota exceeded; key {SECRET}"), status=http)
    with gateway(config(upstream.url, ", retry: {max_retries: 0}")) as (_, srv):
        resp = post(srv.url, {"messages": HI})
        streamed = post(srv.url, {"messages": HI, "stream": True})
    for r in (resp, streamed):
        assert r.status_code == expected and r.json()["error"]["code"] == code
        assert SECRET not in r.text and "Quota" not in r.text


def test_400_keeps_a_scrubbed_reason(gateway: GatewayRunner, upstream: NativeFake) -> None:
    body = gemini_error(
        400, "INVALID_ARGUMENT", f"* GenerateContentRequest.contents: contents is not specified {SECRET}"
    )
    upstream.behaviours["gemini-x"] = reply(body, status=400)
    with gateway(config(upstream.url)) as (_, srv):
        resp = post(srv.url, {"messages": HI})
    assert resp.status_code == 400 and "contents is not specified" in resp.json()["error"]["message"]
    assert SECRET not in resp.text


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"logprobs": True}, "logprobs"),
        ({"logit_bias": {"1": 5}}, "logit_bias"),
        (
            {"parallel_tool_calls": False, "tools": [{"type": "function", "function": {"name": "f"}}]},
            "parallel_tool_calls",
        ),
        ({"audio": {"voice": "alloy", "format": "mp3"}}, "audio"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}],
                    }
                ]
            },
            "messages[0].content[0].image_url.url",
        ),
        ({"messages": [{"role": "tool", "tool_call_id": "nope", "content": "x"}]}, "messages[0].tool_call_id"),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {
                        "name": "t",
                        "schema": {
                            "$ref": "#/$defs/n",
                            "$defs": {"n": {"type": "object", "properties": {"next": {"$ref": "#/$defs/n"}}}},
                        },
                    },
                }
            },
            "response_format.json_schema.schema",
        ),
    ],
)
def test_what_gemini_cannot_honour_is_a_clear_400(
    gateway: GatewayRunner, upstream: NativeFake, extra: dict[str, Any], param: str
) -> None:
    upstream.behaviours["gemini-x"] = reply(GEMINI_TEXT)
    with gateway(config(upstream.url)) as (_, srv):
        resp = post(srv.url, {"messages": HI, **extra})
    assert resp.status_code == 400, resp.text
    err = resp.json()["error"]
    assert (err["type"], err["code"], err["param"]) == ("invalid_request_error", "unsupported_parameter", param)
    assert "model 'gem' (gemini)" in err["message"]
    assert upstream.seen == []


def test_parallel_tool_calls_false_without_tools_asks_for_nothing(gateway: GatewayRunner, upstream: NativeFake) -> None:
    upstream.behaviours["gemini-x"] = reply(GEMINI_TEXT)
    with gateway(config(upstream.url)) as (_, srv):
        assert post(srv.url, {"messages": HI, "parallel_tool_calls": False}).status_code == 200
    assert "tools" not in upstream.requests_for("gemini-x")[0].body


def test_response_format_becomes_mime_type_and_schema(gateway: GatewayRunner, upstream: NativeFake) -> None:
    schema = {
        "type": "object",
        "$defs": {"rating": {"type": "integer", "minimum": 1, "maximum": 5, "title": "Rating"}},
        "properties": {
            "analysis": {"type": "string", "description": "why"},
            "winner": {"type": "string", "enum": ["A", "B"]},
            "score": {"$ref": "#/$defs/rating"},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        },
        "required": ["analysis", "winner", "score"],
        "additionalProperties": False,
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "verdict", "strict": True, "schema": schema}}
    upstream.behaviours["gemini-x"] = reply(gemini_response([{"text": '{"analysis": "x", "winner": "A", "score": 4}'}]))
    with gateway(config(upstream.url)) as (_, srv):
        resp = post(srv.url, {"messages": HI, "response_format": fmt})
        post(srv.url, {"messages": HI, "response_format": {"type": "json_object"}})
    assert resp.json()["choices"][0]["message"]["content"] == '{"analysis": "x", "winner": "A", "score": 4}'
    first, second = (s.body["generationConfig"] for s in upstream.requests_for("gemini-x"))
    assert first == {
        "responseMimeType": "application/json",
        "responseSchema": {
            "type": "OBJECT",
            "properties": {
                "analysis": {"type": "STRING", "description": "why"},
                "winner": {"type": "STRING", "enum": ["A", "B"]},
                "score": {"type": "INTEGER", "minimum": 1, "maximum": 5},
                "tags": {"type": "ARRAY", "items": {"type": "STRING"}, "minItems": 1},
                "note": {"type": "STRING", "nullable": True},
            },
            "propertyOrdering": ["analysis", "winner", "score", "tags", "note"],
            "required": ["analysis", "winner", "score"],
        },
    }
    assert second == {"responseMimeType": "application/json"}
