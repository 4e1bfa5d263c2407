"""Pools that mix provider types: an OpenAI-compatible, an Anthropic and a Gemini member, judged by an Anthropic
or a Gemini model, in every mode, streamed and not, through the gateway with the openai SDK as client.

The judge's structured verdict goes through each provider's own mechanism (Anthropic: a forced tool named
``fusion_verdict``; Gemini: ``responseSchema``), and comes back to the same strict parsing as any other.
The fake judges really read the prompt: they pick the label of the candidate that says "Canberra".
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest

from gateway.config.loader import ModelSpec
from gateway.config.providers import AnthropicProviderConfig, GeminiProviderConfig, Timeouts
from gateway.providers.anthropic import AnthropicProvider
from gateway.providers.base import Provider
from gateway.providers.gemini import GeminiProvider
from tests.conftest import GatewayRunner, sdk
from tests.support.fakes import FakeUpstream, sse_reply, text_chunks
from tests.support.native_fakes import (
    Behaviour,
    NativeFake,
    Seen,
    anthropic_events,
    anthropic_stream,
    anthropic_tool_stream,
    assemble,
    candidate_labels,
    gemini_events,
    gemini_stream,
    last_user_text,
    native_fake,
)

QUESTION = [{"role": "user", "content": "What is the capital of Australia?"}]
GPT = "Sydney is the capital of Australia."
CLAUDE = "Canberra is the capital of Australia."
GEM = "Melbourne is the capital of Australia."
MERGED = "Canberra is the capital of Australia; Sydney and Melbourne are only the largest cities."
OPENAI_USAGE = {"prompt_tokens": 14, "completion_tokens": 8, "total_tokens": 22}


@pytest.fixture
def native() -> Iterator[NativeFake]:
    with native_fake() as fake:
        yield fake


def pool_config(oa: str, native: str, *, mode: str, judge: str = "claude", fallback: str = "first-success") -> str:
    return f"""
providers:
  oa: {{type: openai, base_url: '{oa}/v1', api_key: k}}
  an: {{type: anthropic, base_url: '{native}/v1', api_key: k}}
  ge: {{type: gemini, base_url: '{native}/v1beta', api_key: k}}
models:
  gpt: {{provider: oa, price: {{input: 1, output: 2}}}}
  claude: {{provider: an, model: claude-x, price: {{input: 3, output: 15, cached_input: 0.3}}}}
  gem: {{provider: ge, model: gemini-x, price: {{input: 1.25, output: 10}}}}
pools:
  mixed: {{mode: {mode}, members: [gpt, claude, gem], judge: {{model: {judge}}}, fallback: {fallback}}}
