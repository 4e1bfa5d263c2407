"""OpenTelemetry tracing: the spans a real gateway exports over OTLP/HTTP, received and decoded here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.books.traces import MISSING, Tracing
from gateway.config.schema import TracingConfig
from gateway.wire.errors import ConfigError
from tests.conftest import GatewayRunner
from tests.support.fakes import FakeUpstream, answer, error_reply, judge_picking
from tests.support.logcapture import captured_log
from tests.support.otlp import OtlpReceiver, ReceivedSpan
from tests.support.procs import free_port
from tests.support.servers import ServerThread, serving, wait_until

HI = [{"role": "user", "content": "What is 6 * 7?"}]
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


def config(upstream: str, tracing: str) -> str:
    return f"""
providers:
  up: {{type: openai, base_url: '{upstream}/v1', api_key: sk-up-0123456789, retry: {{max_retries: 0}}}}
models:
  a: {{provider: up, model: up-a, price: {{input: 1, output: 2}}}}
  b: {{provider: up, model: up-b, price: {{input: 1, output: 2}}}}
  j: {{provider: up, model: up-j, price: {{input: 1, output: 1}}}}
  ft: {{provider: up, model: up-ft, price: {{input: 1, output: 1}}}}
pools:
  p:
    mode: debate
    members: [a, b]
    judge: {{model: j}}
    debate: {{rounds: 1, final: best-of}}
    baseline: {{model: ft, sample_rate: 1.0, compare: none}}
{tracing}"""


@contextmanager
def receiver() -> Iterator[tuple[OtlpReceiver, ServerThread]]:
    otlp = OtlpReceiver()
    with serving(otlp) as srv:
        yield otlp, srv


def children(spans: list[ReceivedSpan], parent: ReceivedSpan) -> list[ReceivedSpan]:
    return [s for s in spans if s.parent_id == parent.span_id]


def baseline_done(url: str) -> bool:
    text = httpx.get(url + "/metrics").text
    return any(s.name == "fusion_baseline_calls_total" and s.value > 0
               for f in text_string_to_metric_families(text) for s in f.samples)


def test_a_pool_request_is_one_span_with_a_child_per_call_and_round(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    usage = {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14}
    fake.behaviours["up-a"] = answer("forty-two", usage=usage)
    fake.behaviours["up-b"] = answer("42", usage=usage)
    fake.behaviours["up-ft"] = answer("42", usage=usage)
    fake.behaviours["up-j"] = judge_picking(lambda text: text == "42")
    with receiver() as (otlp, collector), captured_log() as logged:
        with gateway(config(fake.url, f"tracing: {{otlp_endpoint: '{collector.url}', sample_ratio: 1.0}}")) as (
            _,
            srv,
        ):
            r = httpx.post(srv.url + "/v1/chat/completions", json={"model": "p", "messages": HI, "max_tokens": 50},
                           headers={"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"}, timeout=20)
            assert r.status_code == 200
            assert wait_until(lambda: baseline_done(srv.url), timeout=10)
        # the gateway has stopped: its last spans were flushed on the way out
        spans = otlp.trace(CALLER_TRACE)
    assert otlp.paths and set(otlp.paths) == {"/v1/traces"}
    fusion = r.json()["fusion"]

    (root,) = [s for s in spans if s.kind == "server"]
    assert root.parent_id == CALLER_SPAN  # the caller's span is the parent
    assert root.resource["service.name"] == "fusion-gateway"
    assert root.name == "chat p"
    expected = {
        "gen_ai.operation.name": "chat", "gen_ai.request.model": "p", "http.request.method": "POST",
        "url.path": "/v1/chat/completions", "http.response.status_code": 200,
        "fusion.pool": "p", "fusion.mode": "debate", "fusion.winner": "b", "fusion.rounds": 1,
        "gen_ai.usage.input_tokens": r.json()["usage"]["prompt_tokens"],
        "gen_ai.usage.output_tokens": r.json()["usage"]["completion_tokens"],
    }
    assert {k: root.attributes.get(k) for k in expected} == expected
    assert root.attributes["fusion.cost_usd"] == pytest.approx(float(fusion["cost_usd"]))

    below = children(spans, root)
    by_role: dict[str, list[ReceivedSpan]] = {}
    for s in below:
        by_role.setdefault(str(s.attributes.get("fusion.role", s.kind)), []).append(s)
    (debate_round,) = by_role.pop("internal")
    assert debate_round.name == "debate round 1" and debate_round.attributes["fusion.round"] == 1
    assert sorted(s.name for s in by_role.pop("member")) == ["chat up-a", "chat up-b"]
    revisions = children(spans, debate_round)
    assert sorted((s.name, s.attributes["fusion.round"]) for s in revisions) == [("chat up-a", 1), ("chat up-b", 1)]
    judges = by_role.pop("judge")
    assert judges and all(s.name == "chat up-j" for s in judges)
    (baseline,) = by_role.pop("baseline")
    assert baseline.name == "chat up-ft" and by_role == {}

    for call in [*below, *revisions]:
        if call.kind != "client":
            continue
        assert call.attributes["gen_ai.operation.name"] == "chat"
        assert call.attributes["gen_ai.provider.name"] == "openai"
        assert call.attributes["gen_ai.request.model"] == call.name.removeprefix("chat ")
        assert call.attributes["fusion.pool"] == "p" and call.attributes["fusion.status"] == "ok"
        if call.attributes["fusion.role"] != "judge":
            assert call.attributes["gen_ai.usage.input_tokens"] == 10
            assert call.attributes["gen_ai.usage.output_tokens"] == 4
            # a, b: 10 in at $1/M + 4 out at $2/M; ft: 10 + 4 at $1/M
            cost = 14e-6 if call.attributes["fusion.role"] == "baseline" else 18e-6
            assert call.attributes["fusion.cost_usd"] == pytest.approx(cost)
        if call.attributes["fusion.role"] == "member":
            assert call.attributes["gen_ai.request.max_tokens"] == 50
    # each upstream was called with its own span as the parent: an upstream that traces joins the trace
    sent = {s.headers["traceparent"] for s in fake.seen}
    assert sent == {f"00-{CALLER_TRACE}-{s.span_id}-01" for s in [*below, *revisions] if s.kind == "client"}
    (line,) = [json.loads(x) for x in logged.getvalue().splitlines() if '"msg":"request"' in x]
    assert line["trace_id"] == CALLER_TRACE


def test_failed_calls_carry_error_type_and_the_request_its_status(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    fake.behaviours["up-a"] = error_reply(503, "overloaded")
    with receiver() as (otlp, collector):
        with gateway(config(fake.url, f"tracing: {{otlp_endpoint: '{collector.url}/v1/traces'}}")) as (_, srv):
            r = httpx.post(srv.url + "/v1/chat/completions", json={"model": "a", "messages": HI, "stream": True})
        (root,) = [s for s in otlp.spans if s.kind == "server"]
    assert r.status_code == 503
    assert root.parent_id == "" and root.name == "chat a"  # no caller context: a new trace
    assert root.attributes["http.response.status_code"] == 503 and root.status == 2
    (call,) = children(otlp.spans, root)
    assert call.attributes["fusion.role"] == "passthrough" and call.attributes["fusion.status"] == "error"
    assert call.attributes["error.type"] == "http_503" and call.status == 2


def test_the_sample_ratio_applies_to_new_traces_and_the_callers_decision_stands(
    gateway: GatewayRunner, fake: FakeUpstream
) -> None:
    fake.behaviours["up-a"] = answer("42")
    with receiver() as (otlp, collector):
        tracing = f"tracing: {{otlp_endpoint: '{collector.url}', sample_ratio: 0}}"
        with gateway(config(fake.url, tracing)) as (_, srv):
            for _ in range(3):
                assert httpx.post(srv.url + "/v1/chat/completions", json={"model": "a", "messages": HI}).is_success
            kept = httpx.post(srv.url + "/v1/chat/completions", json={"model": "a", "messages": HI},
                              headers={"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"})
            assert kept.is_success
    assert {s.trace_id for s in otlp.spans} == {CALLER_TRACE}
    # not sampled, still propagated: the upstream sees the trace with the sampled flag off
    sampled = [int(s.headers["traceparent"][-2:], 16) & 1 for s in fake.seen]
    assert sampled == [0, 0, 0, 1]


def test_with_tracing_off_nothing_is_propagated(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    fake.behaviours["up-a"] = answer("42")
    with gateway(config(fake.url, "")) as (app, srv):
        r = httpx.post(srv.url + "/v1/chat/completions", json={"model": "a", "messages": HI},
                       headers={"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"})
    assert r.is_success and app.gateway.tracing is None
    assert "traceparent" not in fake.seen[0].headers


def test_the_collector_address_gets_the_traces_path_when_it_has_none() -> None:
    assert TracingConfig(otlp_endpoint="http://collector:4318").otlp_endpoint == "http://collector:4318/v1/traces"
    assert TracingConfig(otlp_endpoint="http://c:4318/").otlp_endpoint == "http://c:4318/v1/traces"
    assert TracingConfig(otlp_endpoint="https://c/otlp/v1/traces").otlp_endpoint == "https://c/otlp/v1/traces"


def test_a_collector_address_that_is_not_http_is_refused() -> None:
    from gateway.config.loader import parse_config

    with pytest.raises(ConfigError) as err:
        parse_config("tracing: {otlp_endpoint: 'collector:4317'}\n", "t.yaml")
    assert err.value.message == (
        "t.yaml:1: tracing.otlp_endpoint: must be an http(s) URL, got 'collector:4317'"
    )


def test_without_the_extra_the_error_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)  # as if not installed
    with pytest.raises(ImportError) as err:
        Tracing(TracingConfig(otlp_endpoint="http://127.0.0.1:4318"))
    assert str(err.value) == MISSING == (
        "tracing is configured (tracing.otlp_endpoint) but the OpenTelemetry packages are not installed: "
        "pip install 'fusion-gateway[tracing]'"
    )




def test_serve_without_the_extra_says_which_to_install_in_a_json_line(tmp_path: Path) -> None:
    # an OpenTelemetry SDK that cannot be imported, ahead of the installed one on the path
    sdk = tmp_path / "shadow" / "opentelemetry" / "sdk"
    sdk.mkdir(parents=True)
    (sdk / "__init__.py").write_text("raise ImportError('no module named opentelemetry.sdk')\n")
    config = tmp_path / "gateway.yaml"
    config.write_text(
        "tracing: {otlp_endpoint: 'http://127.0.0.1:4318'}\n"
        "providers: {sim: {type: simulator}}\nmodels: {m: {provider: sim}}\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "shadow"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "gateway.cli", "serve", "--config", str(config), "--port",
                           str(free_port())], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 1
    lines = [json.loads(x) for x in done.stderr.splitlines()]  # the no-keys warning, then the error
    assert [(x["level"], x["msg"]) for x in lines if x["level"] == "error"] == [("error", MISSING)]
    assert "Traceback" not in done.stderr
