"""``POST /v1/responses``: the Responses API over models and pools, checked against the official schemas
and used through the official openai SDK and the OpenAI Agents SDK."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import openai
import pytest
from pydantic import BaseModel

from tests.conftest import GatewayRunner, fake_provider_yaml, http_client, sdk
from tests.openapi_schemas import validate, validate_event
from tests.support.fakes import FakeUpstream, chunk, completion, json_reply, sse_reply
from tests.support.native_fakes import anthropic_message, gemini_response, native_fake, reply

SIM = """
providers:
  sim: {type: simulator, seed: 3, profiles: {
    a: {ttft_ms: 5, tokens_per_s: 4000, accuracy: 1.0},
    b: {ttft_ms: 5, tokens_per_s: 4000, accuracy: 1.0},
    j: {ttft_ms: 5, tokens_per_s: 4000, accuracy: 1.0}}}
models:
  quick: {provider: sim, model: a, price: {input: 1, output: 2}}
  other: {provider: sim, model: b, price: {input: 1, output: 2}}
  judge: {provider: sim, model: j, price: {input: 1, output: 2}}
pools:
  duo: {mode: best-of, members: [quick, other], judge: {model: judge}}
"""
TOOLS = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
]
#: stream events the gateway adds of its own (opt-in fusion progress): not in the official union
OWN_EVENTS = {"fusion.event"}


def post(url: str, body: dict[str, Any]) -> httpx.Response:
    with http_client(url) as client:
        return client.post("/v1/responses", json=body, headers={"authorization": "Bearer k"})


def stream_events(url: str, body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(event line, data) of every event of a streamed Response."""
    out = []
    with http_client(url) as client, client.stream("POST", "/v1/responses", json={**body, "stream": True}) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        name = ""
        for line in resp.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                assert line != "data: [DONE]"
                out.append((name, json.loads(line[6:])))
    return out


