"""Operators: keys, limits and budgets, hot reload, request logs."""

from __future__ import annotations

import hashlib
import io
import logging
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from gateway.app import create_app
from gateway.books.logs import LOGGER, JsonFormatter
from gateway.config import load_config
from gateway.pipeline.estimate import model_cost
from gateway.wire.protocol import parse_chat_request
from tests.conftest import GatewayRunner, sdk
from tests.support.fakes import FakeUpstream, answer, judge_picking
from tests.support.logcapture import captured_log, request_lines
from tests.support.servers import serving, wait_until

HI = [{"role": "user", "content": "What is 6 * 7?"}]
CLIENT_KEY = "sk-client-alpha-0123456789"
OTHER_KEY = "sk-client-beta-0123456789"

KEYS = f"""
server: {{keepalive_s: 0.5}}
auth:
  admin_key: admin-secret-0123
  keys:
    - {{name: alpha, key: {CLIENT_KEY}, pools: [p], models: [m1]}}
    - {{name: beta, key_sha256: "{hashlib.sha256(OTHER_KEY.encode()).hexdigest()}", pools: ["*"], models: ["*"]}}
providers:
  sim: {{type: simulator, profiles: {{m1: {{ttft_ms: 1, tokens_per_s: 5000}}, m2: {{ttft_ms: 1, tokens_per_s: 5000}}}}}}
models:
  m1: {{provider: sim, price: {{input: 1, output: 2}}}}
  m2: {{provider: sim, price: {{input: 1, output: 2}}}}
pools:
  p: {{mode: best-of, members: [m1, m2], judge: {{model: m1}}}}
  q: {{mode: merge, members: [m1, m2], judge: {{model: m2}}}}
"""


def post(url: str, model: str, key: str | None, **extra: Any) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.post(url + "/v1/chat/completions", json={"model": model, "messages": HI, **extra}, headers=headers,
                      timeout=20)


# ------------------------------------------------------------------ keys


def test_keys_authenticate_with_a_constant_401(gateway: GatewayRunner) -> None:
    with gateway(KEYS) as (_, srv):
        missing = post(srv.url, "p", None)
        wrong = post(srv.url, "p", "sk-wrong-but-long-enough-0000")
        basic = httpx.post(srv.url + "/v1/chat/completions", json={"model": "p", "messages": HI},
                           headers={"authorization": "Basic abc"})
        ok = post(srv.url, "p", CLIENT_KEY)
        by_digest = post(srv.url, "q", OTHER_KEY)
        with pytest.raises(openai.AuthenticationError):
            sdk(srv.url, api_key="nope").chat.completions.create(model="p", messages=HI)  # type: ignore[arg-type]
    assert missing.status_code == wrong.status_code == basic.status_code == 401
    assert missing.content == wrong.content == basic.content  # constant: nothing to learn from the body
    assert "sk-wrong" not in wrong.text
    assert missing.json()["error"]["type"] == "authentication_error"
    assert ok.status_code == 200 and by_digest.status_code == 200


def test_a_key_calls_only_what_it_lists(gateway: GatewayRunner) -> None:
    with gateway(KEYS) as (_, srv):
        other_pool = post(srv.url, "q", CLIENT_KEY)
        other_model = post(srv.url, "m2", CLIENT_KEY)
        no_such = post(srv.url, "q2", CLIENT_KEY)
        own_model = post(srv.url, "m1", CLIENT_KEY)
        listed = [m.id for m in sdk(srv.url, api_key=CLIENT_KEY).models.list().data]
        listed_all = [m.id for m in sdk(srv.url, api_key=OTHER_KEY).models.list().data]
        stats = httpx.get(srv.url + "/v1/fusion/stats")
        stats_ok = httpx.get(srv.url + "/v1/fusion/stats", headers={"authorization": f"Bearer {CLIENT_KEY}"})
    # a name the key may not use is answered exactly like a name that does not exist: nothing to enumerate
    assert other_pool.status_code == other_model.status_code == no_such.status_code == 404
    assert other_pool.json()["error"] == {"message": "The model 'q' does not exist or you do not have access to it",
                                          "type": "invalid_request_error", "param": "model", "code": "model_not_found"}
    assert no_such.json()["error"] == {**other_pool.json()["error"],
                                       "message": "The model 'q2' does not exist or you do not have access to it"}
    assert own_model.status_code == 200
    assert listed == ["m1", "p"] and listed_all == ["m1", "m2", "p", "q"]
    assert stats.status_code == 401
    assert [p["pool"] for p in stats_ok.json()["pools"]] == ["p"]


