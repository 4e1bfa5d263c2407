"""Metrics a running gateway exports: refusals by reason, series at 0 from start, time to first chunk,
spend by key. Scraped from a real gateway's /metrics after real requests."""

from __future__ import annotations

import hashlib
from decimal import Decimal
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import create_app
from gateway.config import load_config
from tests.conftest import GatewayRunner
from tests.support.fakes import FakeUpstream, answer, judge_picking
from tests.support.servers import serving

HI = [{"role": "user", "content": "What is 6 * 7?"}]
ALPHA = "sk-metrics-alpha-0123456789"
BETA = "sk-metrics-beta-0123456789"
ADMIN = "admin-metrics-0123456789"


def config(url: str, *, extra_pool: str = "") -> str:
    return f"""
server: {{max_body_bytes: 2000}}
auth:
  admin_key: {ADMIN}
  keys:
    - {{name: alpha, key: {ALPHA}, pools: [p], models: [a], rpm: 3}}
    - {{name: beta, key_sha256: "{hashlib.sha256(BETA.encode()).hexdigest()}", pools: ["*"], models: ["*"]}}
providers:
  up: {{type: openai, base_url: '{url}/v1', api_key: sk-up-0123456789, retry: {{max_retries: 0}}}}
models:
  a: {{provider: up, price: {{input: 1, output: 2}}}}
  b: {{provider: up, price: {{input: 3, output: 4}}}}
  j: {{provider: up, price: {{input: 1, output: 1}}}}
  free: {{provider: up}}
pools:
  p: {{mode: best-of, members: [a, b], judge: {{model: j}}, baseline: {{model: a, sample_rate: 0}}}}
{extra_pool}"""


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(scrape: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return scrape[(name, frozenset(labels.items()))]


def post(url: str, key: str | None, body: object = None, **extra: object) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    payload = body if body is not None else {"model": "p", "messages": HI, **extra}
    if isinstance(payload, bytes):
        return httpx.post(url + "/v1/chat/completions", content=payload, headers=headers, timeout=20)
    return httpx.post(url + "/v1/chat/completions", json=payload, headers=headers, timeout=20)


def test_refused_requests_are_counted_by_status_and_reason(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    fake.behaviours["a"] = answer("42")
    with gateway(config(fake.url)) as (_, srv):
        statuses = [
            post(srv.url, BETA, b"{not json").status_code,
            post(srv.url, None).status_code,
            post(srv.url, "sk-wrong-0123456789").status_code,
            post(srv.url, ALPHA, model="b").status_code,
            post(srv.url, BETA, model="nope").status_code,
            post(srv.url, BETA, {"model": "a", "messages": [{"role": "user", "content": "x" * 3000}]}).status_code,
            *(post(srv.url, ALPHA, model="a").status_code for _ in range(4)),
            httpx.get(srv.url + "/v1/models").status_code,
        ]
        scrape = samples(httpx.get(srv.url + "/metrics").text)
    assert statuses == [400, 401, 401, 403, 404, 413, 200, 200, 200, 429, 401]
    refused = {
        (dict(labels)["status"], dict(labels)["reason"]): v
        for (name, labels), v in scrape.items()
        if name == "fusion_refused_requests_total" and v > 0
    }
    assert refused == {
        ("400", "invalid_json"): 1,
        ("401", "invalid_api_key"): 3,
        ("403", "model_not_allowed"): 1,
        ("404", "model_not_found"): 1,
        ("413", "request_too_large"): 1,
        ("429", "rate_limit_exceeded"): 1,
    }


def test_series_known_from_the_config_exist_at_zero_from_start_and_after_a_reload(
    tmp_path: Path, fake: FakeUpstream
) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(config(fake.url))
    app = create_app(load_config(str(path)), str(path))
    with serving(app) as srv:
        before = samples(httpx.get(srv.url + "/metrics").text)
        path.write_text(config(fake.url, extra_pool="  q: {mode: merge, members: [b, free], judge: {model: j}}\n"))
        reload = httpx.post(srv.url + "/admin/reload", headers={"authorization": f"Bearer {ADMIN}"})
        after = samples(httpx.get(srv.url + "/metrics").text)
    assert reload.status_code == 200
    assert not [k for k, v in before.items() if k[0].endswith("_total") and v != 0]  # no request was made
    for outcome in ("ok", "degraded", "error"):
        assert value(before, "fusion_requests_total", pool="p", mode="best-of", outcome=outcome) == 0
    for outcome in ("ok", "error"):
        assert value(before, "fusion_requests_total", pool="free", mode="passthrough", outcome=outcome) == 0
    for model in ("a", "b"):
        for outcome in ("ok", "error", "timeout", "cancelled"):
            assert value(before, "fusion_member_calls_total", pool="p", model=model, outcome=outcome) == 0
        assert value(before, "fusion_winner_total", pool="p", model=model) == 0
    for outcome in ("picked", "fallback", "error"):
        assert value(before, "fusion_judge_verdicts_total", pool="p", outcome=outcome) == 0
    for role in ("member", "judge", "baseline", "comparison"):
        assert value(before, "fusion_cost_usd_total", pool="p", role=role) == 0
    for result in ("fusion", "baseline", "tie", "error"):
        assert value(before, "fusion_baseline_comparisons_total", pool="p", result=result) == 0
    assert value(before, "fusion_quorum_misses_total", pool="p") == 0
    assert value(before, "fusion_unpriced_calls_total", model="free") == 0
    assert ("fusion_unpriced_calls_total", frozenset({("model", "a")})) not in before  # priced: never unpriced
    assert value(before, "fusion_key_cost_usd_total", key="alpha") == 0
    assert value(before, "fusion_key_cost_usd_total", key="beta") == 0
    assert value(before, "fusion_refused_requests_total", status="429", reason="insufficient_quota") == 0
    # the pool the reload added, with its own mode, members and judge; merge has no winner
    assert value(after, "fusion_requests_total", pool="q", mode="merge", outcome="degraded") == 0
    assert value(after, "fusion_member_calls_total", pool="q", model="free", outcome="timeout") == 0
    assert value(after, "fusion_judge_verdicts_total", pool="q", outcome="fallback") == 0
    assert not [k for k in after if k[0] == "fusion_winner_total" and ("pool", "q") in k[1]]


def test_time_to_first_chunk_of_streamed_calls_and_streams(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    fake.behaviours["a"] = answer("forty two", delay=0.2)
    fake.behaviours["b"] = answer("42", delay=0.3)
    fake.behaviours["j"] = judge_picking(lambda text: text == "42")
    with gateway(config(fake.url)) as (_, srv):
        with httpx.stream("POST", srv.url + "/v1/chat/completions", headers={"authorization": f"Bearer {BETA}"},
                          json={"model": "a", "messages": HI, "stream": True}) as r:
            assert r.status_code == 200 and r.read().endswith(b"data: [DONE]\n\n")
        with httpx.stream("POST", srv.url + "/v1/chat/completions", headers={"authorization": f"Bearer {BETA}"},
                          json={"model": "p", "messages": HI, "stream": True}) as r:
            assert r.status_code == 200 and r.read().endswith(b"data: [DONE]\n\n")
        post(srv.url, BETA, model="a")  # not streamed: no first chunk to time
        scrape = samples(httpx.get(srv.url + "/metrics").text)
    upstream = "gen_ai_client_operation_time_to_first_chunk_seconds"
    for model, calls, delay in (("a", 2, 0.2), ("b", 1, 0.3)):
        labels = {"gen_ai_operation_name": "chat", "gen_ai_provider_name": "openai", "gen_ai_request_model": model}
        assert value(scrape, upstream + "_count", **labels) == calls
        assert value(scrape, upstream + "_sum", **labels) >= calls * delay
    assert value(scrape, upstream + "_count", gen_ai_operation_name="chat", gen_ai_provider_name="openai",
                 gen_ai_request_model="j") == 1
    fused = "fusion_time_to_first_chunk_seconds"
    assert value(scrape, fused + "_count", pool="a", mode="passthrough") == 1
    assert value(scrape, fused + "_sum", pool="a", mode="passthrough") >= 0.2
    # best-of streams nothing before the verdict: its first chunk waits for the slowest member
    assert value(scrape, fused + "_count", pool="p", mode="best-of") == 1
    assert value(scrape, fused + "_sum", pool="p", mode="best-of") >= 0.3


def test_spend_is_counted_by_key_name(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    fake.behaviours["a"] = answer("42", usage={"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500})
    fake.behaviours["b"] = answer("42", usage={"prompt_tokens": 2000, "completion_tokens": 100, "total_tokens": 2100})
    fake.behaviours["j"] = judge_picking(lambda text: True)
    with gateway(config(fake.url)) as (_, srv):
        costs = {
            "alpha": [post(srv.url, ALPHA, model="a"), post(srv.url, ALPHA, model="p")],
            "beta": [post(srv.url, BETA, model="b")],
        }
        scrape = samples(httpx.get(srv.url + "/metrics").text)
    for key, responses in costs.items():
        assert all(r.status_code == 200 for r in responses)
        spent = sum(Decimal(r.headers["x-fusion-cost-usd"]) for r in responses)
        assert abs(value(scrape, "fusion_key_cost_usd_total", key=key) - float(spent)) < 1e-12
    # a: 1000 in at $1/M + 500 out at $2/M = $0.002; b: 2000 * 3 + 100 * 4 = $0.0064
    assert Decimal(costs["beta"][0].headers["x-fusion-cost-usd"]) == Decimal("0.0064")