def check_stream(events: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """Every event valid against the official schema, named by its ``event:`` line, numbered in order."""
    for i, (name, data) in enumerate(events):
        assert name == data["type"]
        assert data["sequence_number"] == i
        if data["type"] not in OWN_EVENTS:
            validate_event(data)
    return [d["type"] for _, d in events]


def test_json_answer_from_a_model_is_a_valid_response(gateway: GatewayRunner) -> None:
    with gateway(SIM) as (_, srv):
        resp = post(srv.url, {"model": "quick", "input": "What is 6 * 7?", "instructions": "Be brief.",
                              "metadata": {"run": "1"}})
    assert resp.status_code == 200
    body = resp.json()
    validate(body, "Response")
    assert body["object"] == "response" and body["status"] == "completed" and body["model"] == "quick"
    assert body["instructions"] == "Be brief." and body["metadata"] == {"run": "1"}
    [item] = body["output"]
    assert item["type"] == "message" and item["role"] == "assistant" and item["status"] == "completed"
    assert item["content"][0]["type"] == "output_text"
    assert item["content"][0]["text"] == "Working it out: 6 * 7 = 42. The answer is 42."
    usage = body["usage"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"] and usage["output_tokens"] > 0
    assert usage["input_tokens_details"]["cached_tokens"] == 0
    assert usage["output_tokens_details"]["reasoning_tokens"] == 0
    assert "fusion" not in body
    assert resp.headers["x-fusion-cost-usd"] != "unknown"


def test_json_answer_from_a_pool_carries_the_fusion_object(gateway: GatewayRunner) -> None:
    with gateway(SIM) as (_, srv):
        body = post(srv.url, {"model": "duo", "input": "What is 6 * 7?"}).json()
    validate(body, "Response")
    assert body["output"][0]["content"][0]["text"].endswith("The answer is 42.")
    fusion = body["fusion"]
    assert fusion["pool"] == "duo" and fusion["mode"] == "best-of"
    assert {m["model"] for m in fusion["members"]} == {"quick", "other"}
    # the Response's usage is the whole request's: both members and the judge
    assert body["usage"]["input_tokens"] == sum(
        m["usage"]["prompt_tokens"] for m in [*fusion["members"], fusion["judge"]]
    )


@pytest.mark.parametrize("model", ["quick", "duo"])
def test_stream_sends_the_semantic_events_in_order(gateway: GatewayRunner, model: str) -> None:
    with gateway(SIM) as (_, srv):
        events = stream_events(srv.url, {"model": model, "input": "What is 6 * 7?"})
    kinds = check_stream(events)
    deltas = [d for _, d in events if d["type"] == "response.output_text.delta"]
    assert kinds[:4] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"
    ]
    assert kinds[4 : 4 + len(deltas)] == ["response.output_text.delta"] * len(deltas)
    assert kinds[4 + len(deltas) :] == [
        "response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed"
    ]
    text = "".join(d["delta"] for d in deltas)
    assert text.endswith("The answer is 42.")
    final = events[-1][1]["response"]
    assert final["output"][0]["content"][0]["text"] == text
    assert final["usage"]["output_tokens"] > 0
    assert ("fusion" in final) == (model == "duo")
    assert events[0][1]["response"]["status"] == "in_progress"


def test_stream_of_a_tool_call(gateway: GatewayRunner) -> None:
    with gateway(SIM) as (_, srv):
        events = stream_events(srv.url, {"model": "quick", "input": "Weather in Paris?", "tools": TOOLS})
    assert check_stream(events) == [
        "response.created", "response.in_progress", "response.output_item.added",
        "response.function_call_arguments.delta", "response.function_call_arguments.done",
        "response.output_item.done", "response.completed",
    ]  # fmt: skip
    done = events[4][1]
    # the simulator fills a string argument with the request it answers
    assert done["name"] == "get_weather" and json.loads(done["arguments"]) == {"city": "Weather in Paris?"}
    [item] = events[-1][1]["response"]["output"]
    assert item["type"] == "function_call" and item["arguments"] == done["arguments"]


def test_token_limit_makes_an_incomplete_response(gateway: GatewayRunner) -> None:
    with gateway(SIM) as (_, srv):
        body = post(srv.url, {"model": "quick", "input": "What is 6 * 7?", "max_output_tokens": 3}).json()
        events = stream_events(srv.url, {"model": "quick", "input": "What is 6 * 7?", "max_output_tokens": 3})
    validate(body, "Response")
    assert body["status"] == "incomplete"
    assert body["incomplete_details"] == {"reason": "max_output_tokens"}
    assert body["output"][0]["status"] == "incomplete"
    assert check_stream(events)[-1] == "response.incomplete"
    assert events[-1][1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


def test_input_items_are_translated_for_the_upstream(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    fake.default = json_reply(completion("done"))
    cfg = f"providers:\n{fake_provider_yaml(fake.url)}models:\n  m: {{provider: up, model: up-m}}\n"
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"],
              "additionalProperties": False}
    with gateway(cfg) as (_, srv):
        resp = post(srv.url, {
            "model": "m",
            "instructions": "Be brief.",
            "input": [
                {"role": "user", "content": [
                    {"type": "input_text", "text": "Look:"},
                    {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "low"},
                ]},
                {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": '{"city":"Oslo"}'},
                {"type": "function_call", "call_id": "c2", "name": "get_weather", "arguments": '{"city":"Rome"}'},
                {"type": "function_call_output", "call_id": "c1", "output": "snow"},
                {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "sun"}]},
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Noted."}]},
            ],
            "tools": TOOLS,
            "tool_choice": {"type": "function", "name": "get_weather"},
            "parallel_tool_calls": False,
            "text": {"format": {"type": "json_schema", "name": "out", "schema": schema, "strict": True}},
            "max_output_tokens": 50,
            "temperature": 0.2,
            "top_p": 0.9,
            "reasoning": {"effort": "low"},
            "user": "u1",
            "store": False,
        })
    assert resp.status_code == 200, resp.text
    [seen] = fake.seen
    assert seen.body == {
        "model": "up-m",
        "messages": [
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": [
                {"type": "text", "text": "Look:"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}},
            ]},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}},
                {"id": "c2", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'}},
            ]},
            {"role": "tool", "tool_call_id": "c1", "content": "snow"},
            {"role": "tool", "tool_call_id": "c2", "content": "sun"},
            {"role": "assistant", "content": "Noted."},
        ],
        "tools": [{"type": "function", "function": {
            "name": "get_weather", "description": "Weather for a city", "parameters": TOOLS[0]["parameters"]}}],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": False,
        "response_format": {"type": "json_schema", "json_schema": {"name": "out", "schema": schema, "strict": True}},
        "max_completion_tokens": 50,
        "temperature": 0.2,
        "top_p": 0.9,
        "reasoning_effort": "low",
        "user": "u1",
    }  # fmt: skip