def test_admin_reload_needs_the_admin_key(gateway: GatewayRunner) -> None:
    with gateway(KEYS) as (_, srv):
        client = httpx.post(srv.url + "/admin/reload", headers={"authorization": f"Bearer {CLIENT_KEY}"})
        admin = httpx.post(srv.url + "/admin/reload", headers={"authorization": "Bearer admin-secret-0123"})
    assert client.status_code == 401
    # this in-process gateway was not started from a file: the reload is refused, clearly
    assert admin.status_code == 400 and "not started from a config file" in admin.json()["error"]["message"]


# ------------------------------------------------------------------ limits

LIMITS = """
auth:
  keys:
    - {name: limited, key: sk-limited-0123456789, pools: ["*"], models: ["*"], rpm: 3}
    - {name: thrifty, key: sk-thrifty-0123456789, pools: ["*"], models: ["*"], budget_usd_per_day: 0.01}
    - {name: open, key: sk-open-0123456789, pools: ["*"], models: ["*"]}
providers:
  sim: {type: simulator, profiles: {m: {ttft_ms: 20, tokens_per_s: 5000}}}
models:
  m: {provider: sim, price: {input: 100, output: 200}}
pools:
  capped: {mode: best-of, members: [m, m], judge: {model: m}, max_tokens_cap: 50, max_cost_usd: 0.1}
  strict: {mode: best-of, members: [m, m], judge: {model: m}, max_tokens_cap: 50, max_tokens_policy: reject}
"""


def test_rpm_is_a_sliding_window_with_retry_after(gateway: GatewayRunner) -> None:
    with gateway(LIMITS) as (_, srv):
        codes = [post(srv.url, "m", "sk-limited-0123456789").status_code for _ in range(3)]
        over = post(srv.url, "m", "sk-limited-0123456789")
        other = post(srv.url, "m", "sk-open-0123456789")
    assert codes == [200, 200, 200]
    assert over.status_code == 429 and over.json()["error"]["code"] == "rate_limit_exceeded"
    assert 55 <= int(over.headers["retry-after"]) <= 60
    assert other.status_code == 200  # limits are per key


def test_the_worst_case_cost_is_checked_before_any_call(gateway: GatewayRunner) -> None:
    with gateway(LIMITS) as (_, srv):
        big = post(srv.url, "capped", "sk-open-0123456789", max_tokens=50)
        small = post(srv.url, "capped", "sk-open-0123456789", max_tokens=5)
        strict = post(srv.url, "strict", "sk-open-0123456789", max_tokens=500)
        clamped = post(srv.url, "capped", "sk-open-0123456789", max_tokens=5000)
        n2 = post(srv.url, "capped", "sk-open-0123456789", n=2)
    assert big.status_code == 400 and big.json()["error"]["code"] == "cost_limit_exceeded"
    assert "exceeds pool 'capped' max_cost_usd $0.1" in big.json()["error"]["message"]
    assert small.status_code == 200
    assert strict.status_code == 400 and strict.json()["error"]["param"] == "max_tokens"
    assert strict.json()["error"]["message"] == "'max_tokens' 500 exceeds pool 'strict' cap of 50"
    assert clamped.status_code == 400  # clamped to the cap of 50, which is still over the cost limit
    assert n2.status_code == 400 and n2.json()["error"]["param"] == "n"


