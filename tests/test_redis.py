"""Rates and budgets shared through a real Redis: two gateway processes, one budget."""

from __future__ import annotations

import threading
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from tests.support.procs import gateway_process, redis_server

pytestmark = pytest.mark.services

KEY = "sk-shared-0123456789"


def config(redis_url: str) -> str:
    return f"""
auth:
  keys:
    - {{name: shared, key: {KEY}, pools: ["*"], models: ["*"], budget_usd_per_day: 0.02, rpm: 1000}}
    - {{name: burst, key: sk-burst-0123456789, pools: ["*"], models: ["*"], rpm: 4}}
state: {{redis_url: "{redis_url}", key_prefix: "test:"}}
providers:
  sim: {{type: simulator, profiles: {{m: {{ttft_ms: 30, tokens_per_s: 5000}}}}}}
models:
  m: {{provider: sim, price: {{input: 100, output: 200}}}}
"""


BODY = {"model": "m", "messages": [{"role": "user", "content": "What is 6 * 7?"}], "max_tokens": 20}


def test_two_gateways_share_one_budget_and_one_rate(tmp_path: Path) -> None:
    with redis_server(tmp_path) as url, \
            gateway_process(config(url), tmp_path, name="a") as a, \
            gateway_process(config(url), tmp_path, name="b") as b:
        results: list[httpx.Response] = []

        def fire(target: str) -> None:
            results.append(httpx.post(target + "/v1/chat/completions", json=BODY,
                                      headers={"authorization": f"Bearer {KEY}"}, timeout=30))

        threads = [threading.Thread(target=fire, args=(a.url if i % 2 else b.url,)) for i in range(60)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        ok = [r for r in results if r.status_code == 200]
        spent = sum((Decimal(r.headers["x-fusion-cost-usd"]) for r in ok), Decimal(0))
        one = max(Decimal(r.headers["x-fusion-cost-usd"]) for r in ok)
        # both gateways now refuse: the budget is shared
        for gw in (a, b):
            r = httpx.post(gw.url + "/v1/chat/completions", json=BODY, headers={"authorization": f"Bearer {KEY}"})
            assert r.status_code == 429 and r.json()["error"]["code"] == "insufficient_quota"
        rate = [httpx.post(gw.url + "/v1/chat/completions", json=BODY,
                           headers={"authorization": "Bearer sk-burst-0123456789"}).status_code
                for gw in (a, b, a, b, a)]
    assert {r.status_code for r in results} == {200, 429}
    assert spent <= Decimal("0.02") + one
    assert spent > Decimal("0.02") - one
    assert rate == [200, 200, 200, 200, 429]  # 4 per minute across both gateways


def test_budgets_survive_a_restart(tmp_path: Path) -> None:
    with redis_server(tmp_path) as url:
        with gateway_process(config(url), tmp_path, name="first") as gw:
            while httpx.post(gw.url + "/v1/chat/completions", json=BODY,
                             headers={"authorization": f"Bearer {KEY}"}).status_code == 200:
                pass
        with gateway_process(config(url), tmp_path, name="second") as gw:
            r = httpx.post(gw.url + "/v1/chat/completions", json=BODY, headers={"authorization": f"Bearer {KEY}"})
    assert r.status_code == 429


def test_an_unreachable_redis_refuses_rather_than_skipping_limits(tmp_path: Path) -> None:
    with gateway_process(config("redis://127.0.0.1:9/0"), tmp_path) as gw:
        r = httpx.post(gw.url + "/v1/chat/completions", json=BODY, headers={"authorization": f"Bearer {KEY}"})
        free = httpx.post(gw.url + "/v1/chat/completions", json={**BODY},
                          headers={"authorization": "Bearer sk-burst-0123456789"})
    assert r.status_code == 503 and r.json()["error"]["code"] == "service_unavailable"
    assert free.status_code == 503
