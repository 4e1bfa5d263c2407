"""Upstreams called over the Responses API (``type: openai``, ``api: responses``): what reaches them, and
what every route makes of their answers, through the official openai and anthropic SDKs.

The upstream is a real loopback server whose Responses and stream events are checked against the
official schemas before they are sent (see :mod:`tests.support.responses_upstream`).
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import anthropic
import jsonschema
import openai
import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState

from fusion_modes.delimit import blocks
from gateway.config import parse_config
from gateway.config.providers import OPENAI_APIS, OpenAIAPI, OpenAIProviderConfig
from gateway.providers import adapter_class
from gateway.providers.openai_responses import OpenAIResponsesProvider
from gateway.wire.errors import ConfigError
from tests.conftest import GatewayRunner, http_client, sdk
from tests.openapi_schemas import validate
from tests.support.fakes import FakeUpstream, Seen, answer, error_reply, json_reply
from tests.support.responses_upstream import (
    answering,
    error_event,
    events,
    function_call,
    message,
    reasoning,
    replying,
    response,
    stream_reply,
    usage,
)

KEY = "sk-operator-secret-0123456789"
PRICE = "price: {input: 1, output: 2, cached_input: 0.5}"


def config(url: str, extra: str = "") -> str:
    return f"""
providers:
  resp: {{type: openai, api: responses, base_url: '{url}/v1', api_key: {KEY}, retry: {{max_retries: 0}}}}
  chat: {{type: openai, base_url: '{url}/v1', api_key: {KEY}, retry: {{max_retries: 0}}}}