NATIVE = """
providers:
  an: {{type: anthropic, base_url: '{url}/v1', api_key: k}}
  ge: {{type: gemini, base_url: '{url}/v1beta', api_key: k}}
models:
  claude: {{provider: an, model: claude-x}}
  gem: {{provider: ge, model: gemini-x}}
"""


@pytest.mark.parametrize("stream", [False, True])
def test_reasoning_effort_is_refused_by_native_anthropic_and_gemini_before_any_call(
    gateway: GatewayRunner, stream: bool
) -> None:
    """``reasoning.effort`` becomes ``reasoning_effort``, which the native translations have no equivalent
    for: a 400 naming it, not an answer that silently ignored it."""
    with native_fake() as native:
        native.behaviours["claude-x"] = reply(anthropic_message([{"type": "text", "text": "Hello."}]))
        native.behaviours["gemini-x"] = reply(gemini_response([{"text": "Hello."}]))
        with gateway(NATIVE.format(url=native.url)) as (_, srv):
            for model, kind in [("claude", "anthropic"), ("gem", "gemini")]:
                resp = post(srv.url, {"model": model, "input": "hi", "reasoning": {"effort": "low"}, "stream": stream})
                assert resp.status_code == 400
                assert resp.json() == {"error": {
                    "message": f"model '{model}' ({kind}): 'reasoning_effort' is not supported: this provider has "
                               "no equivalent, and ignoring it could change the answer",
                    "type": "invalid_request_error", "param": "reasoning_effort", "code": "unsupported_parameter",
                }}  # fmt: skip
            assert native.seen == []
            # a reasoning object that asks for no effort asks nothing of them
            for model in ("claude", "gem"):
                resp = post(srv.url, {"model": model, "input": "hi", "reasoning": {"effort": None, "summary": None}})
                assert resp.status_code == 200, resp.text
                assert resp.json()["output"][0]["content"][0]["text"] == "Hello."
            assert [s.model for s in native.seen] == ["claude-x", "gemini-x"]


