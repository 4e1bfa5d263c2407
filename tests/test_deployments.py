"""One model on several deployments: balancing, outlier ejection, rate-limit cool-downs, per-deployment
limits and prices, and the metrics that show it, against real loopback upstreams that fail on cue."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from gateway.config import parse_config
from gateway.wire.errors import ConfigError
from tests.conftest import GatewayRunner, fake_provider_yaml
from tests.support.fakes import FakeUpstream, answer, completion, error_reply, json_reply

HI = [{"role": "user", "content": "hi"}]


def config(fake: FakeUpstream, model: str, extra: str = "") -> str:
    return "providers:\n" + fake_provider_yaml(fake.url, extra=extra) + "models:\n" + model


def ask(url: str, model: str = "m", **body: Any) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", json={"model": model, "messages": HI, **body}, timeout=20)


def hits(fake: FakeUpstream, upstream: str) -> int:
    return len(fake.requests_for(upstream))


def sample(text: str, name: str, **labels: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0


TWO = """  m:
    deployments: [{provider: up, model: east}, {provider: up, model: west}]
    outlier_detection: {consecutive_failures: 3, base_ejection_s: 0.6, max_ejection_s: 10}
"""


def test_models_lists_one_name_and_both_deployments_serve_it(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    fake.behaviours["east"] = json_reply(completion("from east"))
    fake.behaviours["west"] = json_reply(completion("from west"))
    with gateway(config(fake, TWO)) as (_, srv):
        names = [m["id"] for m in httpx.get(f"{srv.url}/v1/models").json()["data"]]
        answers = {ask(srv.url).json()["choices"][0]["message"]["content"] for _ in range(30)}
        reply = ask(srv.url).json()
    assert names == ["m"]
    assert answers == {"from east", "from west"}
    assert reply["model"] == "m"  # the caller's name, whichever deployment answered


def test_a_failing_deployment_is_ejected_and_its_sibling_answers(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    fake.behaviours["east"] = error_reply(500)
    fake.behaviours["west"] = json_reply(completion("from west"))
    model = TWO.replace("base_ejection_s: 0.6, max_ejection_s: 10", "base_ejection_s: 600, max_ejection_s: 600")
    with gateway(config(fake, model, extra=", retry: {max_retries: 1, backoff_base_s: 0}")) as (_, srv):
        statuses = [ask(srv.url).status_code for _ in range(20)]
        scrape = httpx.get(f"{srv.url}/metrics").text
    # Every request answered: a retry prefers the other deployment. East took exactly 3 calls, then was out.
    assert statuses == [200] * 20
    assert hits(fake, "east") == 3
    assert sample(scrape, "fusion_deployment_ejections_total", model="m", deployment="up/east") == 1
    assert sample(scrape, "fusion_deployment_ejected", model="m", deployment="up/east") == 1
    assert sample(scrape, "fusion_deployment_calls_total", model="m", deployment="up/east", outcome="failure") == 3
    assert sample(scrape, "fusion_deployment_calls_total", model="m", deployment="up/west", outcome="ok") == 20


def test_an_ejected_deployment_is_probed_by_traffic_and_comes_back(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    fake.behaviours["east"] = error_reply(500)
    fake.behaviours["west"] = json_reply(completion("from west"))
    model = TWO.replace("base_ejection_s: 0.6", "base_ejection_s: 0.3")
    with gateway(config(fake, model, extra=", retry: {max_retries: 1, backoff_base_s: 0}")) as (_, srv):
        while hits(fake, "east") < 3:
            assert ask(srv.url).status_code == 200
        time.sleep(0.35)
        # Back on probation and still failing: the first call that finds it ejects it again.
        while hits(fake, "east") < 4:
            assert ask(srv.url).status_code == 200
        scrape = httpx.get(f"{srv.url}/metrics").text
        assert sample(scrape, "fusion_deployment_ejections_total", model="m", deployment="up/east") == 2
        fake.behaviours["east"] = json_reply(completion("from east"))
        time.sleep(0.65)  # the second ejection lasts twice the base
        answers = [ask(srv.url).json()["choices"][0]["message"]["content"] for _ in range(20)]
        scrape = httpx.get(f"{srv.url}/metrics").text
    assert "from east" in answers
    assert sample(scrape, "fusion_deployment_ejected", model="m", deployment="up/east") == 0


def test_ejection_time_grows_with_repeated_ejections_and_resets_after_a_healthy_spell() -> None:
    from gateway.books.metrics import Metrics
    from gateway.pipeline.balancer import Balancer
    from gateway.wire.errors import UpstreamStatusError

    now = [100.0]
    cfg = parse_config(
        "providers:\n  up: {type: openai, base_url: http://127.0.0.1:9/v1}\nmodels:\n"
        "  m:\n    deployments: [{provider: up, model: a}, {provider: up, model: b}, {provider: up, model: c}]\n"
        "    outlier_detection: {consecutive_failures: 2, base_ejection_s: 10, max_ejection_s: 25}\n",
        "t.yaml",
    )
    spec = cfg.models["m"]
    bal = Balancer(Metrics(), clock=lambda: now[0])
    a = spec.deployments[0]
    boom = UpstreamStatusError("x", upstream_status=500)

    def fail(times: int) -> None:
        for _ in range(times):
            st = bal.state("m", a.key)
            bal.finished(spec, a, st, bal.started(a, st), boom)

    def in_rotation() -> bool:
        return a.key in {d.key for d, _ in bal.available(spec, now[0])}

    fail(1)
    assert in_rotation()  # one failure is not a pattern
    fail(1)
    assert not in_rotation()
    ejections = []
    for _ in range(3):
        start = now[0]
        while not in_rotation():
            now[0] += 1
        ejections.append(now[0] - start)
        fail(1)  # on probation: one failure is enough
    assert ejections == [10, 20, 25]  # base x n, capped
    now[0] += 25
    assert in_rotation()
    st = bal.state("m", a.key)
    bal.finished(spec, a, st, bal.started(a, st), None)  # proven healthy
    now[0] += 26  # longer than max_ejection_s since it came back
    fail(2)
    start = now[0]
    while not in_rotation():
        now[0] += 1
    assert now[0] - start == 10


def test_4xx_is_the_request_s_fault_never_retried_elsewhere_never_ejects(
    gateway: GatewayRunner, fake: FakeUpstream
) -> None:
    fake.behaviours["east"] = error_reply(400, "bad request")
    fake.behaviours["west"] = error_reply(400, "bad request")
    with gateway(config(fake, TWO)) as (_, srv):
        statuses = [ask(srv.url).status_code for _ in range(10)]
        scrape = httpx.get(f"{srv.url}/metrics").text
    assert statuses == [400] * 10
    assert hits(fake, "east") + hits(fake, "west") == 10  # one call each: no retry, no second deployment
    assert sample(scrape, "fusion_deployment_ejections_total", model="m", deployment="up/east") == 0
    assert sample(scrape, "fusion_deployment_calls_total", model="m", deployment="up/east", outcome="rejected") > 0


def test_ejection_never_takes_out_more_than_the_cap(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    fake.behaviours["east"] = error_reply(502)
    fake.behaviours["west"] = error_reply(502)
    model = TWO.replace("max_ejection_s: 10}", "max_ejection_s: 10, max_ejected_percent: 50}")
    with gateway(config(fake, model, extra=", retry: {max_retries: 1, backoff_base_s: 0}")) as (_, srv):
        statuses = [ask(srv.url).status_code for _ in range(12)]
        scrape = httpx.get(f"{srv.url}/metrics").text
    assert set(statuses) == {502}
    ejected = [sample(scrape, "fusion_deployment_ejected", model="m", deployment=f"up/{d}") for d in ("east", "west")]
    assert sorted(ejected) == [0, 1]  # half of two: one stays in rotation however badly it does


def test_a_429_cools_the_deployment_down_for_its_retry_after(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    fake.behaviours["east"] = error_reply(429, headers={"retry-after": "2"})
    fake.behaviours["west"] = json_reply(completion("from west"))
    with gateway(config(fake, TWO, extra=", retry: {max_retries: 1, backoff_base_s: 0}")) as (_, srv):
        while hits(fake, "east") < 1:
            assert ask(srv.url).status_code == 200  # the 429 was retried on west
        limited_at = time.monotonic()
        statuses = []
        while time.monotonic() - limited_at < 1.5:
            statuses.append(ask(srv.url).status_code)
        east_during = hits(fake, "east")
        fake.behaviours["east"] = json_reply(completion("from east"))
        time.sleep(max(0.0, 2.1 - (time.monotonic() - limited_at)))
        later = [ask(srv.url).json()["choices"][0]["message"]["content"] for _ in range(20)]
        scrape = httpx.get(f"{srv.url}/metrics").text
    assert statuses and set(statuses) == {200}
    assert east_during == 1  # out of rotation for the two seconds it asked for
    assert "from east" in later
    assert sample(scrape, "fusion_deployment_calls_total", model="m", deployment="up/east", outcome="rate_limited") == 1
    assert sample(scrape, "fusion_deployment_ejections_total", model="m", deployment="up/east") == 0


def test_weighted_routing_splits_within_statistical_bounds(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    fake.behaviours["east"] = json_reply(completion("e"))
    fake.behaviours["west"] = json_reply(completion("w"))
    model = """  m:
    routing: weighted
    deployments: [{provider: up, model: east, weight: 1}, {provider: up, model: west, weight: 3}]