models:
  m: {{provider: resp, model: up-model, {PRICE}}}
  c: {{provider: chat, model: chat-model, {PRICE}}}
{extra}"""


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"],
          "additionalProperties": False}  # fmt: skip
IMAGE = "data:image/png;base64,iVBORw0KGgo="
TEXT = "It snows in Oslo, and the picture shows a fjord."
#: 1000 prompt tokens (400 from the cache), 500 completion tokens (200 of them reasoning)
USAGE = usage(1000, 500, cached=400, reasoning=200)
#: 600 x $1 + 400 x $0.5 + 500 x $2, per million tokens
COST = Decimal("0.0018")


def chat(url: str, body: dict[str, Any]) -> Any:
    with http_client(url) as client:
        return client.post("/v1/chat/completions", json=body, headers={"authorization": "Bearer k"})


def test_the_upstream_receives_the_request_translated_to_the_responses_api(
    gateway: GatewayRunner, fake: FakeUpstream
) -> None:
    fake.default = replying(response([message('{"answer": "snow"}')], use=USAGE))
    with gateway(config(fake.url)) as (_, srv):
        resp = chat(srv.url, {
            "model": "m",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [
                    {"type": "text", "text": "What is the weather where this picture was taken?"},
                    {"type": "image_url", "image_url": {"url": IMAGE, "detail": "low"}},
                ]},
                {"role": "assistant", "content": None, "tool_calls": [
                    {"id": "call_1", "type": "function",
                     "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}},
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "snow"},
                {"role": "developer", "content": "Answer in JSON."},
            ],
            "tools": [WEATHER],
            "tool_choice": "auto",
            "parallel_tool_calls": False,
            "response_format": {"type": "json_schema", "json_schema": {"name": "answer", "schema": SCHEMA,
                                                                       "strict": True}},
            "max_tokens": 300,
            "temperature": 0.2,
            "top_p": 0.9,
            "reasoning_effort": "low",
            "metadata": {"run": "7"},
            "user": "u-1",
        })  # fmt: skip
    assert resp.status_code == 200, resp.text
    [seen] = fake.seen
    assert seen.path == "/v1/responses"
    validate(seen.body, "CreateResponse")
    assert seen.headers["authorization"] == f"Bearer {KEY}"
    assert seen.body == {
        "model": "up-model",
        "instructions": "Be brief.",
        "input": [
            {"role": "user", "content": [
                {"type": "input_text", "text": "What is the weather where this picture was taken?"},
                {"type": "input_image", "image_url": IMAGE, "detail": "low"},
            ]},
            {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city":"Oslo"}'},
            {"type": "function_call_output", "call_id": "call_1", "output": "snow"},
            {"role": "developer", "content": "Answer in JSON."},
        ],
        "tools": [{"type": "function", "name": "get_weather", "description": "Weather for a city",
                   "parameters": WEATHER["function"]["parameters"], "strict": False}],  # type: ignore[index]
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "text": {"format": {"type": "json_schema", "name": "answer", "schema": SCHEMA, "strict": True}},
        "max_output_tokens": 300,
        "temperature": 0.2,
        "top_p": 0.9,
        "metadata": {"run": "7"},
        "user": "u-1",
        "reasoning": {"effort": "low"},
        "store": False,
    }  # fmt: skip
    assert resp.json()["choices"][0]["message"]["content"] == '{"answer": "snow"}'


def test_chat_completions_json_and_stream_carry_what_the_upstream_said(
    gateway: GatewayRunner, fake: FakeUpstream
) -> None:
    fake.default = replying(response([reasoning(), message(TEXT)], use=USAGE))
    question = [{"role": "user", "content": "Weather in Oslo?"}]
    with gateway(config(fake.url)) as (_, srv):
        client = sdk(srv.url)
        raw = client.chat.completions.with_raw_response.create(model="m", messages=question)  # type: ignore[arg-type]
        created = raw.parse()
        chunks = list(client.chat.completions.create(model="m", messages=question, stream=True,  # type: ignore[arg-type]
                                                     stream_options={"include_usage": True}))
    assert created.choices[0].message.content == TEXT
    assert created.choices[0].finish_reason == "stop"
    assert created.model == "m" and created.choices[0].message.tool_calls is None
    assert created.usage is not None
    u = created.usage
    assert (u.prompt_tokens, u.completion_tokens, u.total_tokens) == (1000, 500, 1500)
    assert created.usage.prompt_tokens_details and created.usage.prompt_tokens_details.cached_tokens == 400
    assert created.usage.completion_tokens_details
    assert created.usage.completion_tokens_details.reasoning_tokens == 200
    assert Decimal(raw.headers["x-fusion-cost-usd"]) == COST

    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == TEXT
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (1000, 500)
    assert last.usage.prompt_tokens_details and last.usage.prompt_tokens_details.cached_tokens == 400
    assert Decimal(str(last.usage.model_extra["fusion_cost_usd"])) == COST  # type: ignore[index]
    assert [s.body.get("stream") for s in fake.seen] == [None, True]


def test_responses_route_json_and_stream(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    fake.default = replying(response([message(TEXT)], use=USAGE))
    with gateway(config(fake.url)) as (_, srv):
        client = sdk(srv.url)
        created = client.responses.create(model="m", input="Weather in Oslo?", instructions="Be brief.")
        with client.responses.stream(model="m", input="Weather in Oslo?") as stream:
            deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
            final = stream.get_final_response()
    assert created.output_text == TEXT and created.status == "completed"
    assert created.usage is not None
    assert (created.usage.input_tokens, created.usage.output_tokens) == (1000, 500)
    assert created.usage.input_tokens_details.cached_tokens == 400
    assert created.usage.output_tokens_details.reasoning_tokens == 200
    assert "".join(deltas) == TEXT == final.output_text
    assert final.usage is not None and final.usage.output_tokens_details.reasoning_tokens == 200
    assert fake.seen[0].body["instructions"] == "Be brief."
    assert fake.seen[0].body["input"] == [{"role": "user", "content": "Weather in Oslo?"}]


def test_messages_route_json_and_stream(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    fake.default = replying(response([message(TEXT)], use=USAGE))
    with gateway(config(fake.url)) as (_, srv), anthropic.Anthropic(base_url=srv.url, api_key="k", max_retries=0) as c:
        question: Any = [{"role": "user", "content": "Weather in Oslo?"}]
        created = c.messages.create(model="m", max_tokens=200, messages=question)
        with c.messages.stream(model="m", max_tokens=200, messages=question) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
    [block] = created.content
    assert block.type == "text" and block.text == TEXT and created.stop_reason == "end_turn"
    assert created.usage.output_tokens == 500
    assert text == TEXT and final.stop_reason == "end_turn"
    assert [s.body["max_output_tokens"] for s in fake.seen] == [200, 200]


def test_tool_calls_round_trip(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    def upstream(seen: Seen) -> dict[str, Any]:
        if seen.body["input"][-1].get("type") == "function_call_output":
            return response([message("It snows in Oslo.")], use=usage(40, 6))
        return response([function_call("call_abc", "get_weather", '{"city":"Oslo"}')], use=usage(30, 12))

    fake.default = answering(upstream)
    question: Any = [{"role": "user", "content": "Weather in Oslo?"}]
    with gateway(config(fake.url)) as (_, srv):
        client = sdk(srv.url)
        first = client.chat.completions.create(model="m", messages=question, tools=[WEATHER])  # type: ignore[list-item]
        state = ChatCompletionStreamState()
        for c in client.chat.completions.create(model="m", messages=question, tools=[WEATHER],  # type: ignore[list-item]
                                                stream=True):
            state.handle_chunk(c)
        streamed = state.get_final_completion()
        [call] = first.choices[0].message.tool_calls or []
        second = client.chat.completions.create(model="m", tools=[WEATHER], messages=[  # type: ignore[list-item]
            *question,
            first.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "snow"},
        ])  # fmt: skip
    assert first.choices[0].finish_reason == "tool_calls" and first.choices[0].message.content is None
    assert (call.id, call.function.name, call.function.arguments) == ("call_abc", "get_weather", '{"city":"Oslo"}')
    assert streamed.choices[0].finish_reason == "tool_calls"
    [scall] = streamed.choices[0].message.tool_calls or []
    assert (scall.id, scall.function.name, scall.function.arguments) == ("call_abc", "get_weather", '{"city":"Oslo"}')
    assert second.choices[0].message.content == "It snows in Oslo."
    assert fake.seen[2].body["input"][1:] == [
        {"type": "function_call", "call_id": "call_abc", "name": "get_weather", "arguments": '{"city":"Oslo"}'},
        {"type": "function_call_output", "call_id": "call_abc", "output": "snow"},
    ]


@pytest.mark.parametrize(("reason", "finish"), [("max_output_tokens", "length"), ("content_filter", "content_filter")])
def test_an_incomplete_response_finishes_for_its_reason(
    gateway: GatewayRunner, fake: FakeUpstream, reason: str, finish: str
) -> None:
    cut = {**message("It snows in"), "status": "incomplete"}
    fake.default = replying(response([cut], status="incomplete", incomplete=reason, use=usage(20, 3)))
    question: Any = [{"role": "user", "content": "Weather in Oslo?"}]
    with gateway(config(fake.url)) as (_, srv):
        client = sdk(srv.url)
        created = client.chat.completions.create(model="m", messages=question, max_tokens=16)
        chunks = list(client.chat.completions.create(model="m", messages=question, max_tokens=16, stream=True))
        incomplete = client.responses.create(model="m", input="Weather in Oslo?", max_output_tokens=16)
    assert created.choices[0].finish_reason == finish and created.choices[0].message.content == "It snows in"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [finish]
    assert incomplete.status == "incomplete" and incomplete.incomplete_details is not None
    assert incomplete.incomplete_details.reason == reason


def test_an_upstream_error_status_keeps_its_meaning(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    fake.default = error_reply(429, "slow down", headers={"retry-after": "7"})
    with gateway(config(fake.url)) as (_, srv):
        resp = chat(srv.url, {"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    assert resp.status_code == 429 and resp.headers["retry-after"] == "7"
    assert resp.json() == {"error": {"message": "upstream 'm' answered 429", "type": "rate_limit_error",
                                     "param": None, "code": "upstream_rate_limited"}}  # fmt: skip


FAILED = response([], status="failed", error={"code": "invalid_prompt", "message": "the prompt was flagged"})


@pytest.mark.parametrize("stream", [False, True])
def test_a_failed_response_is_the_error_its_code_stands_for(
    gateway: GatewayRunner, fake: FakeUpstream, stream: bool
) -> None:
    """Failed before anything reached the caller: a real status and the OpenAI envelope, streamed or not."""
    fake.default = replying(FAILED)
    with gateway(config(fake.url)) as (_, srv):
        resp = chat(srv.url, {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": stream})
    assert resp.status_code == 400
    assert resp.json() == {"error": {
        "message": "upstream 'm' rejected the request (400): the prompt was flagged",
        "type": "invalid_request_error", "param": None, "code": "upstream_rejected_request",
    }}  # fmt: skip


def test_an_error_event_before_any_text_is_a_real_status(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    start = events(response([message(TEXT)], use=USAGE))[:2]
    fake.default = stream_reply([*start, error_event("rate_limit_exceeded", "too many tokens", 2)])
    with gateway(config(fake.url)) as (_, srv):
        resp = chat(srv.url, {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True})
    assert resp.status_code == 429
    assert resp.json()["error"]["code"] == "upstream_rate_limited"


def test_a_failure_mid_stream_ends_the_stream_with_an_in_band_error(
    gateway: GatewayRunner, fake: FakeUpstream
) -> None:
    said = [e for e in events(response([message(TEXT)], use=USAGE)) if e["type"] != "response.completed"][:5]
    failed = {"type": "response.failed", "sequence_number": len(said),
              "response": {**FAILED, "error": {"code": "server_error", "message": "boom"}}}  # fmt: skip
    fake.default = stream_reply([*said, failed])
    with gateway(config(fake.url)) as (_, srv):
        client = sdk(srv.url)
        got: list[str] = []
        with pytest.raises(openai.APIError) as info:
            for c in client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}],
                                                    stream=True):  # fmt: skip
                got.append(c.choices[0].delta.content or "" if c.choices else "")
    assert "".join(got) and TEXT.startswith("".join(got))
    assert info.value.message == "upstream 'm' answered 500"


def test_a_stream_cut_before_its_final_event_is_not_a_success(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    said = events(response([message(TEXT)], use=USAGE))[:-1]  # everything but response.completed
    fake.default = stream_reply(said)
    with gateway(config(fake.url)) as (_, srv):
        client = sdk(srv.url)
        with pytest.raises(openai.APIError) as info:
            list(client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], stream=True))
    assert info.value.message == "upstream 'm' stream ended before the answer was complete"


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        ("stop", ["\n"], "the Responses API has no equivalent (no stop sequences)"),
        ("logprobs", True, "token log-probabilities are not translated"),
        ("frequency_penalty", 0.5, "the Responses API has no equivalent"),
        ("web_search_options", {}, "this provider has no equivalent, and ignoring it could change the answer"),
    ],
)
def test_what_the_responses_api_cannot_honour_is_a_400_naming_the_field(
    gateway: GatewayRunner, fake: FakeUpstream, field: str, value: Any, why: str
) -> None:
    fake.default = replying(response([message(TEXT)], use=USAGE))
    with gateway(config(fake.url)) as (_, srv):
        for stream in (False, True):
            resp = chat(srv.url, {"model": "m", "messages": [{"role": "user", "content": "hi"}], field: value,
                                  "stream": stream})  # fmt: skip
            assert resp.status_code == 400
            assert resp.json() == {"error": {
                "message": f"model 'm' (openai responses): '{field}' is not supported: {why}",
                "type": "invalid_request_error", "param": field, "code": "unsupported_parameter",
            }}  # fmt: skip
    assert fake.seen == []


def judge_or_member(seen: Seen) -> dict[str, Any]:
    """The Responses model as a pool member (its answer) and as the judge (the label of the answer that
    says Canberra, read from the prompt it was given)."""
    if "text" not in seen.body:
        return response([message("Canberra is the capital of Australia.")], use=usage(20, 8))
    assert seen.body["text"]["format"]["type"] == "json_schema"
    prompt = seen.body["input"][-1]["content"]
    [label] = [b.label for b in blocks(prompt, "CANDIDATE") if "Canberra" in b.body]
    verdict = json.dumps({"analysis": "only one is right", "winner": label})
    return response([message(verdict)], use=usage(300, 20))


@pytest.mark.parametrize("stream", [False, True])
def test_a_pool_of_a_chat_completions_member_and_a_responses_member_judged_over_responses(
    gateway: GatewayRunner, fake: FakeUpstream, stream: bool
) -> None:
    fake.behaviours["chat-model"] = answer("Sydney is the capital of Australia.")
    fake.behaviours["up-model"] = answering(judge_or_member)
    pool = "pools:\n  duo: {mode: best-of, members: [c, m], judge: {model: m}}\n"
    question: Any = [{"role": "user", "content": "What is the capital of Australia?"}]
    with gateway(config(fake.url, pool)) as (_, srv):
        client = sdk(srv.url)
        if stream:
            state = ChatCompletionStreamState()
            for c in client.chat.completions.create(model="duo", messages=question, stream=True):
                state.handle_chunk(c)
            done = state.get_final_completion()
        else:
            done = client.chat.completions.create(model="duo", messages=question)
    assert done.choices[0].message.content == "Canberra is the capital of Australia."
    paths = sorted((s.model, s.path) for s in fake.seen)
    assert paths == [("chat-model", "/v1/chat/completions"), ("up-model", "/v1/responses"),
                     ("up-model", "/v1/responses")]  # fmt: skip
    if not stream:
        fusion = done.model_extra["fusion"]  # type: ignore[index]
        assert fusion["judge"]["status"] == "ok" and fusion["winner"] == "m"


def test_a_bad_api_value_is_a_config_error_with_its_line() -> None:
    text = "providers:\n  up:\n    type: openai\n    base_url: http://127.0.0.1:9/v1\n    api: respones\n"
    with pytest.raises(ConfigError) as info:
        parse_config(text, "config/gateway.yaml")
    assert info.value.message == (
        "config/gateway.yaml:5: providers.up.api: unknown api 'respones' "
        "(did you mean 'responses'? known: chat_completions, responses)"
    )


def test_the_api_picks_the_adapter() -> None:
    assert set(OPENAI_APIS) == set(OpenAIAPI.__args__)  # type: ignore[attr-defined]
    base = {"type": "openai", "base_url": "http://127.0.0.1:9/v1"}
    assert adapter_class(OpenAIProviderConfig.model_validate({**base, "api": "responses"})) is OpenAIResponsesProvider
    assert adapter_class(OpenAIProviderConfig.model_validate(base)).__name__ == "OpenAIProvider"


def test_embeddings_of_a_responses_provider_still_go_to_embeddings(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    vectors = {"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.5, 0.25]}],
               "model": "up-model", "usage": {"prompt_tokens": 2, "total_tokens": 2}}  # fmt: skip
    fake.default = json_reply(vectors)
    with gateway(config(fake.url)) as (_, srv):
        got = sdk(srv.url).embeddings.create(model="m", input="hi")
    assert got.data[0].embedding == [0.5, 0.25]
    assert [s.path for s in fake.seen] == ["/v1/embeddings"]


def test_the_upstream_refuses_a_request_that_is_not_a_valid_create_response() -> None:
    """The fake's request check is not vacuous."""
    with pytest.raises(jsonschema.ValidationError):
        validate({"model": "m", "input": [{"type": "input_image"}]}, "CreateResponse")


def test_a_refusal_is_the_message_refusal(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    fake.default = replying(response([message("", refusal="I can't help with that.")], use=usage(12, 6)))
    question: Any = [{"role": "user", "content": "Something harmful"}]
    with gateway(config(fake.url)) as (_, srv):
        client = sdk(srv.url)
        created = client.chat.completions.create(model="m", messages=question)
        chunks = list(client.chat.completions.create(model="m", messages=question, stream=True))
    assert created.choices[0].message.refusal == "I can't help with that."
    assert created.choices[0].message.content is None and created.choices[0].finish_reason == "stop"
    assert "".join(c.choices[0].delta.refusal or "" for c in chunks if c.choices) == "I can't help with that."
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