def test_stream_cut_after_it_started_ends_with_response_failed(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    fake.default = sse_reply([chunk({"role": "assistant", "content": "Half an ans"})], done=False)
    cfg = f"providers:\n{fake_provider_yaml(fake.url)}models:\n  m: {{provider: up, model: up-m}}\n"
    with gateway(cfg) as (_, srv):
        events = stream_events(srv.url, {"model": "m", "input": "hi"})
    kinds = check_stream(events)
    assert "response.completed" not in kinds
    assert kinds[-1] == "response.failed"
    failed = events[-1][1]["response"]
    assert failed["status"] == "failed"
    assert failed["error"] == {"code": "server_error",
                               "message": "upstream 'm' stream ended before the answer was complete"}


def test_upstream_error_before_the_stream_keeps_its_status(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    fake.default = json_reply({"error": {"message": "bad"}}, status=400)
    cfg = f"providers:\n{fake_provider_yaml(fake.url)}models:\n  m: {{provider: up, model: up-m}}\n"
    with gateway(cfg) as (_, srv), http_client(srv.url) as client:
        resp = client.post("/v1/responses", json={"model": "m", "input": "hi", "stream": True})
    assert resp.status_code == 400
    assert set(resp.json()["error"]) == {"message", "type", "param", "code"}


@pytest.mark.parametrize(
    ("body", "param", "message"),
    [
        ({"previous_response_id": "resp_1"}, "previous_response_id",
         "'previous_response_id' is not supported: the gateway keeps no responses (it is stateless); "
         "send the whole conversation in 'input'"),
        ({"store": True}, "store",
         "'store' is not supported: the gateway keeps no responses (it is stateless); send 'store': false or omit it"),
        ({"tools": [{"type": "web_search"}]}, "tools[0].type",
         "'tools[0].type' is not supported: built-in tool 'web_search' is not served: "
         "the gateway serves function tools only"),
        ({"tools": [*TOOLS, {"type": "file_search", "vector_store_ids": ["v"]}]}, "tools[1].type",
         "'tools[1].type' is not supported: built-in tool 'file_search' is not served: "
         "the gateway serves function tools only"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type",
         "'input[0].type' is not supported: the gateway keeps no items to refer to (it is stateless)"),
        ({"text": {"format": {"type": "yaml"}}}, "text.format.type",
         "'text.format.type' must be one of json_object, json_schema, text; got 'yaml'"),
        ({"frequency": 1}, "frequency",
         "'frequency' is not supported: the gateway does not serve this field, "
         "and ignoring it could change the answer"),
    ],
)  # fmt: skip
def test_what_cannot_be_served_is_a_clear_400(gateway: GatewayRunner, body: dict[str, Any], param: str,
                                              message: str) -> None:
    with gateway(SIM) as (_, srv):
        resp = post(srv.url, {"model": "quick", "input": "hi", **body})
    assert resp.status_code == 400
    assert resp.json() == {"error": {"message": message, "type": "invalid_request_error", "param": param,
                                     "code": "unsupported_parameter" if "supported" in message else "invalid_value"}}


def test_sdk_create_stream_and_parse(gateway: GatewayRunner) -> None:
    class Weather(BaseModel):
        city: str
        degrees: int

    with gateway(SIM) as (_, srv), sdk(srv.url) as client:
        created = client.responses.create(model="quick", input="What is 6 * 7?")
        with client.responses.stream(model="duo", input="What is 6 * 7?") as stream:
            deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
            final = stream.get_final_response()
        parsed = client.responses.parse(model="quick", input="Weather in Oslo?", text_format=Weather)
        with pytest.raises(openai.BadRequestError) as info:
            client.responses.create(model="quick", input="hi", previous_response_id="resp_1")
    assert created.output_text == "Working it out: 6 * 7 = 42. The answer is 42."
    assert final.output_text == "".join(deltas) and final.output_text.endswith("The answer is 42.")
    assert isinstance(parsed.output_parsed, Weather)
    assert info.value.param == "previous_response_id"


def test_sdk_tool_round_trip(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}
    replies = iter([completion(tool_calls=[call], finish_reason="tool_calls"), completion("It snows in Oslo.")])

    async def run(seen: Any, send: Any) -> None:
        await json_reply(next(replies))(seen, send)

    fake.default = run
    cfg = f"providers:\n{fake_provider_yaml(fake.url)}models:\n  m: {{provider: up, model: up-m}}\n"
    with gateway(cfg) as (_, srv), sdk(srv.url) as client:
        first = client.responses.create(model="m", input="Weather in Oslo?", tools=TOOLS)  # type: ignore[arg-type]
        [fc] = first.output
        assert fc.type == "function_call" and fc.call_id == "call_1" and fc.name == "get_weather"
        second = client.responses.create(
            model="m",
            input=[
                {"role": "user", "content": "Weather in Oslo?"},
                *[item.model_dump(exclude_none=True) for item in first.output],  # type: ignore[misc]
                {"type": "function_call_output", "call_id": fc.call_id, "output": "snow"},
            ],
            tools=TOOLS,  # type: ignore[arg-type]
        )
    assert second.output_text == "It snows in Oslo."
    assert fake.seen[1].body["messages"][1:] == [
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "snow"},
    ]


@pytest.mark.parametrize("model", ["sim-fast", "best-of-3"])
def test_agent_with_a_tool_and_structured_output_runs_to_completion(gateway: GatewayRunner, model: str) -> None:
    from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled

    set_tracing_disabled(True)

    class Report(BaseModel):
        city: str
        summary: str

    calls: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        calls.append(city)
        return f"sunny in {city}"

    config = (Path(__file__).parent.parent / "config" / "gateway.yaml").read_text()
    with gateway(config) as (_, srv):

        async def run() -> Any:
            async with openai.AsyncOpenAI(base_url=srv.url + "/v1", api_key="k", max_retries=0) as client:
                agent = Agent(name="weather", instructions="Use the tool, then report.", tools=[get_weather],
                              output_type=Report, model=OpenAIResponsesModel(model=model, openai_client=client))
                return await Runner.run(agent, "What is the weather in Paris?")

        result = asyncio.run(run())
    assert calls == ["What is the weather in Paris?"]  # called once, with the simulator's argument: the request
    assert isinstance(result.final_output, Report)
    assert result.final_output.city and result.final_output.summary


def test_schema_check_can_fail() -> None:
    """The validator is not vacuous: a Response without its output is refused."""
    with pytest.raises(jsonschema.ValidationError):
        validate({"id": "resp_1", "object": "response", "created_at": 1}, "Response")
