"""Exact cost and latency accounting, the live baseline comparison, stats and metrics."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.books.tokens import count_messages, count_text
from gateway.cli import main
from tests.conftest import GatewayRunner, http_client, sdk
from tests.support.fakes import (
    FakeUpstream,
    answer,
    chunk,
    error_reply,
    hang,
    judge_picking,
    sequence,
    sse_reply,
)
from tests.support.servers import wait_http_ready, wait_until

HI = [{"role": "user", "content": "Which sorting algorithm should I use?"}]
M = Decimal(1_000_000)


def usage(prompt: int, completion: int, cached: int = 0, reasoning: int = 0) -> dict[str, Any]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached},
            "completion_tokens_details": {"reasoning_tokens": reasoning}}


CONFIG = """
providers:
  up: {{type: openai, base_url: '{url}/v1', retry: {{max_retries: 1, backoff_base_s: 0.01}}}}
models:
  a: {{provider: up, price: {{input: 0.15, output: 0.60, cached_input: 0.075}}}}
  b: {{provider: up, price: {{input: 0.25, output: 1.00}}}}
  c: {{provider: up, price: {{input: 0.10, output: 0.40}}}}
  free: {{provider: up}}
  j: {{provider: up, price: {{input: 2.50, output: 10.00}}}}
  ft: {{provider: up, price: {{input: 0.30, output: 1.20}}}}
pools:
  p: {{mode: best-of, members: [a, b, c], judge: {{model: j}}, quorum: 2, grace_ms: 100}}
  unpriced: {{mode: best-of, members: [a, free], judge: {{model: j}}}}
  sampled:
    mode: best-of
    members: [a, b, c]
    judge: {{model: j}}
    baseline: {{model: ft, sample_rate: {rate}, compare: judge}}
  debate: {{mode: debate, members: [a, b, c], judge: {{model: j}}, debate: {{rounds: 2}}}}
