"""Requests are held to the official description before any upstream call, and nothing a caller sends
gets a 5xx: the field table against the spec, nesting, redirect fields, and a fuzz run of
``POST /chat/completions`` from the official description (a copy in tests/data)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from gateway.wire.fields import FIELDS
from tests.conftest import GatewayRunner, http_client
from tests.support.fakes import FakeUpstream, answer

SPEC = Path(__file__).parent / "data" / "openai-chat-completions.yaml"
HI = [{"role": "user", "content": "hi"}]
PARSED = {"model", "messages", "stream", "stream_options"}  # checked by the parser itself, not the table

SIM = """
providers:
  sim: {type: simulator, profiles: {m: {ttft_ms: 0, tokens_per_s: 100000}}}
models:
  m: {provider: sim}
pools:
  p: {mode: best-of, members: [m, m], judge: {model: m}}
"""


@cache
def spec() -> dict[str, Any]:
    return yaml.load(SPEC.read_text(), Loader=yaml.CSafeLoader)  # type: ignore[no-any-return]


def resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = spec()["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
    return node


def properties(node: dict[str, Any]) -> dict[str, Any]:
    node = resolve(node)
    out: dict[str, Any] = {}
    for part in node.get("allOf", []):
        out.update(properties(part))
    out.update(node.get("properties", {}))
    return out


def json_types(node: dict[str, Any]) -> set[str]:
    node = resolve(node)
    types = {node["type"]} if isinstance(node.get("type"), str) else set(node.get("type", []))
    for key in ("anyOf", "oneOf", "allOf"):
        for part in node.get(key, []):
            types |= json_types(part)
    if "integer" in types:
        types.add("number")  # a whole number is also a number
    return types


WRONG = {"string": "hot", "number": 1.5, "boolean": True, "object": {"k": 1}, "array": ["x"]}


def request_properties() -> dict[str, Any]:
    return properties(spec()["components"]["schemas"]["CreateChatCompletionRequest"])


def test_the_field_table_covers_every_standard_field() -> None:
    assert set(request_properties()) - PARSED == set(FIELDS)


def test_a_wrongly_typed_field_is_refused_before_any_upstream_call(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    config = f"providers:\n  up: {{type: openai, base_url: '{fake.url}/v1'}}\nmodels:\n  m: {{provider: up}}\n" \
             "pools:\n  p: {mode: best-of, members: [m, m], judge: {model: m}}\n"
    checked = 0
    with gateway(config) as (_, srv), http_client(srv.url) as client:
        for name, schema in sorted(request_properties().items()):
            if name in PARSED:
                continue
            allowed = json_types(schema) - {"null"}
            bad = next(v for t, v in WRONG.items() if t not in allowed)
            for model in ("m", "p"):
                resp = client.post("/v1/chat/completions", json={"model": model, "messages": HI, name: bad})
                assert resp.status_code == 400, (name, bad, resp.text)
                assert resp.json()["error"] == {"message": f"'{name}' must be {FIELDS[name].what}",
                                                "type": "invalid_request_error", "param": name, "code": "invalid_type"}
                checked += 1
    assert checked == 2 * len(FIELDS)
    assert fake.seen == []


BAD_SHAPES = [
    ({"functions": [{"description": "no name"}]}, "functions[0].name", "'functions[0].name' is a required property"),
    ({"tools": [{"type": "function", "function": {"name": 3}}]}, "tools[0].function.name",
     "'tools[0].function.name' must be a string"),
    ({"stop": ["a", 1]}, "stop[1]", "'stop[1]' must be a string"),
    ({"messages": [*HI, {"role": "assistant", "content": None,
                         "tool_calls": [{"id": "c1", "type": "function", "function": ["get_weather"]}]}]},
     "messages[1].tool_calls[0].function", "'messages[1].tool_calls[0].function' must be an object"),
    ({"messages": [{"role": "user", "content": [{"text": "no type"}]}]}, "messages[0].content[0].type",
     "'messages[0].content[0].type' is a required property"),
]


@pytest.mark.parametrize(("extra", "param", "message"), BAD_SHAPES)
def test_broken_nested_shapes_are_400_for_models_and_pools(
    gateway: GatewayRunner, extra: dict[str, Any], param: str, message: str
) -> None:
    with gateway(SIM) as (_, srv):
        answers = [httpx.post(srv.url + "/v1/chat/completions", json={"model": model, "messages": HI, **extra,
                                                                       "stream": stream})
                   for model in ("m", "p") for stream in (False, True)]
    for resp in answers:
        assert resp.status_code == 400, resp.text
        assert resp.json()["error"] == {"message": message, "type": "invalid_request_error", "param": param,
                                        "code": resp.json()["error"]["code"]}


def test_unknown_fields_pass_through_unchanged(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    fake.behaviours["m"] = answer("ok")
    extra = {"vendor_knob": {"depth": [1, {"x": None}]}, "temperature": 0.2, "top_k": 5, "seed": None}
    config = f"providers:\n  up: {{type: openai, base_url: '{fake.url}/v1'}}\nmodels:\n  m: {{provider: up}}\n"
    with gateway(config) as (_, srv):
        resp = httpx.post(srv.url + "/v1/chat/completions", json={"model": "m", "messages": HI, **extra})
    assert resp.status_code == 200
    (seen,) = fake.seen
    assert {k: seen.body[k] for k in extra} == extra


@pytest.mark.parametrize("where", ["top", "content", "schema"])
def test_nesting_the_gateway_cannot_forward_is_a_400(gateway: GatewayRunner, where: str) -> None:
    deep = "__DEEP__"
    body: dict[str, Any] = {"model": "m", "messages": HI}
    if where == "top":
        body["vendor_knob"] = deep
    elif where == "content":
        body["messages"] = [{"role": "user", "content": [{"type": "text", "text": "hi", "extra": deep}]}]
    else:
        body["tools"] = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object",
                                                                                    "x": deep}}}]
    field = {"top": "vendor_knob", "content": "messages", "schema": "tools"}[where]
    with gateway(SIM) as (_, srv), http_client(srv.url) as client:
        for depth in (129, 253, 254, 300, 999, 1023, 1024, 5000):
            raw = json.dumps(body).replace(json.dumps(deep), "[" * depth + "]" * depth).encode()
            resp = client.post("/v1/chat/completions", content=raw, headers={"content-type": "application/json"})
            assert resp.status_code == 400, (depth, resp.text)
            err = resp.json()["error"]
            if err["code"] == "invalid_json":  # past the parser's own limit of 1024 levels
                assert depth >= 1020 and "depth limit exceeded" in err["message"]
            else:
                assert err == {"message": f"'{field}' is nested too deeply: at most 128 levels of arrays and objects "
                                          "are accepted", "type": "invalid_request_error", "param": field,
                               "code": "nesting_too_deep"}, depth


def nested(depth: int) -> Any:
    return json.loads("[" * depth + "]" * depth)


def test_nesting_the_gateway_can_forward_is_forwarded(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    fake.behaviours["m"] = answer("ok")
    config = f"providers:\n  up: {{type: openai, base_url: '{fake.url}/v1'}}\nmodels:\n  m: {{provider: up}}\n"
    with gateway(config) as (_, srv):
        resp = httpx.post(srv.url + "/v1/chat/completions",
                          json={"model": "m", "messages": HI, "vendor_knob": nested(120)})
    assert resp.status_code == 200
    assert fake.seen[0].body["vendor_knob"] == nested(120)


REDIRECTS = ["API_KEY", "apiBase", "baseURL", "api-key", "Base-Url", "headers", "default_headers", "extraHeaders",
             "extra_query", "DefaultQuery"]


def test_redirect_fields_are_refused_however_they_are_spelt(gateway: GatewayRunner) -> None:
    with gateway(SIM) as (_, srv), http_client(srv.url) as client:
        for name in REDIRECTS:
            top = client.post("/v1/chat/completions", json={"model": "m", "messages": HI, name: "x"})
            deep = client.post("/v1/chat/completions",
                               json={"model": "m", "messages": HI, "metadata": {"a": {name: "x"}}})
            assert top.status_code == 400 and top.json()["error"]["param"] == name
            assert top.json()["error"]["code"] == "forbidden_parameter"
            assert deep.status_code == 400 and deep.json()["error"]["param"] == f"metadata.a.{name}"


# ------------------------------------------------------------------ fuzzing from the official description

FUZZ_EXAMPLES = 25


def operation() -> Any:
    import schemathesis

    return schemathesis.openapi.from_path(str(SPEC))["/chat/completions"]["POST"]


def check_answer(resp: httpx.Response, body: Any) -> None:
    """No 5xx; a 200 is a valid completion or a valid stream; anything else is the error envelope."""
    assert resp.status_code < 500, resp.text
    if resp.status_code != 200:
        err = resp.json()["error"]
        assert set(err) == {"message", "type", "param", "code"} and isinstance(err["message"], str)
        return
    if resp.headers["content-type"].startswith("text/event-stream"):
        events = [x[6:] for x in resp.text.split("\n\n") if x.startswith("data: ")]
        assert events[-1] == "[DONE]", resp.text
        for ev in events[:-1]:
            ChatCompletionChunk.model_validate_json(ev)
    else:
        ChatCompletion.model_validate(resp.json())


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_fuzzed_requests_from_the_official_description_never_get_a_5xx(gateway: GatewayRunner, mode: str) -> None:
    from schemathesis import GenerationMode

    cases = operation().as_strategy(GenerationMode.POSITIVE if mode == "positive" else GenerationMode.NEGATIVE)
    with gateway(SIM) as (_, srv), http_client(srv.url) as client:

        @seed(1313)
        @settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None, derandomize=False,
                  suppress_health_check=list(HealthCheck))
        @given(case=cases, model=st.sampled_from(["m", "p", "gpt-unknown"]))
        def run(case: Any, model: str) -> None:
            body = case.body
            if isinstance(body, dict) and isinstance(body.get("model"), str):
                body = {**body, "model": model}  # most generated names are unknown: aim at real ones too
            raw = body if isinstance(body, bytes) else json.dumps(body).encode()
            resp = client.post("/v1/chat/completions", content=raw,
                               headers={"content-type": "application/json"})
            check_answer(resp, body)

        run()
