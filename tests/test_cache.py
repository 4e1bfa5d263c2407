"""The response cache: a repeated question is answered from the cache, costs 0, and waits for no upstream;
callers and requests that opt out, sampled requests and other tenants never get a cached answer; entries
expire and are bounded; streams are replayed as streams; a pool's fused answer is what is cached; two
gateways share one Redis cache."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState

from tests.conftest import GatewayRunner, fake_provider_yaml, sdk
from tests.support.fakes import FakeUpstream, answer, completion, json_reply
from tests.support.procs import gateway_process, redis_server
from tests.support.servers import serving
from tests.test_deployments import hits, sample

HI = [{"role": "user", "content": "What is 6 * 7?"}]
USAGE = {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500}


def config(fake: FakeUpstream, cache: str = "{enabled: true}", extra: str = "") -> str:
    return (
        f"cache: {cache}\n{extra}providers:\n" + fake_provider_yaml(fake.url)
        + "models:\n  m: {provider: up, model: up-m, price: {input: 1, output: 2}}\n"
        + "  o: {provider: up, model: up-o, price: {input: 1, output: 2}}\n"
        + "  j: {provider: up, model: up-j, price: {input: 1, output: 2}}\n"
        + "pools:\n  p: {mode: merge, members: [m, o], judge: {model: j}}\n"
    )


def as_hit(miss: dict[str, Any]) -> dict[str, Any]:
    """The answer of a miss as a hit on it returns it: the same, but costing 0 in ``usage`` too."""
    assert miss["usage"]["fusion_cost_usd"] > 0
    return {**miss, "usage": {**miss["usage"], "fusion_cost_usd": 0}}


def ask(url: str, model: str = "m", headers: dict[str, str] | None = None, **body: Any) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", json={"model": model, "messages": HI, **body},
                      headers=headers or {}, timeout=20)


@pytest.fixture
def answering(fake: FakeUpstream) -> FakeUpstream:
    fake.behaviours["up-m"] = answer("42 from m", usage=USAGE)
    fake.behaviours["up-o"] = answer("42 from o", usage=USAGE)
    fake.behaviours["up-j"] = answer("42, merged", usage=USAGE)
    return fake


def test_a_repeat_is_a_hit_that_costs_nothing_and_calls_no_upstream(gateway: GatewayRunner,
                                                                     answering: FakeUpstream) -> None:
    with gateway(config(answering)) as (_, srv):
        first = ask(srv.url, temperature=0)
        second = ask(srv.url, temperature=0, user="someone-else-in-the-same-tenant")
        scrape = httpx.get(f"{srv.url}/metrics").text
    assert first.headers["x-fusion-cache"] == "miss" and first.headers["x-fusion-cost-usd"] == "0.002"
    assert second.headers["x-fusion-cache"] == "hit" and second.headers["x-fusion-cost-usd"] == "0"
    assert second.json() == as_hit(first.json())
    assert hits(answering, "up-m") == 1
    assert sample(scrape, "fusion_cache_hits_total", pool="m") == 1
    assert sample(scrape, "fusion_cache_misses_total", pool="m") == 1
    assert sample(scrape, "fusion_cache_saved_usd_total", pool="m") == pytest.approx(0.002)


def test_opting_out_and_sampling_bypass_the_cache(gateway: GatewayRunner, answering: FakeUpstream) -> None:
    with gateway(config(answering)) as (_, srv):
        ask(srv.url)
        no_cache = ask(srv.url, headers={"cache-control": "no-cache"})
        off = ask(srv.url, fusion={"cache": False})
        sampled = [ask(srv.url, temperature=0.7) for _ in range(2)]
        bad = ask(srv.url, fusion={"cache": "no"})
        other_option = ask(srv.url, fusion={"mode": "merge"})
    assert "x-fusion-cache" not in no_cache.headers and "x-fusion-cache" not in off.headers
    assert all("x-fusion-cache" not in r.headers for r in sampled)
    assert hits(answering, "up-m") == 5
    assert bad.status_code == 400 and bad.json()["error"]["message"] == "'fusion.cache' must be a boolean"
    assert other_option.status_code == 400 and other_option.json()["error"]["param"] == "fusion"


def test_sampled_requests_are_cached_when_the_operator_says_so(gateway: GatewayRunner,
                                                               answering: FakeUpstream) -> None:
    with gateway(config(answering, "{enabled: true, sampled: true}")) as (_, srv):
        replies = [ask(srv.url, temperature=0.7) for _ in range(2)]
    assert [r.headers["x-fusion-cache"] for r in replies] == ["miss", "hit"]


def test_fields_that_change_the_answer_change_the_key(gateway: GatewayRunner, answering: FakeUpstream) -> None:
    with gateway(config(answering)) as (_, srv):
        ask(srv.url)
        ask(srv.url, max_tokens=5)
        ask(srv.url, model="o")
        ask(srv.url, messages=[{"role": "user", "content": "What is 6 * 8?"}])
        again = ask(srv.url, stream_options=None, metadata={"trace": "x"})
    assert hits(answering, "up-m") == 3 and hits(answering, "up-o") == 1
    assert again.headers["x-fusion-cache"] == "hit"


KEYS = """auth:
  keys:
    - {name: alpha, key: sk-alpha-0123456789, pools: ["*"], models: ["*"]}
    - {name: beta, key: sk-beta-0123456789, pools: ["*"], models: ["*"]}