def test_a_budget_holds_under_fifty_concurrent_requests(gateway: GatewayRunner) -> None:
    key = "sk-thrifty-0123456789"
    body = {"model": "m", "messages": HI, "max_tokens": 20}
    with gateway(LIMITS) as (app, srv):
        spec = app.gateway.config.models["m"]
        one = model_cost(spec, parse_chat_request(httpx.Request("POST", "/", json=body).content,
                                                  max_messages=10).body)
        results: list[httpx.Response] = []

        def fire() -> None:
            results.append(httpx.post(srv.url + "/v1/chat/completions", json=body,
                                      headers={"authorization": f"Bearer {key}"}, timeout=20))

        threads = [threading.Thread(target=fire) for _ in range(50)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        spent = sum((Decimal(r.headers["x-fusion-cost-usd"]) for r in results if r.status_code == 200), Decimal(0))
        after = post(srv.url, "m", key, max_tokens=20)
    refused = [r for r in results if r.status_code == 429]
    assert refused and all(r.json()["error"]["type"] == "insufficient_quota" for r in refused)
    assert spent <= Decimal("0.01") + one  # at most one request beyond the budget
    assert spent > Decimal("0.01") - one  # and the budget really got used
    assert after.status_code == 429 and "daily budget of $0.01" in after.json()["error"]["message"]


# ------------------------------------------------------------------ reload

RELOAD_BASE = """
server: {{watch_interval_s: 0.1}}
providers:
  up: {{type: openai, base_url: '{url}/v1'}}
  other: {{type: openai, base_url: '{url}/v1', headers: {{x-tag: '{tag}'}}}}
models:
  a: {{provider: up}}
  b: {{provider: other}}
pools:
  p: {{mode: best-of, members: [a, b], judge: {{model: a}}}}
"""


def test_file_changes_reload_atomically_and_keep_unchanged_pools(tmp_path: Path, fake: FakeUpstream) -> None:
    fake.behaviours["a"] = answer("A answers", delay=0.8)
    fake.behaviours["b"] = answer("B answers", delay=0.8)
    path = tmp_path / "gateway.yaml"
    path.write_text(RELOAD_BASE.format(url=fake.url, tag="one"))
    app = create_app(load_config(str(path)), str(path))
    gw = app.gateway
    with serving(app) as srv:
        before = dict(gw.runtime.providers)
        fake.behaviours["a"] = judge_picking(lambda t: True, delay=0.8)
        inflight: list[httpx.Response] = []
        t = threading.Thread(target=lambda: inflight.append(
            httpx.post(srv.url + "/v1/chat/completions", json={"model": "p", "messages": HI}, timeout=20)))
        t.start()
        assert wait_until(lambda: len(fake.seen) >= 2)
        # the pool disappears and provider 'other' changes, while a request is using both
        path.write_text(RELOAD_BASE.format(url=fake.url, tag="two").split("pools:")[0] + "  c: {provider: up}\n")
        assert wait_until(lambda: "c" in gw.config.models, timeout=5)
        t.join()
        gone = httpx.post(srv.url + "/v1/chat/completions", json={"model": "p", "messages": HI})
        metrics = httpx.get(srv.url + "/metrics").text
    assert inflight[0].status_code == 200  # ran start to end on the config it started with
    assert gone.status_code == 404
    assert gw.runtime.providers["up"] is before["up"]  # unchanged: same connection pool
    assert gw.runtime.providers["other"] is not before["other"]
    assert "fusion_config_last_reload_successful 1.0" in metrics


def test_an_invalid_file_changes_nothing(tmp_path: Path, fake: FakeUpstream) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(RELOAD_BASE.format(url=fake.url, tag="one"))
    app = create_app(load_config(str(path)), str(path))
    logged = io.StringIO()
    handler = logging.StreamHandler(logged)
    handler.setFormatter(JsonFormatter())
    logging.getLogger(LOGGER).addHandler(handler)
    try:
        with serving(app) as srv:
            def metrics() -> str:
                return httpx.get(srv.url + "/metrics").text

            ts_before = _gauge(metrics(), "fusion_config_last_reload_success_timestamp_seconds")
            path.write_text(RELOAD_BASE.format(url=fake.url, tag="one").replace("provider: other", "provider: nope"))
            assert wait_until(lambda: "fusion_config_last_reload_successful 0.0" in metrics())
            ts_after = _gauge(metrics(), "fusion_config_last_reload_success_timestamp_seconds")
            models = [m["id"] for m in httpx.get(srv.url + "/v1/models").json()["data"]]
            path.write_text(RELOAD_BASE.format(url=fake.url, tag="one"))  # the good file, back again
            assert wait_until(lambda: "fusion_config_last_reload_successful 1.0" in metrics())
    finally:
        logging.getLogger(LOGGER).removeHandler(handler)
    assert models == ["a", "b", "p"] and ts_after == ts_before
    (line,) = [x for x in logged.getvalue().splitlines() if "config reload failed" in x]
    import json

    assert json.loads(line)["error"] == f"{path}:8: models.b.provider: unknown provider 'nope' (known: up, other)"


def _gauge(text: str, name: str) -> float:
    line = next(x for x in text.splitlines() if x.startswith(name + " "))
    return float(line.split()[1])


# ------------------------------------------------------------------ logs


def test_one_json_line_per_request_without_content(gateway: GatewayRunner) -> None:
    with captured_log() as logged, gateway(KEYS) as (_, srv):
        r = httpx.post(srv.url + "/v1/chat/completions", json={"model": "p", "messages": HI},
                       headers={"authorization": f"Bearer {CLIENT_KEY}", "x-request-id": "trace-42"})
        bad = post(srv.url, "q", CLIENT_KEY)
    lines = request_lines(logged)
    assert r.headers["x-request-id"] == "trace-42" and bad.headers["x-request-id"].startswith("req_")
    ok, refused = lines
    assert ok["request_id"] == "trace-42" and ok["key"] == "alpha" and ok["status"] == 200
    assert ok["pool"] == "p" and ok["mode"] == "best-of" and ok["judge"] == "ok"
    assert [m["status"] for m in ok["members"]] == ["ok", "ok"] and ok["cost_usd"] > 0
    assert refused["status"] == 404 and refused["error"] == "model_not_found"
    text = logged.getvalue()
    assert "6 * 7" not in text and "The answer is" not in text and CLIENT_KEY not in text
