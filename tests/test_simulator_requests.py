"""The simulator honours what the caller asks of an answer, as an upstream would, deterministically:
response_format (json_schema, json_object), a forced tool_choice, n, logprobs, stop."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from gateway.config.providers import SimulatorProfile
from gateway.providers.simulator.engine import SimulatedModel, final_number
from gateway.providers.simulator.provider import completion_body, stream_chunks

Q = [{"role": "user", "content": "What is 37 * 12?"}]
NESTED = {
    "type": "object",
    "properties": {
        "reasoning": {"type": "string", "minLength": 5},
        "result": {"type": "integer"},
        "confidence": {"type": "number", "minimum": 0.5, "maximum": 1},
        "unit": {"enum": ["apples", "pears"]},
        "steps": {"type": "array", "items": {"$ref": "#/$defs/Step"}, "minItems": 2},
        "note": {"anyOf": [{"type": "null"}, {"type": "string", "format": "date"}]},
    },
    "required": ["reasoning", "result", "confidence", "unit", "steps", "note"],
    "additionalProperties": False,
    "$defs": {"Step": {"type": "object", "properties": {"done": {"type": "boolean"}, "n": {"type": "integer"}},
                       "required": ["done", "n"], "additionalProperties": False}},
}


def model(name: str = "m", accuracy: float = 0.5) -> SimulatedModel:
    return SimulatedModel(name, SimulatorProfile(accuracy=accuracy), 3, random.Random(0))


def schema_format(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "Out", "strict": True, "schema": schema}}


def test_json_schema_answers_validate_and_carry_the_models_own_arithmetic() -> None:
    wrong_seen = right_seen = 0
    for name in ("a", "b", "c", "d", "e", "f", "g", "h"):
        for a, b in ((37, 12), (81, 4), (15, 15)):
            q = [{"role": "user", "content": f"What is {a} * {b}?"}]
            m = model(name)
            text = m.answer({"messages": q}).message["content"]
            body = {"messages": q, "response_format": schema_format(NESTED)}
            out = m.answer(body).message["content"]
            value = json.loads(out)
            assert list(Draft202012Validator(NESTED).iter_errors(value)) == []
            # the same number as the text answer, right or wrong, in the schema's numeric field
            assert str(value["result"]) == final_number(text)
            right_seen += value["result"] == a * b
            wrong_seen += value["result"] != a * b
            assert m.answer(body).message["content"] == out  # deterministic
    assert right_seen and wrong_seen


def test_a_schema_without_a_numeric_field_gets_the_number_as_text_and_json_object_an_object() -> None:
    m = model(accuracy=1.0)
    only_text = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"],
                 "additionalProperties": False}
    assert json.loads(m.answer({"messages": Q, "response_format": schema_format(only_text)}).message["content"]) == {
        "answer": "444"}
    assert json.loads(m.answer({"messages": Q, "response_format": {"type": "json_object"}}).message["content"]) == {
        "answer": 444}
    hello = m.answer({"messages": [{"role": "user", "content": "Hello"}], "response_format": {"type": "json_object"}})
    assert isinstance(json.loads(hello.message["content"])["answer"], str)


TOOLS = [
    {"type": "function", "function": {"name": "search", "parameters": {
        "type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}}},
    {"type": "function", "function": {"name": "record_product", "parameters": NESTED}},
]


@pytest.mark.parametrize("choice", [{"type": "function", "function": {"name": "record_product"}}, "required"])
def test_a_forced_tool_choice_calls_that_tool_with_arguments_valid_for_its_schema(choice: Any) -> None:
    # after a tool result (not a user turn) only a forced choice makes the model call again
    convo = [*Q, {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function",
              "function": {"name": "search", "arguments": "{}"}}]}, {"role": "tool", "tool_call_id": "c1",
              "content": "nothing found"}]
    ans = model(accuracy=1.0).answer({"messages": convo, "tools": TOOLS, "tool_choice": choice})
    assert ans.finish_reason == "tool_calls"
    (call,) = ans.message["tool_calls"]
    expected = "record_product" if isinstance(choice, dict) else "search"
    assert call["function"]["name"] == expected
    args = json.loads(call["function"]["arguments"])
    schema = NESTED if expected == "record_product" else TOOLS[0]["function"]["parameters"]
    assert list(Draft202012Validator(schema).iter_errors(args)) == []
    if expected == "record_product":
        assert args["result"] == 444
    auto = model().answer({"messages": convo, "tools": TOOLS})
    assert auto.finish_reason == "stop" and "tool_calls" not in auto.message


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_n_choices_and_logprobs_have_the_openai_shape(stream: bool) -> None:
    m = model("fast", accuracy=0.5)
    body = {"messages": [{"role": "user", "content": "What is 38 * 17?"}], "n": 4, "logprobs": True,
            "top_logprobs": 3}
    ans = m.answer(body)
    if stream:
        state: ChatCompletionStreamState = ChatCompletionStreamState()
        for _, c in stream_chunks("fast", ans, include_usage=True):
            state.handle_chunk(ChatCompletionChunk.model_validate(c))
        done = state.get_final_completion()
    else:
        done = ChatCompletion.model_validate(completion_body("fast", ans))
    assert [c.index for c in done.choices] == [0, 1, 2, 3]
    assert len({c.message.content for c in done.choices}) > 1  # asked four times, not one answer copied
    assert done.usage is not None and done.usage.completion_tokens == sum(len(c.pieces) for c in ans.choices)
    for choice in done.choices:
        assert choice.finish_reason == "stop"
        assert choice.logprobs is not None and choice.logprobs.content is not None
        assert "".join(t.token for t in choice.logprobs.content) == choice.message.content
        for t in choice.logprobs.content:
            assert t.logprob <= 0 and t.bytes == list(t.token.encode()) and len(t.top_logprobs) == 3
            assert t.top_logprobs[0].token == t.token
            assert all(x.logprob <= t.logprob for x in t.top_logprobs)
    assert m.answer(body) == ans


def test_stop_ends_the_answer_before_the_sequence() -> None:
    ans = model(accuracy=1.0).answer({"messages": Q, "stop": [" =", "never"]})
    assert ans.message["content"] == "Working it out: 37 * 12" and ans.finish_reason == "stop"
