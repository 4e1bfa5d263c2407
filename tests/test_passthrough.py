"""A model name is a passthrough: the official openai SDK gets correct completions, JSON and streamed."""

from __future__ import annotations

import json

import httpx
import pytest
from openai.types.chat import ChatCompletion

from gateway.config.providers import SimulatorProfile, SimulatorProviderConfig
from gateway.providers.simulator.server import SimulatorApp
from tests.conftest import GatewayRunner, fake_provider_yaml, sdk
from tests.support.fakes import FakeUpstream, completion, json_reply, sse_reply, text_chunks
from tests.support.native_fakes import assemble
from tests.support.servers import serving

SIM_CONFIG = """
providers:
  sim: {type: simulator, seed: 3, profiles: {quick: {ttft_ms: 5, tokens_per_s: 2000, accuracy: 1.0}}}
models:
  quick: {provider: sim, price: {input: 1, output: 2}}
"""


def test_json_completion_through_the_sdk(gateway: GatewayRunner) -> None:
    with gateway(SIM_CONFIG) as (_, srv):
        client = sdk(srv.url)
        resp = client.chat.completions.create(model="quick", messages=[{"role": "user", "content": "What is 6 * 7?"}])
    assert resp.model == "quick"
    assert resp.choices[0].message.content is not None and resp.choices[0].message.content.endswith("The answer is 42.")
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None and resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
    ChatCompletion.model_validate(resp.model_dump())


def test_stream_through_the_sdk_matches_the_json_answer(gateway: GatewayRunner) -> None:
    with gateway(SIM_CONFIG) as (_, srv):
        client = sdk(srv.url)
        msgs = [{"role": "user", "content": "Tell me about fusion."}]
        plain = client.chat.completions.create(model="quick", messages=msgs)  # type: ignore[arg-type]
        final, chunks = assemble(
            client.chat.completions.create(
                model="quick",
                messages=msgs,
                stream=True,  # type: ignore[arg-type]
                stream_options={"include_usage": True},
            )
        )
    assert final.choices[0].message.content == plain.choices[0].message.content
    assert len(chunks) > 4  # relayed piece by piece, not one blob
    assert all(c.model == "quick" for c in chunks)
    assert len({c.id for c in chunks}) == 1 and len({c.created for c in chunks}) == 1
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == plain.usage.completion_tokens  # type: ignore[union-attr]
    assert all(c.usage is None for c in chunks[:-1])


def test_usage_chunk_only_when_asked(gateway: GatewayRunner) -> None:
    with gateway(SIM_CONFIG) as (_, srv):
        client = sdk(srv.url)
        _, chunks = assemble(
            client.chat.completions.create(model="quick", messages=[{"role": "user", "content": "hi"}], stream=True)
        )
    assert all(c.choices for c in chunks)  # no empty-choices usage chunk
    assert all(c.usage is None for c in chunks)


def test_every_field_reaches_the_upstream_unchanged_except_model(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    fake.behaviours["upstream-name"] = json_reply(completion("ok"))
    config = "providers:\n" + fake_provider_yaml(fake.url) + "models:\n  mine: {provider: up, model: upstream-name}\n"
    body = {
        "model": "mine",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
        ],
        "temperature": 0.3,
        "top_p": 0.9,
        "max_tokens": 55,
        "seed": 11,
        "logit_bias": {"50256": -100},
        "response_format": {"type": "json_object"},
        "user": "u-1",
        "some_future_field": {"nested": [1, 2, {"x": None}]},
    }
    with gateway(config) as (_, srv):
        resp = httpx.post(srv.url + "/v1/chat/completions", json=body)
    assert resp.status_code == 200, resp.text
    assert resp.json()["model"] == "mine"
    (seen,) = fake.requests_for("upstream-name")
    assert seen.body == {**body, "model": "upstream-name"}
    assert seen.headers["authorization"] == "Bearer sk-operator-secret-0123456789"


def test_streamed_fields_forwarded_and_usage_requested_upstream(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    usage = {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}
    fake.behaviours["m"] = sse_reply(text_chunks("Hello there, friend.", usage=usage))
    config = "providers:\n" + fake_provider_yaml(fake.url) + "models:\n  m: {provider: up}\n"
    with gateway(config) as (_, srv):
        final, chunks = assemble(
            sdk(srv.url).chat.completions.create(
                model="m",
                messages=[{"role": "user", "content": "hi"}],
                stream=True,
                stream_options={"include_usage": False},
                extra_body={"vendor_knob": 3},
            )
        )
    assert final.choices[0].message.content == "Hello there, friend."
    (seen,) = fake.requests_for("m")
    assert seen.body["vendor_knob"] == 3
    assert seen.body["stream"] is True
    # the gateway always asks for usage upstream (exact cost), but the caller who did not ask gets none
    assert seen.body["stream_options"] == {"include_usage": True}
    assert all(c.choices for c in chunks)


def test_against_the_simulator_over_a_real_socket(gateway: GatewayRunner) -> None:
    sim = SimulatorApp(
        SimulatorProviderConfig(
            type="simulator", seed=3, profiles={"quick": SimulatorProfile(ttft_ms=5, tokens_per_s=2000, accuracy=1.0)}
        )
    )
    with serving(sim) as upstream:
        config = (
            f"providers:\n  remote: {{type: openai, base_url: {upstream.url}/v1}}\n"
            "models:\n  quick: {provider: remote}\n"
        )
        with gateway(config) as (_, srv):
            client = sdk(srv.url)
            msgs = [{"role": "user", "content": "What is 19 + 23?"}]
            resp = client.chat.completions.create(model="quick", messages=msgs)  # type: ignore[arg-type]
            final, chunks = assemble(client.chat.completions.create(model="quick", messages=msgs, stream=True))  # type: ignore[arg-type]
    assert resp.choices[0].message.content == final.choices[0].message.content
    assert "The answer is 42." in (resp.choices[0].message.content or "")
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_models_lists_every_callable_name(gateway: GatewayRunner) -> None:
    with gateway(SIM_CONFIG) as (_, srv):
        models = sdk(srv.url).models.list()
        live = httpx.get(srv.url + "/livez")
        ready = httpx.get(srv.url + "/readyz")
    assert [m.id for m in models.data] == ["quick"]
    assert models.data[0].object == "model"
    assert live.status_code == 200 and ready.status_code == 200


@pytest.mark.parametrize("content", ["ünïcødé ✓ 日本語 🎉", "line1\nline2\r\nline3"])
def test_content_survives_the_relay_byte_for_byte(gateway: GatewayRunner, fake: FakeUpstream, content: str) -> None:
    fake.behaviours["m"] = sse_reply(text_chunks(content, pieces=7))
    config = "providers:\n" + fake_provider_yaml(fake.url) + "models:\n  m: {provider: up}\n"
    with gateway(config) as (_, srv):
        final, _ = assemble(
            sdk(srv.url).chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}], stream=True)
        )
    assert final.choices[0].message.content == content
    assert json.dumps(content)  # sanity: the case really has non-ASCII / control characters
