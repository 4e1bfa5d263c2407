"""A stream that ended normally is a 200 with its real cost: in the log, the metrics, the stats and the
budget, whichever client read it (raw httpx as curl would, the openai SDK), passthrough and pools alike.

The server reports ``http.disconnect`` once a response is complete; that is not the caller hanging up.
"""

from __future__ import annotations

from decimal import Decimal

import anyio
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import GatewayRunner, sdk
from tests.support.fakes import FakeUpstream, answer, judge_picking
from tests.support.logcapture import captured_log, request_lines
from tests.support.servers import wait_until

KEY = "sk-budget-0123456789"
HI = [{"role": "user", "content": "Say hi."}]
USAGE = {"prompt_tokens": 100, "completion_tokens": 40, "total_tokens": 140}
M = Decimal(1_000_000)
COST_A = (100 * Decimal("0.15") + 40 * Decimal("0.60")) / M  # 0.000039 per call of model a
COST_J = (300 * Decimal("0.15") + 20 * Decimal("0.60")) / M  # the judge's verdict
COSTS = {"a": COST_A, "p": 2 * COST_A + COST_J}


def config(url: str) -> str:
    return f"""
auth:
  keys:
    - {{name: thrifty, key: {KEY}, pools: ["*"], models: ["*"], budget_usd_per_day: 0.05}}
providers:
  up: {{type: openai, base_url: '{url}/v1'}}
models:
  a: {{provider: up, price: {{input: 0.15, output: 0.60}}}}
  j: {{provider: up, price: {{input: 0.15, output: 0.60}}}}
pools:
  p: {{mode: best-of, members: [a, a], judge: {{model: j}}}}
"""


def raw_stream(url: str, model: str) -> bytes:
    """As curl would: one POST, the body read to its end, nothing else."""
    with httpx.stream("POST", url + "/v1/chat/completions", timeout=20,
                      headers={"authorization": f"Bearer {KEY}"},
                      json={"model": model, "messages": HI, "stream": True}) as r:
        assert r.status_code == 200
        return r.read()


def sdk_stream(url: str, model: str) -> str:
    chunks = sdk(url, api_key=KEY).chat.completions.create(model=model, messages=HI, stream=True)  # type: ignore[arg-type]
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def sample(metrics: str, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples that carry ``labels``."""
    return sum(float(s.value) for fam in text_string_to_metric_families(metrics) for s in fam.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


@pytest.mark.parametrize("model, calls", [("a", 1), ("p", 2)])
def test_finished_streams_are_counted_as_served(gateway: GatewayRunner, fake: FakeUpstream, model: str,
                                                calls: int) -> None:
    fake.behaviours["a"] = answer("hello there", usage=USAGE)
    fake.behaviours["j"] = judge_picking(lambda _: True)
    mode = "passthrough" if model == "a" else "best-of"
    with captured_log() as logged, gateway(config(fake.url)) as (app, srv):
        body = raw_stream(srv.url, model)
        text = sdk_stream(srv.url, model)
        # the bookkeeping runs just after the last byte has gone out
        assert wait_until(lambda: len(fake.requests_for("a")) == 2 * calls
                          and sample(httpx.get(srv.url + "/metrics").text, "fusion_requests_total") >= 2)
        metrics = httpx.get(srv.url + "/metrics").text
        stats = httpx.get(srv.url + "/v1/fusion/stats", headers={"authorization": f"Bearer {KEY}"}).json()
        spent = anyio.run(app.gateway.limits.spent, "thrifty")
    assert body.endswith(b"data: [DONE]\n\n")
    if model == "a":
        assert text == "hello there"
    served = [x for x in request_lines(logged) if x.get("model") == model]
    assert len(served) == 2
    for line in served:
        assert line["status"] == 200
        assert "client_disconnected" not in line
        assert Decimal(str(line["cost_usd"])) == COSTS[model]
    assert sample(metrics, "fusion_requests_total", pool=model, mode=mode, outcome="ok") == 2
    assert sample(metrics, "fusion_request_duration_seconds_count", pool=model, mode=mode) == 2
    # the budget is settled with the real cost, not the worst-case estimate
    assert spent == COSTS[model] * 2
    if model == "p":
        (pool,) = [s for s in stats["pools"] if s["pool"] == "p"]
        assert pool["requests"]["ok"] == 2 and pool["fusion"]["samples"] == 2


def test_a_caller_who_hangs_up_mid_stream_is_still_a_hang_up(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    fake.behaviours["a"] = answer("one two three four", usage=USAGE, pieces=4, interval=0.5)
    with captured_log() as logged, gateway(config(fake.url)) as (_, srv):
        with httpx.stream("POST", srv.url + "/v1/chat/completions", timeout=20,
                          headers={"authorization": f"Bearer {KEY}"},
                          json={"model": "a", "messages": HI, "stream": True}) as r:
            next(r.iter_raw())
        assert wait_until(lambda: fake.requests_for("a")[0].disconnected is not None)
    (line,) = request_lines(logged)
    assert line["status"] == 499 and line["client_disconnected"] is True
