"""``POST /v1/messages``: Anthropic Messages inbound, used through the official ``anthropic`` SDK."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import pytest

from tests.conftest import GatewayRunner, fake_provider_yaml, http_client
from tests.support.fakes import FakeUpstream, chunk, completion, json_reply, sse_reply
from tests.test_responses import SIM

TOOLS: list[Any] = [
    {
        "name": "get_weather",
        "description": "Weather for a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
]
KEYED = SIM + "auth:\n  keys:\n    - {name: app, key: sk-client-0123456789abcdef, pools: [\"*\"], models: [\"*\"]}\n"


def client(url: str, key: str = "sk-client-0123456789abcdef") -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=url, api_key=key, max_retries=0)


@pytest.mark.parametrize("model", ["quick", "duo"])
def test_create_and_stream_with_the_anthropic_sdk(gateway: GatewayRunner, model: str) -> None:
    with gateway(KEYED) as (_, srv), client(srv.url) as c:
        created = c.messages.create(model=model, max_tokens=200, system="Be brief.",
                                    messages=[{"role": "user", "content": "What is 6 * 7?"}])
        with c.messages.stream(model=model, max_tokens=200,
                               messages=[{"role": "user", "content": "What is 6 * 7?"}]) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
    assert created.type == "message" and created.role == "assistant" and created.model == model
    [block] = created.content
    assert block.type == "text" and block.text.endswith("The answer is 42.")
    assert created.stop_reason == "end_turn"
    assert created.usage.input_tokens > 0 and created.usage.output_tokens > 0
    assert text == final.content[0].text and text.endswith("The answer is 42.")  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn" and final.usage.output_tokens > 0
    fusion = (created.model_extra or {}).get("fusion")
    assert (fusion is not None) == (model == "duo")
    if fusion is not None:
        assert fusion["mode"] == "best-of" and {m["model"] for m in fusion["members"]} == {"quick", "other"}


@pytest.mark.parametrize("model", ["quick", "duo"])
def test_tool_use_round_trip_with_the_anthropic_sdk(gateway: GatewayRunner, model: str) -> None:
    with gateway(KEYED) as (_, srv), client(srv.url) as c:
        first = c.messages.create(model=model, max_tokens=200, tools=TOOLS,
                                  messages=[{"role": "user", "content": "Weather in Oslo?"}])
        with c.messages.stream(model=model, max_tokens=200, tools=TOOLS,
                               messages=[{"role": "user", "content": "Weather in Oslo?"}]) as stream:
            streamed = stream.get_final_message()
        [use] = first.content
        assert use.type == "tool_use" and use.name == "get_weather" and use.input == {"city": "Weather in Oslo?"}
        second = c.messages.create(
            model=model, max_tokens=200, tools=TOOLS,
            messages=[
                {"role": "user", "content": "Weather in Oslo?"},
                {"role": "assistant", "content": [use.model_dump(exclude_none=True)]},  # type: ignore[list-item]
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "snow"}]},
            ],
        )
    assert first.stop_reason == "tool_use" and streamed.stop_reason == "tool_use"
    [streamed_use] = streamed.content
    assert streamed_use.type == "tool_use" and streamed_use.input == {"city": "Weather in Oslo?"}
    assert second.stop_reason == "end_turn" and second.content[0].type == "text"


def test_request_is_translated_for_the_upstream(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    fake.default = json_reply(completion("done", finish_reason="length",
                                         usage={"prompt_tokens": 30, "completion_tokens": 5, "total_tokens": 35,
                                                "prompt_tokens_details": {"cached_tokens": 10}}))
    cfg = f"providers:\n{fake_provider_yaml(fake.url)}models:\n  m: {{provider: up, model: up-m}}\n"
    with gateway(cfg) as (_, srv), client(srv.url) as c:
        msg = c.messages.create(
            model="m",
            max_tokens=64,
            system=[{"type": "text", "text": "Be brief."}],
            stop_sequences=["END"],
            extra_body={"temperature": 0.3},
            metadata={"user_id": "u1"},
            tools=TOOLS,
            tool_choice={"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
            messages=[
                {"role": "user", "content": [
                    {"type": "text", "text": "Look:"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
                ]},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "s"},
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "t1", "name": "get_weather", "input": {"city": "Oslo"}},
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "snow"}]},
                    {"type": "text", "text": "And now?"},
                ]},
            ],
        )  # fmt: skip
    [seen] = fake.seen
    assert seen.body == {
        "model": "up-m",
        "max_tokens": 64,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [
                {"type": "text", "text": "Look:"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            ]},
            {"role": "assistant", "content": "Checking.", "tool_calls": [
                {"id": "t1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}},
            ]},
            {"role": "tool", "tool_call_id": "t1", "content": "snow"},
            {"role": "user", "content": [{"type": "text", "text": "And now?"}]},
        ],
        "stop": ["END"],
        "temperature": 0.3,
        "user": "u1",
        "tools": [{"type": "function", "function": {
            "name": "get_weather", "parameters": TOOLS[0]["input_schema"], "description": "Weather for a city"}}],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": False,
    }  # fmt: skip
    assert msg.stop_reason == "max_tokens"
    # Anthropic's input_tokens count only the uncached rest of the prompt
    assert (msg.usage.input_tokens, msg.usage.cache_read_input_tokens, msg.usage.output_tokens) == (20, 10, 5)


def test_events_in_order_and_an_in_band_error(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    fake.default = sse_reply([chunk({"role": "assistant", "content": "Half"})], done=False)
    cfg = f"providers:\n{fake_provider_yaml(fake.url)}models:\n  m: {{provider: up, model: up-m}}\n"
    body = {"model": "m", "max_tokens": 10, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    with gateway(cfg) as (_, srv), http_client(srv.url) as http, http.stream("POST", "/v1/messages", json=body) as r:
        lines = [line for line in r.iter_lines() if line]
    names = [line[7:] for line in lines if line.startswith("event: ")]
    datas = [json.loads(line[6:]) for line in lines if line.startswith("data: ")]
    assert names == ["message_start", "content_block_start", "content_block_delta", "error"]
    assert [d["type"] for d in datas] == names
    assert datas[-1] == {"type": "error", "error": {
        "type": "api_error", "message": "upstream 'm' stream ended before the answer was complete"}}
    hi: Any = [{"role": "user", "content": "hi"}]
    with (
        gateway(cfg) as (_, srv),
        pytest.raises(anthropic.APIStatusError, match="stream ended"),
        client(srv.url) as c,
        c.messages.stream(model="m", max_tokens=10, messages=hi) as stream,
    ):
        stream.get_final_message()


def test_x_api_key_is_the_client_key_and_errors_are_anthropic_shaped(gateway: GatewayRunner) -> None:
    with gateway(KEYED) as (_, srv):
        with pytest.raises(anthropic.AuthenticationError) as auth, client(srv.url, key="sk-wrong") as c:
            c.messages.create(
                model="quick", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
        with pytest.raises(anthropic.BadRequestError) as bad, client(srv.url) as c:
            c.messages.create(
                model="quick", max_tokens=10, messages=[{"role": "user", "content": "hi"}],
                tools=[{"type": "web_search_20250305", "name": "web_search"}])  # type: ignore[list-item]
        body = {"model": "quick", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]}
        with http_client(srv.url) as http:
            bearer = http.post("/v1/messages", json=body,
                               headers={"authorization": "Bearer sk-client-0123456789abcdef"})
    assert auth.value.status_code == 401 and auth.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    assert bad.value.body == {"type": "error", "error": {
        "type": "invalid_request_error",
        "message": "'tools[0]' is not supported: server tool 'web_search_20250305' is not served: "
                   "the gateway serves client tools (name, description, input_schema) only"}}
    assert bearer.status_code == 200