"""


@pytest.mark.parametrize(("scope", "beta_sees"), [("key", "miss"), ("shared", "hit")])
def test_tenants_never_see_each_other_s_answers_unless_shared(
    gateway: GatewayRunner, answering: FakeUpstream, scope: str, beta_sees: str
) -> None:
    with gateway(config(answering, f"{{enabled: true, scope: {scope}}}", KEYS)) as (_, srv):
        a = ask(srv.url, headers={"authorization": "Bearer sk-alpha-0123456789"})
        b = ask(srv.url, headers={"authorization": "Bearer sk-beta-0123456789"})
    assert (a.headers["x-fusion-cache"], b.headers["x-fusion-cache"]) == ("miss", beta_sees)


def test_entries_expire_and_are_bounded(gateway: GatewayRunner, answering: FakeUpstream) -> None:
    import time

    with gateway(config(answering, "{enabled: true, ttl_s: 0.3}")) as (_, srv):
        ask(srv.url)
        time.sleep(0.35)
        assert ask(srv.url).headers["x-fusion-cache"] == "miss"
    with gateway(config(answering, "{enabled: true, max_entries: 1}")) as (_, srv):
        ask(srv.url)
        ask(srv.url, model="o")
        assert ask(srv.url).headers["x-fusion-cache"] == "miss"  # evicted by o's answer
        assert ask(srv.url).headers["x-fusion-cache"] == "hit"
    with gateway(config(answering, "{enabled: true, max_entry_bytes: 100}")) as (_, srv):
        ask(srv.url)
        assert ask(srv.url).headers["x-fusion-cache"] == "miss"  # too large to keep


def assemble(url: str, model: str, include_usage: bool) -> tuple[Any, list[Any]]:
    client = sdk(url)
    state: ChatCompletionStreamState = ChatCompletionStreamState()
    chunks = []
    opts = {"stream_options": {"include_usage": True}} if include_usage else {}
    raw = client.chat.completions.with_raw_response.create(model=model, messages=HI, stream=True,  # type: ignore[arg-type, call-overload]
                                                           **opts)
    header = raw.headers.get("x-fusion-cache")
    for c in raw.parse():
        chunks.append(c)
        state.handle_chunk(c)
    return (header, state.get_final_completion()), chunks


def test_streams_are_replayed_as_streams(gateway: GatewayRunner, answering: FakeUpstream) -> None:
    with gateway(config(answering)) as (_, srv):
        plain = ask(srv.url).json()
        (header, final), chunks = assemble(srv.url, "m", include_usage=True)
        streamed_first = assemble(srv.url, "o", include_usage=False)
        json_after_stream = ask(srv.url, model="o")
    assert header == "hit"
    assert final.choices[0].message.content == plain["choices"][0]["message"]["content"] == "42 from m"
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 1500
    assert chunks[-1].usage.model_extra["fusion_cost_usd"] == 0  # a hit costs nothing, in usage too
    assert streamed_first[0][0] == "miss"
    assert json_after_stream.headers["x-fusion-cache"] == "hit"
    assert json_after_stream.json()["choices"][0]["message"]["content"] == "42 from o"
    assert hits(answering, "up-m") == 1 and hits(answering, "up-o") == 1


def test_a_pool_s_fused_answer_is_cached(gateway: GatewayRunner, answering: FakeUpstream) -> None:
    with gateway(config(answering)) as (_, srv):
        first = ask(srv.url, "p")
        second = ask(srv.url, "p")
        (header, final), chunks = assemble(srv.url, "p", include_usage=False)
        scrape = httpx.get(f"{srv.url}/metrics").text
    assert first.headers["x-fusion-cache"] == "miss"
    cost = Decimal(first.headers["x-fusion-cost-usd"])
    assert cost > 0
    assert second.headers["x-fusion-cache"] == "hit" and second.headers["x-fusion-cost-usd"] == "0"
    body = second.json()
    assert body["choices"] == first.json()["choices"]
    assert body["fusion"]["cost_usd"] == 0 and body["usage"]["fusion_cost_usd"] == 0
    assert body["fusion"]["cache"] == {"hit": True, "saved_usd": float(cost)}
    assert header == "hit" and final.choices[0].message.content == "42, merged"
    assert chunks[-1].model_extra["fusion"]["cache"]["hit"] is True
    # members and judge were called once, for the first request only
    assert (hits(answering, "up-m"), hits(answering, "up-o"), hits(answering, "up-j")) == (1, 1, 1)
    assert sample(scrape, "fusion_cache_saved_usd_total", pool="p") == pytest.approx(2 * float(cost))


@pytest.mark.services
def test_two_gateways_share_one_redis_cache(tmp_path: Path) -> None:
    upstream = FakeUpstream()
    upstream.behaviours["up-m"] = json_reply(completion("shared answer", usage=USAGE))
    with serving(upstream) as up, redis_server(tmp_path) as url:
        upstream.url = up.url  # type: ignore[attr-defined]
        text = config(upstream, f'{{enabled: true, redis_url: "{url}", key_prefix: "t:"}}')
        with gateway_process(text, tmp_path, name="a") as a, gateway_process(text, tmp_path, name="b") as b:
            first = ask(a.url)
            second = ask(b.url)
            third = ask(a.url)
    assert [r.headers["x-fusion-cache"] for r in (first, second, third)] == ["miss", "hit", "hit"]
    assert second.json() == as_hit(first.json())
    assert hits(upstream, "up-m") == 1