"""


def winning_label(prompt: str) -> str:
    labels = candidate_labels(prompt)
    assert len(labels) == 3, prompt
    (label,) = [label for label, text in labels.items() if "Canberra" in text]
    return label


def anthropic_member_or_judge(verdict: Any = None, member_delay: float = 0.0) -> Behaviour:
    """claude-x as a member (its answer, again in each debate round), as the merge editor, and as the
    judge: a verdict for the label of the right answer, streamed as a forced tool's partial JSON."""

    async def run(seen: Seen, send: Any) -> None:
        body = seen.body
        tools = body.get("tools") or []
        if tools and tools[0]["name"] == "fusion_verdict":
            assert body["tool_choice"] == {"type": "tool", "name": "fusion_verdict"}
            label = winning_label(last_user_text(body["messages"]))
            given = verdict(label) if verdict is not None else {"analysis": f"{label} names Canberra.", "winner": label}
            text = given if isinstance(given, str) else json.dumps(given)
            pieces = [text[: len(text) // 2], text[len(text) // 2 :]]
            await anthropic_events(anthropic_tool_stream("fusion_verdict", pieces, forced=True))(seen, send)
        elif "editor of a model-fusion gateway" in body.get("system", ""):
            await anthropic_events(anthropic_stream([MERGED[:20], MERGED[20:]]))(seen, send)
        else:
            await anyio.sleep(member_delay)
            await anthropic_events(anthropic_stream([CLAUDE[:9], CLAUDE[9:]]), interval=0.05)(seen, send)

    return run


def gemini_member_or_judge(member_delay: float = 0.0) -> Behaviour:
    async def run(seen: Seen, send: Any) -> None:
        config = seen.body.get("generationConfig") or {}
        if "responseSchema" in config:
            label = winning_label(last_user_text(seen.body["contents"], key="parts"))
            verdict = json.dumps({"analysis": f"Only {label} is right.", "winner": label})
            await gemini_events(gemini_stream([verdict[:10], verdict[10:]]))(seen, send)
        else:
            await anyio.sleep(member_delay)
            await gemini_events(gemini_stream([GEM[:10], GEM[10:]]), interval=0.1)(seen, send)

    return run


def serve_members(oa: FakeUpstream, native: NativeFake, *, verdict: Any = None, member_delay: float = 0.0) -> None:
    """``member_delay``: how much later than gpt the native members start answering."""
    oa.behaviours["gpt"] = sse_reply(text_chunks(GPT, usage=OPENAI_USAGE))
    native.behaviours["claude-x"] = anthropic_member_or_judge(verdict, member_delay)
    native.behaviours["gemini-x"] = gemini_member_or_judge(member_delay)


def ask(url: str, *, stream: bool) -> tuple[str | None, dict[str, Any], dict[str, Any] | None]:
    """(content, fusion metadata, usage) of one request to the pool, through the openai SDK."""
    client = sdk(url)
    if not stream:
        resp = client.chat.completions.create(model="mixed", messages=QUESTION)  # type: ignore[arg-type]
        assert resp.usage is not None
        return resp.choices[0].message.content, resp.model_extra["fusion"], resp.usage.model_dump()  # type: ignore[index]
    final, chunks = assemble(
        client.chat.completions.create(
            model="mixed",
            messages=QUESTION,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None and all(c.model == "mixed" for c in chunks)
    return final.choices[0].message.content, last.model_extra["fusion"], last.usage.model_dump()  # type: ignore[index]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("mode", ["best-of", "merge", "debate"])
def test_mixed_pool_with_an_anthropic_judge_in_every_mode(
    gateway: GatewayRunner, fake: FakeUpstream, native: NativeFake, mode: str, stream: bool
) -> None:
    serve_members(fake, native)
    with gateway(pool_config(fake.url, native.url, mode=mode)) as (_, srv):
        content, meta, usage = ask(srv.url, stream=stream)

    assert meta["mode"] == mode and meta["degraded"] is False and meta["usage_estimated"] is False
    assert [m["model"] for m in meta["members"]] == ["gpt", "claude", "gem"]
    assert all(m["status"] == "ok" and m["usage"]["prompt_tokens"] > 0 for m in meta["members"])
    assert meta["judge"]["model"] == "claude" and meta["judge"]["status"] == "ok"
    if mode == "merge":
        assert content == MERGED
    else:
        assert content == CLAUDE
        assert meta["winner"] == "claude" and meta["judge"]["verdict"]["winner"] == "claude"
    if mode == "debate":
        assert [r["round"] for r in meta["rounds"]] == [1, 2]  # they never agree: every round runs
        assert len(fake.requests_for("gpt")) == 3
    # usage and cost add up over every call, whatever its provider
    assert usage is not None and usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert float(meta["cost_usd"]) > 0

    judge_calls = [
        s for s in native.requests_for("claude-x") if s.body.get("tools") or "editor" in s.body.get("system", "")
    ]
    assert len(judge_calls) == 1
    if mode != "merge":
        schema = judge_calls[0].body["tools"][0]["input_schema"]
        assert schema["required"] == ["analysis", "winner"] and len(schema["properties"]["winner"]["enum"]) == 3


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_mixed_pool_with_a_gemini_judge_picks_the_right_winner(
    gateway: GatewayRunner, fake: FakeUpstream, native: NativeFake, stream: bool
) -> None:
    serve_members(fake, native)
    with gateway(pool_config(fake.url, native.url, mode="best-of", judge="gem")) as (_, srv):
        content, meta, _ = ask(srv.url, stream=stream)
    assert content == CLAUDE and meta["winner"] == "claude"
    assert meta["judge"]["model"] == "gem" and meta["judge"]["status"] == "ok"
    (judged,) = [s for s in native.requests_for("gemini-x") if "responseSchema" in s.body.get("generationConfig", {})]
    schema = judged.body["generationConfig"]["responseSchema"]
    assert judged.body["generationConfig"]["responseMimeType"] == "application/json"
    assert schema["propertyOrdering"] == ["analysis", "winner"] and "additionalProperties" not in schema
    assert sorted(schema["properties"]["winner"]["enum"]) == sorted(
        candidate_labels(last_user_text(judged.body["contents"], key="parts"))
    )


@pytest.mark.parametrize(
    ("verdict", "reason"),
    [
        (lambda label: {"analysis": "x", "winner": "ZZ"}, "unknown_label"),
        (lambda label: {"analysis": "x", "winner": label, "confidence": 0.9}, "extra_keys"),
        (lambda label: {"winner": label}, "missing_field"),
        (lambda label: '{"analysis": "x", "winner": ', "not_json"),
    ],
    ids=["unknown-label", "extra-keys", "missing-field", "broken-json"],
)
def test_malformed_tool_input_falls_back_as_configured(
    gateway: GatewayRunner, fake: FakeUpstream, native: NativeFake, verdict: Any, reason: str
) -> None:
    serve_members(fake, native, verdict=verdict, member_delay=1.0)
    with gateway(pool_config(fake.url, native.url, mode="best-of")) as (_, srv):
        content, meta, _ = ask(srv.url, stream=False)
    # first-success: the member that finished first (gpt answers at once; the others a second later)
    assert content == GPT and meta["winner"] == "gpt" and meta["degraded"] is True
    assert meta["judge"]["status"] == "fallback" and meta["judge"]["fallback_reason"] == reason

    with gateway(pool_config(fake.url, native.url, mode="best-of", fallback="error")) as (_, srv):
        resp = httpx.post(srv.url + "/v1/chat/completions", json={"model": "mixed", "messages": QUESTION}, timeout=20)
    assert resp.status_code == 502 and resp.json()["error"]["code"] == "judge_failed"


def test_members_without_stream_usage_are_estimated_and_marked(
    gateway: GatewayRunner, fake: FakeUpstream, native: NativeFake
) -> None:
    fake.behaviours["gpt"] = sse_reply(text_chunks(GPT, usage=OPENAI_USAGE))
    native.behaviours["claude-x"] = anthropic_events(anthropic_stream([CLAUDE], usage=False))
    native.behaviours["gemini-x"] = gemini_events(gemini_stream([GEM], usage=False))
    config = (
        pool_config(fake.url, native.url, mode="best-of")
        .replace(", judge: {model: claude}", "")
        .replace("members: [gpt, claude, gem]", "members: [claude, gem], judge: {model: gpt}")
    )
    fake.behaviours["gpt"] = sse_reply(text_chunks(json.dumps({"analysis": "x", "winner": "Q"})))
    with gateway(config) as (_, srv):
        _, meta, usage = ask(srv.url, stream=False)
    entries = {m["model"]: m for m in meta["members"]}
    for name in ("claude", "gem"):
        assert entries[name]["usage"]["usage_estimated"] is True and entries[name]["usage"]["prompt_tokens"] > 0
    assert meta["usage_estimated"] is True
    assert usage is not None and usage["usage_estimated"] is True


def _spec(provider: str, upstream: str) -> ModelSpec:
    return ModelSpec(name="m", upstream=upstream, provider=provider, price=None, timeouts=Timeouts())


async def _drain(provider: Provider, spec: ModelSpec) -> tuple[Any, int]:
    body = {"model": spec.upstream, "messages": QUESTION, "stream": True, "stream_options": {"include_usage": True}}
    try:
        async with provider.stream(spec, body) as chunks:
            got = [c async for c in chunks]
        return chunks.usage, len(got)
    finally:
        await provider.aclose()


@pytest.mark.parametrize("usage", [True, False], ids=["reported", "omitted"])
def test_providers_leave_stream_usage_unset_when_the_upstream_gives_none(native: NativeFake, usage: bool) -> None:
    native.behaviours["claude-x"] = anthropic_events(anthropic_stream([CLAUDE], usage=usage))
    native.behaviours["gemini-x"] = gemini_events(gemini_stream([GEM], usage=usage))
    anthropic = AnthropicProvider("an", AnthropicProviderConfig(type="anthropic", base_url=native.url + "/v1"))
    gemini = GeminiProvider("ge", GeminiProviderConfig(type="gemini", base_url=native.url + "/v1beta"))
    an_usage, an_chunks = anyio.run(_drain, anthropic, _spec("an", "claude-x"))
    ge_usage, ge_chunks = anyio.run(_drain, gemini, _spec("ge", "gemini-x"))
    if usage:
        assert an_usage is not None and an_usage.completion_tokens == 15 and not an_usage.estimated
        assert ge_usage is not None and ge_usage.completion_tokens == 4 + 37 and not ge_usage.estimated
    else:
        # None, not zeros: the gateway then counts the call itself and marks it estimated
        assert an_usage is None and ge_usage is None
    # role+text and finish (+ the usage chunk only when there is usage to report)
    assert an_chunks == 2 + usage and ge_chunks == 3 + usage
