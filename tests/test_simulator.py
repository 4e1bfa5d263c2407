"""The simulator: deterministic answers, real token counts, its profile's timing and faults."""

from __future__ import annotations

import random
import time

import httpx
import pytest

from gateway.books.tokens import approximate, count_messages
from gateway.config.providers import FailureInjection, SimulatorProfile, SimulatorProviderConfig
from gateway.providers.simulator.engine import SimulatedModel, final_number, pieces
from gateway.providers.simulator.server import SimulatorApp
from tests.conftest import GatewayRunner, http_client, sdk
from tests.support.servers import serving


def ask(model: SimulatedModel, question: str) -> str:
    return str(model.answer({"messages": [{"role": "user", "content": question}]}).message["content"])


def test_answers_are_deterministic_per_seed_model_and_prompt() -> None:
    a1 = SimulatedModel("m", SimulatorProfile(accuracy=0.5), 1, random.Random(0))
    a2 = SimulatedModel("m", SimulatorProfile(accuracy=0.5), 1, random.Random(99))
    other_seed = SimulatedModel("m", SimulatorProfile(accuracy=0.5), 2, random.Random(0))
    questions = [f"What is {i} * {i + 7}?" for i in range(40)]
    first = [ask(a1, q) for q in questions]
    assert first == [ask(a2, q) for q in questions]  # chaos randomness does not touch answers
    assert first != [ask(other_seed, q) for q in questions]
    assert ask(a1, "Tell me a story") == ask(a2, "Tell me a story")


def test_arithmetic_accuracy_follows_the_profile() -> None:
    model = SimulatedModel("m", SimulatorProfile(accuracy=0.7), 0, random.Random(0))
    n, right = 1000, 0
    for i in range(n):
        a, b = 10 + i % 83, 3 + i % 29
        if final_number(ask(model, f"What is {a} * {b}?")) == str(a * b):
            right += 1
    # binomial: 700 +- 4 sigma (sigma = 14.5)
    assert 642 <= right <= 758


def test_usage_is_the_token_count_of_what_was_said() -> None:
    model = SimulatedModel("m", SimulatorProfile(answer_tokens=30), 0, random.Random(0))
    body = {"messages": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hello there"}]}
    ans = model.answer(body)
    text = ans.message["content"]
    assert ans.usage.completion_tokens == approximate(text) == len(ans.pieces)
    assert "".join(ans.pieces) == text
    assert ans.usage.prompt_tokens == count_messages(body["messages"])
    assert ans.usage.completion_tokens >= 30
    limited = model.answer({**body, "max_tokens": 5})
    assert limited.usage.completion_tokens == 5 and limited.finish_reason == "length"
    assert pieces(limited.message["content"]) == ans.pieces[:5]


def test_failures_are_injected_at_the_configured_rate() -> None:
    model = SimulatedModel("m", SimulatorProfile(failures=FailureInjection(rate=0.2, timeout_rate=0.1)), 0,
                           random.Random(5))
    faults = [model.fault(stream=False) for _ in range(2000)]
    status = sum(1 for f in faults if f and f.kind == "status")
    hangs = sum(1 for f in faults if f and f.kind == "hang")
    assert 330 <= status <= 470 and 140 <= hangs <= 260


SIM_POOL = """
providers:
  sim:
    type: simulator
    seed: 11
    profiles:
      m1: {ttft_ms: 1, tokens_per_s: 20000, accuracy: 0.7}
      m2: {ttft_ms: 1, tokens_per_s: 20000, accuracy: 0.7}
      m3: {ttft_ms: 1, tokens_per_s: 20000, accuracy: 0.7}
      judge: {ttft_ms: 1, tokens_per_s: 20000}
models:
  m1: {provider: sim}
  m2: {provider: sim}
  m3: {provider: sim}
  judge: {provider: sim}
pools:
  vote: {mode: best-of, members: [m1, m2, m3], judge: {model: judge, swap: true}}
  blend: {mode: merge, members: [m1, m2, m3], judge: {model: judge}}
"""


@pytest.mark.parametrize("pool", ["vote", "blend"])
def test_a_pool_of_three_70_percent_members_measurably_beats_70_percent(gateway: GatewayRunner, pool: str) -> None:
    n = 300
    questions = [(17 + i, 23 + (i * 7) % 61) for i in range(n)]
    scores = {"m1": 0, "m2": 0, "m3": 0, pool: 0}
    with gateway(SIM_POOL) as (_, srv), http_client(srv.url) as client:
        for a, b in questions:
            for name in scores:
                r = client.post("/v1/chat/completions",
                                json={"model": name, "messages": [{"role": "user", "content": f"What is {a} * {b}?"}]})
                if final_number(r.json()["choices"][0]["message"]["content"]) == str(a * b):
                    scores[name] += 1
    members = [scores[m] / n for m in ("m1", "m2", "m3")]
    fused = scores[pool] / n
    # Majority of three independent 70% voters is right 78.4% of the time, more when wrong answers differ.
    # Require fused above 70% by 2.58 binomial sigmas (99%), and above every single member.
    assert fused > 0.7 + 2.58 * (0.21 / n) ** 0.5, scores
    assert fused > max(members), scores


def test_standalone_server_streams_at_the_profile_rate_and_cuts_when_told() -> None:
    cfg = SimulatorProviderConfig(type="simulator", profiles={
        "paced": SimulatorProfile(ttft_ms=50, tokens_per_s=100, answer_tokens=40),
        "cut": SimulatorProfile(ttft_ms=1, tokens_per_s=5000, failures=FailureInjection(cut_rate=1.0)),
        "down": SimulatorProfile(ttft_ms=1, failures=FailureInjection(rate=1.0, status=429)),
    })
    with serving(SimulatorApp(cfg)) as srv:
        client = sdk(srv.url)
        t0 = time.monotonic()
        chunks = list(client.chat.completions.create(model="paced", messages=[{"role": "user", "content": "hi"}],
                                                     stream=True, stream_options={"include_usage": True}))
        elapsed = time.monotonic() - t0
        usage = chunks[-1].usage
        assert usage is not None and usage.completion_tokens >= 40
        assert 0.05 + usage.completion_tokens / 100 * 0.8 <= elapsed <= 0.05 + usage.completion_tokens / 100 * 2 + 0.5
        with httpx.stream("POST", srv.url + "/v1/chat/completions",
                          json={"model": "cut", "messages": [{"role": "user", "content": "hi"}], "stream": True}) as r:
            text = r.read().decode()
        assert "[DONE]" not in text and '"finish_reason":"stop"' not in text and "data: " in text
        down = httpx.post(srv.url + "/v1/chat/completions", json={"model": "down", "messages": [{"role": "user",
                                                                                              "content": "x"}]})
        assert down.status_code == 429 and down.headers["retry-after"] == "1"
        assert httpx.get(srv.url + "/v1/models").json()["data"][0]["id"] == "paced"