"""


def cfg(fake: FakeUpstream, rate: float = 1.0) -> str:
    return CONFIG.format(url=fake.url, rate=rate)


def members(fake: FakeUpstream) -> None:
    fake.behaviours["a"] = answer("merge sort", usage=usage(1000, 200, cached=400, reasoning=50))
    fake.behaviours["b"] = answer("quicksort BEST", usage=usage(1000, 100))
    fake.behaviours["c"] = answer("bubble sort", usage=usage(1000, 300))
    fake.behaviours["j"] = judge_picking(lambda t: "BEST" in t)  # usage 300 / 20


def post(url: str, model: str, **extra: Any) -> httpx.Response:
    return httpx.post(url + "/v1/chat/completions", json={"model": model, "messages": HI, **extra}, timeout=20)


# by hand: (uncached x input + cached x cached_input + completion x output) / 1M; reasoning is in completion
COST_A = (600 * Decimal("0.15") + 400 * Decimal("0.075") + 200 * Decimal("0.60")) / M  # 0.00024
COST_B = (1000 * Decimal("0.25") + 100 * Decimal("1.00")) / M  # 0.00035
COST_C = (1000 * Decimal("0.10") + 300 * Decimal("0.40")) / M  # 0.00022
COST_J = (300 * Decimal("2.50") + 20 * Decimal("10.00")) / M  # 0.00095


def test_json_costs_are_exact_to_the_last_digit(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    members(fake)
    with gateway(cfg(fake)) as (_, srv):
        direct = post(srv.url, "a")
        fused = post(srv.url, "p")
        metrics = httpx.get(srv.url + "/metrics").text
    assert Decimal("0.00024") == COST_A
    assert direct.headers["x-fusion-cost-usd"] == "0.00024"
    body = fused.json(parse_float=Decimal)
    f = body["fusion"]
    assert [m["cost_usd"] for m in f["members"]] == [COST_A, COST_B, COST_C]
    assert f["judge"]["cost_usd"] == COST_J
    assert f["cost_usd"] == COST_A + COST_B + COST_C + COST_J == Decimal("0.00176")
    assert f["cost_by_role"] == {"member": COST_A + COST_B + COST_C, "judge": COST_J}
    assert fused.headers["x-fusion-cost-usd"] == "0.00176"
    # cached tokens counted once: in prompt_tokens, and in its details, never added twice
    assert body["usage"]["prompt_tokens"] == 3000 + 300
    assert body["usage"]["prompt_tokens_details"]["cached_tokens"] == 400
    assert body["usage"]["completion_tokens_details"]["reasoning_tokens"] == 50
    assert f["members"][0]["usage"]["prompt_tokens_details"]["cached_tokens"] == 400
    fam = families(metrics)
    costs = {s.labels["pool"] + "/" + s.labels["role"]: s.value for s in fam["fusion_cost_usd"].samples}
    assert costs["a/member"] == pytest.approx(float(COST_A))
    assert costs["p/member"] == pytest.approx(float(COST_A + COST_B + COST_C))
    assert costs["p/judge"] == pytest.approx(float(COST_J))


def test_streamed_costs_equal_the_json_ones(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    members(fake)
    with gateway(cfg(fake)) as (_, srv):
        chunks = list(sdk(srv.url).chat.completions.create(model="p", messages=HI, stream=True,  # type: ignore[arg-type]
                                                          stream_options={"include_usage": True}))
        direct = list(sdk(srv.url).chat.completions.create(model="a", messages=HI, stream=True,  # type: ignore[arg-type]
                                                          stream_options={"include_usage": True}))
    f = chunks[-1].model_extra["fusion"]  # type: ignore[index]
    assert Decimal(str(f["cost_usd"])) == COST_A + COST_B + COST_C + COST_J
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == 3300
    assert direct[-1].usage is not None and direct[-1].usage.prompt_tokens_details.cached_tokens == 400  # type: ignore[union-attr]


def test_a_call_cut_mid_stream_is_charged_for_what_it_produced(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    members(fake)
    produced = "Heap sort is good because"
    fake.behaviours["c"] = sse_reply([chunk({"role": "assistant", "content": ""}), chunk({"content": produced})],
                                     done=False)
    with gateway(cfg(fake)) as (_, srv):
        f = post(srv.url, "p").json(parse_float=Decimal)["fusion"]
    c = f["members"][2]
    assert c["status"] == "error" and c["error_type"] == "protocol_error"
    prompt, completion = count_messages(HI, count_text), count_text(produced)
    assert c["usage"]["prompt_tokens"] == prompt and c["usage"]["completion_tokens"] == completion
    assert c["usage"]["usage_estimated"] is True
    assert c["cost_usd"] == (prompt * Decimal("0.10") + completion * Decimal("0.40")) / M
    assert f["cost_usd"] == COST_A + COST_B + c["cost_usd"] + COST_J
    assert f["usage_estimated"] is True


def test_a_cancelled_call_is_charged_its_prompt_estimated(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    members(fake)
    fake.behaviours["c"] = hang()
    with gateway(cfg(fake)) as (_, srv):
        f = post(srv.url, "p").json(parse_float=Decimal)["fusion"]
    c = f["members"][2]
    assert c["status"] == "cancelled"
    prompt = count_messages(HI, count_text)
    assert c["usage"] == {"prompt_tokens": prompt, "completion_tokens": 0, "total_tokens": prompt,
                          "prompt_tokens_details": {"cached_tokens": 0},
                          "completion_tokens_details": {"reasoning_tokens": 0}, "usage_estimated": True}
    assert c["cost_usd"] == prompt * Decimal("0.10") / M


def test_a_retried_call_pays_only_for_the_attempt_that_answered(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    members(fake)
    fake.behaviours["b"] = sequence(error_reply(503), answer("quicksort BEST", usage=usage(1000, 100)))
    with gateway(cfg(fake)) as (_, srv):
        f = post(srv.url, "p").json(parse_float=Decimal)["fusion"]
        metrics = families(httpx.get(srv.url + "/metrics").text)
    assert len(fake.requests_for("b")) == 2
    assert f["members"][1]["cost_usd"] == COST_B and f["cost_usd"] == COST_A + COST_B + COST_C + COST_J
    attempts = {(s.labels["gen_ai_request_model"], s.labels["error_type"]): s.value
                for s in metrics["gen_ai_client_operation_duration_seconds"].samples if s.name.endswith("_count")}
    assert attempts[("b", "http_503")] == 1 and attempts[("b", "")] == 1


def test_an_unpriced_model_costs_null_never_zero(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    members(fake)
    fake.behaviours["free"] = answer("insertion sort", usage=usage(1000, 10))
    with gateway(cfg(fake)) as (_, srv):
        resp = post(srv.url, "unpriced")
        direct = post(srv.url, "free")
        metrics = httpx.get(srv.url + "/metrics").text
    f = resp.json()["fusion"]
    assert f["members"][1]["cost_usd"] is None and f["members"][1]["usage"]["prompt_tokens"] == 1000
    assert f["cost_usd"] is None
    assert resp.headers["x-fusion-cost-usd"] == "unknown" and direct.headers["x-fusion-cost-usd"] == "unknown"
    assert 'fusion_unpriced_calls_total{model="free"} 2.0' in metrics


def test_latency_parts_add_up_to_the_total(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    fake.behaviours["a"] = answer("merge sort", delay=0.05)
    fake.behaviours["b"] = answer("quicksort", delay=0.1)
    fake.behaviours["c"] = answer("heap sort", delay=0.02)
    fake.behaviours["j"] = judge_picking(lambda t: True, delay=0.05)
    with gateway(cfg(fake)) as (_, srv):
        for model in ("p", "debate"):
            lat = post(srv.url, model).json()["fusion"]["latency_ms"]
            parts = lat["fanout"] + sum(lat["rounds"]) + lat["judge"] + lat["gateway"]
            assert abs(parts - lat["total"]) < 1.0, lat
            assert lat["slowest_member"] >= 100 and lat["fanout"] >= lat["slowest_member"]
            assert 0 <= lat["gateway"] < 50
    assert len(lat["rounds"]) == 2  # the debate never agreed, so both rounds ran


# ------------------------------------------------------------------ baseline


def test_the_response_never_waits_for_the_baseline_and_the_comparison_is_recorded(
    gateway: GatewayRunner, fake: FakeUpstream
) -> None:
    members(fake)
    fake.behaviours["ft"] = answer("use timsort", delay=1.5, usage=usage(1000, 50))
    with gateway(cfg(fake)) as (_, srv):
        t0 = time.monotonic()
        resp = post(srv.url, "sampled")
        elapsed = time.monotonic() - t0
        assert resp.json()["fusion"]["baseline_sampled"] is True
        assert elapsed < 1.0  # the baseline answers only after 1.5 s

        def stats() -> dict[str, Any]:
            return next(p for p in httpx.get(srv.url + "/v1/fusion/stats").json(parse_float=Decimal)["pools"]
                        if p["pool"] == "sampled")

        assert wait_until(lambda: stats()["comparison"]["n"] == 1, timeout=5)
        s = stats()
        metrics = families(httpx.get(srv.url + "/metrics").text)
    fused_cost = COST_A + COST_B + COST_C + COST_J
    base_cost = (1000 * Decimal("0.30") + 50 * Decimal("1.20")) / M
    assert s["baseline"]["samples"] == 1 and s["baseline"]["mean_cost_usd"] == base_cost
    assert s["fusion"]["mean_cost_usd"] == fused_cost
    assert float(s["ratios"]["cost_p50"]) == pytest.approx(float(fused_cost / base_cost), abs=1e-3)
    assert s["ratios"]["latency_p50"] < 1  # fusion answered faster than this slow baseline
    assert s["comparison"] | {} == {"wins": 1, "ties": 0, "losses": 0, "errors": 0, "n": 1, "win_rate": 1.0,
                                    "tie_rate": 0.0, "loss_rate": 0.0}
    # the comparison judge saw both answers, in both orders
    compare_calls = [s_ for s_ in fake.requests_for("j") if "use timsort" in s_.body["messages"][-1]["content"]]
    assert len(compare_calls) == 2
    costs = {(s_.labels["pool"], s_.labels["role"]): Decimal(str(s_.value))
             for s_ in metrics["fusion_cost_usd"].samples}
    assert costs[("sampled", "baseline")] == base_cost
    assert costs[("sampled", "comparison")] == 2 * COST_J
    cmp_ = {s_.labels["result"]: s_.value for s_ in metrics["fusion_baseline_comparisons"].samples}
    assert cmp_ == {"fusion": 1.0, "baseline": 0.0, "tie": 0.0, "error": 0.0}  # the others exist at 0
    ratio = [s_ for s_ in metrics["fusion_baseline_cost_ratio"].samples if s_.name.endswith("_count")]
    assert ratio[0].value == 1.0


def test_the_baseline_is_sampled_at_the_configured_rate(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    members(fake)
    fake.behaviours["ft"] = answer("use timsort")
    n, rate = 300, 0.3
    with gateway(cfg(fake, rate=rate)) as (_, srv), http_client(srv.url) as client:
        for _ in range(n):
            client.post("/v1/chat/completions", json={"model": "sampled", "messages": HI})
        sampled = len(fake.requests_for("ft"))
    sigma = (n * rate * (1 - rate)) ** 0.5
    assert abs(sampled - n * rate) < 3.3 * sigma, sampled  # 99.9% two-sided


def test_a_failing_baseline_is_counted_and_harmless(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    members(fake)
    fake.behaviours["ft"] = error_reply(500)
    with gateway(cfg(fake)) as (_, srv):
        assert post(srv.url, "sampled").status_code == 200
        assert wait_until(lambda: next(p for p in httpx.get(srv.url + "/v1/fusion/stats").json()["pools"]
                                       if p["pool"] == "sampled")["baseline"]["errors"] == 1, timeout=5)
    assert len(fake.requests_for("ft")) == 2  # one call, retried once on its 500


def test_report_prints_a_verdict_per_pool(gateway: GatewayRunner, fake: FakeUpstream,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    members(fake)
    fake.behaviours["ft"] = answer("use timsort", usage=usage(1000, 50))
    with gateway(cfg(fake)) as (_, srv):
        post(srv.url, "sampled")
        assert wait_until(lambda: httpx.get(srv.url + "/v1/fusion/stats").json()["pools"][2]["comparison"]["n"] == 1)
        assert main(["report", "--url", srv.url]) == 0
    out = capsys.readouterr().out
    ratio = (COST_A + COST_B + COST_C + COST_J) / ((1000 * Decimal("0.30") + 50 * Decimal("1.20")) / M)
    line = next(x for x in out.splitlines() if x.startswith("sampled: "))
    assert line.startswith(f"sampled: fusion: {float(ratio):.1f}x cost, ")
    assert line.endswith(" ms p50, wins 100% / ties 0% / loses 0% (n=1)")
    assert "p: no baseline configured" in out
    assert out.splitlines()[0].split()[:3] == ["pool", "mode", "ok/degr/err"]


# ------------------------------------------------------------------ metrics

CONTRACT = {
    "fusion_requests": {"pool", "mode", "outcome"},
    "fusion_request_duration_seconds": {"pool", "mode"},
    "fusion_stage_duration_seconds": {"pool", "stage"},
    "fusion_member_calls": {"pool", "model", "outcome"},
    "fusion_cost_usd": {"pool", "role"},
    "fusion_baseline_latency_ratio": {"pool"},
    "fusion_baseline_cost_ratio": {"pool"},
    "fusion_baseline_comparisons": {"pool", "result"},
    "fusion_judge_verdicts": {"pool", "outcome"},
    "fusion_winner": {"pool", "model"},
    "fusion_unpriced_calls": {"model"},
    "fusion_inflight_requests": set(),
    "gen_ai_client_operation_duration_seconds": {"gen_ai_operation_name", "gen_ai_provider_name",
                                                 "gen_ai_request_model", "error_type"},
    "gen_ai_client_token_usage": {"gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model",
                                  "gen_ai_token_type"},
    "fusion_config_last_reload_successful": set(),
    "fusion_config_last_reload_success_timestamp_seconds": set(),
}


def families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_metrics_have_exactly_the_contracted_names_and_labels(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    members(fake)
    fake.behaviours["free"] = answer("x")
    fake.behaviours["ft"] = answer("use timsort")
    with gateway(cfg(fake)) as (_, srv):
        post(srv.url, "p")
        post(srv.url, "unpriced")
        post(srv.url, "sampled")
        assert wait_until(lambda: "fusion_baseline_comparisons_total" in httpx.get(srv.url + "/metrics").text)
        text = httpx.get(srv.url + "/metrics").text
    fam = families(text)
    for name, labels in CONTRACT.items():
        assert name in fam, name
        for s in fam[name].samples:
            assert set(s.labels) - {"le"} == labels, (name, s.labels)
    assert "_created" not in text
    assert fam["fusion_requests"].type == "counter" and fam["fusion_request_duration_seconds"].type == "histogram"
    stages = {s.labels["stage"] for s in fam["fusion_stage_duration_seconds"].samples}
    assert stages == {"fanout", "judge", "gateway"}
    buckets = [s.labels["le"] for s in fam["gen_ai_client_operation_duration_seconds"].samples if "le" in s.labels]
    assert buckets[:3] == ["0.01", "0.02", "0.04"] and "81.92" in buckets


def test_two_workers_one_scrape_shows_both(tmp_path: Path, fake: FakeUpstream) -> None:
    members(fake)
    config = tmp_path / "gw.yaml"
    config.write_text(cfg(fake))
    port = _free_port()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom")}
    log = (tmp_path / "gateway.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve", "--config", str(config), "--port",
                             str(port), "--workers", "2"], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http_ready(url + "/readyz", timeout=30)
        n = 40
        for _ in range(n):  # a new connection each time, so both workers take some
            assert httpx.post(url + "/v1/chat/completions", json={"model": "a", "messages": HI}).status_code == 200
        workers_with_counts = {p.name for p in (tmp_path / "prom").glob("counter_*.db")}
        assert len(workers_with_counts) == 2, workers_with_counts
        for _ in range(6):  # whichever worker answers the scrape, it reports both
            fam = families(httpx.get(url + "/metrics").text)
            total = sum(s.value for s in fam["fusion_requests"].samples if s.name == "fusion_requests_total")
            assert total == n
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_background_work_is_bounded_and_ends_with_the_gateway(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    members(fake)
    fake.behaviours["ft"] = hang()
    config = "server: {background_max_inflight: 1}\n" + cfg(fake)
    with gateway(config) as (_, srv):
        for _ in range(3):
            assert post(srv.url, "sampled").status_code == 200  # never waits for the hung baseline
        metrics = families(httpx.get(srv.url + "/metrics").text)
        (baseline,) = fake.requests_for("ft")
        assert baseline.disconnected is None
        t0 = time.monotonic()
    # leaving the block shut the gateway down: its background call was cancelled and its connection closed
    assert time.monotonic() - t0 < 5
    assert wait_until(lambda: baseline.disconnected is not None, timeout=2)
    skipped = {s.labels["pool"]: s.value for s in metrics["fusion_baseline_skipped"].samples
               if s.name == "fusion_baseline_skipped_total"}
    assert skipped == {"sampled": 2.0}