"""
    n = 400
    with gateway(config(fake, model)) as (_, srv), ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: ask(srv.url).raise_for_status(), range(n)))
    east = hits(fake, "east")
    # Binomial(400, 1/4): mean 100, sd 8.7; five sd either side.
    assert 57 <= east <= 143, east
    assert east + hits(fake, "west") == n


def test_least_in_flight_spreads_concurrent_calls_evenly(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    fake.behaviours["east"] = json_reply(completion("e"), delay=0.5)
    fake.behaviours["west"] = json_reply(completion("w"), delay=0.5)
    with gateway(config(fake, TWO)) as (_, srv), ThreadPoolExecutor(10) as pool:
        list(pool.map(lambda _: ask(srv.url).raise_for_status(), range(10)))
    assert (hits(fake, "east"), hits(fake, "west")) == (5, 5)


def test_latency_routing_prefers_the_faster_deployment(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    fake.behaviours["east"] = json_reply(completion("e"), delay=0.15)
    fake.behaviours["west"] = json_reply(completion("w"))
    model = TWO.replace("  m:\n", "  m:\n    routing: latency\n")
    with gateway(config(fake, model)) as (_, srv):
        for _ in range(20):
            ask(srv.url).raise_for_status()
    assert hits(fake, "east") == 1  # measured once, then the lower average wins every time


def test_own_rpm_and_own_price_per_deployment(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    usage = {"prompt_tokens": 1_000_000, "completion_tokens": 0, "total_tokens": 1_000_000}
    fake.behaviours["east"] = json_reply(completion("e", usage=usage))
    fake.behaviours["west"] = json_reply(completion("w", usage=usage))
    model = """  m:
    price: {input: 1, output: 1}
    deployments:
      - {provider: up, model: east, rpm: 2, price: {input: 5, output: 5}}
      - {provider: up, model: west}
"""
    with gateway(config(fake, model)) as (_, srv):
        replies = [ask(srv.url) for _ in range(12)]
    assert hits(fake, "east") == 2  # its own quota of two a minute, then skipped
    costs = {r.json()["choices"][0]["message"]["content"]: r.headers["x-fusion-cost-usd"] for r in replies}
    assert costs == {"e": "5", "w": "1"}


def test_pool_members_and_streams_go_through_the_deployments(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    fake.behaviours["east"] = error_reply(503)
    fake.behaviours["west"] = answer("from west")
    fake.behaviours["other"] = answer("from other")
    fake.behaviours["judge"] = answer('{"analysis": "x", "winner": "A"}')
    text = config(fake, TWO + "  o: {provider: up, model: other}\n  j: {provider: up, model: judge}\n",
                  extra=", retry: {max_retries: 1, backoff_base_s: 0}")
    text += "pools:\n  p: {mode: merge, members: [m, o], judge: {model: j}}\n"
    with gateway(text) as (_, srv):
        fused = [ask(srv.url, "p").json() for _ in range(6)]
        with httpx.stream("POST", f"{srv.url}/v1/chat/completions",
                          json={"model": "m", "messages": HI, "stream": True}) as resp:
            streamed = resp.read().decode()
    assert all(f["fusion"]["degraded"] is False for f in fused)
    assert all(f["fusion"]["members"][0]["status"] == "ok" for f in fused)
    events = [json.loads(line[6:]) for line in streamed.splitlines() if line.startswith("data: {")]
    assert "".join(c["delta"].get("content") or "" for e in events for c in e["choices"]) == "from west"
    assert streamed.rstrip().endswith("data: [DONE]")


def test_config_checks_deployments() -> None:
    base = "providers:\n  up: {type: openai, base_url: http://127.0.0.1:9/v1}\nmodels:\n"
    with pytest.raises(ConfigError) as err:
        parse_config(base + "  m: {provider: up, deployments: [{provider: up}]}\n", "t.yaml")
    assert str(err.value) == "t.yaml:4: models.m: give either provider or deployments"
    with pytest.raises(ConfigError) as err:
        parse_config(base + "  m:\n    deployments:\n      - {provider: up}\n      - {provider: nope}\n", "t.yaml")
    assert str(err.value) == "t.yaml:7: models.m.deployments[1].provider: unknown provider 'nope' (known: up)"
    cfg = parse_config(base + "  m: {deployments: [{provider: up, model: a}, {provider: up, model: a}]}\n", "t.yaml")
    assert [d.key for d in cfg.models["m"].deployments] == ["up/a", "up/a#1"]
