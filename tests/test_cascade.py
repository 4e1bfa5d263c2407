"""Cascade: the first model answers; a check accepts it or escalates to a pool."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest

from gateway.config.loader import parse_config
from gateway.wire.errors import ConfigError
from tests.conftest import GatewayRunner
from tests.support.fakes import FakeUpstream, answer, judge_picking
from tests.test_fusion import raw_stream

Q = [{"role": "user", "content": "What is 37 * 12?"}]


def cascade_config(fake: FakeUpstream, check: str) -> str:
    return f"""providers:
  up: {{type: openai, base_url: '{fake.url}/v1', retry: {{max_retries: 0}}}}
  sim: {{type: simulator, profiles: {{judge: {{ttft_ms: 5, tokens_per_s: 5000, accuracy: 1.0}}}}}}
models:
  ft: {{provider: up, price: {{input: 1, output: 2}}}}
  cheap: {{provider: up, price: {{input: 1, output: 2}}}}
  a: {{provider: up, price: {{input: 1, output: 2}}}}
  b: {{provider: up, price: {{input: 1, output: 2}}}}
  j: {{provider: up, price: {{input: 1, output: 2}}}}
  sj: {{provider: sim, model: judge, price: {{input: 1, output: 2}}}}
pools:
  p:
    mode: best-of
    members: [a, b]
    judge: {{model: j}}
  c:
    mode: cascade
    first: ft
    check: {check}
    escalate: p
"""


def pool_answers(fake: FakeUpstream) -> None:
    fake.behaviours["a"] = answer("The answer is 444. BEST")
    fake.behaviours["b"] = answer("The answer is 440.")
    fake.behaviours["j"] = judge_picking(lambda text: "BEST" in text)


def post(url: str, **body: object) -> dict[str, object]:
    r = httpx.post(url + "/v1/chat/completions", json={"model": "c", "messages": Q, **body}, timeout=20)
    assert r.status_code == 200, r.text
    return r.json(parse_float=Decimal)  # type: ignore[no-any-return]


def test_agreeing_check_model_accepts_the_first_answer(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    fake.behaviours["ft"] = answer("37 * 12 = 444. The answer is 444.")
    fake.behaviours["cheap"] = answer("444", delay=0.3)
    pool_answers(fake)
    with gateway(cascade_config(fake, "{agree_with: cheap, compare: numeric}")) as (_, srv):
        body = post(srv.url)
        _, events = raw_stream(srv.url, {"model": "c", "messages": Q, "stream": True, "fusion": {"events": True}})
        stats = httpx.get(srv.url + "/v1/fusion/stats").json()
    fusion = body["fusion"]
    assert body["choices"][0]["message"]["content"] == "37 * 12 = 444. The answer is 444."  # type: ignore[index]
    assert fusion["mode"] == "cascade" and fusion["winner"] == "ft"  # type: ignore[index]
    assert fusion["cascade"] == {  # type: ignore[index]
        "first": "ft", "escalate": "p", "escalated": False, "reason": None, "confidence": None, "escalation": None
    }
    assert [m["model"] for m in fusion["members"]] == ["ft", "cheap"]  # type: ignore[index]
    assert fusion["cost_usd"] == sum(m["cost_usd"] for m in fusion["members"])  # type: ignore[index]
    assert fake.requests_for("a") == [] and fake.requests_for("j") == []  # the pool never ran
    # Streamed, the first model's answer only goes out once the check model has agreed.
    kinds = [e["fusion_event"]["type"] if "fusion_event" in e else "content" for e in events
             if "fusion_event" in e or (e.get("choices") and e["choices"][0]["delta"].get("content"))]
    cheap_done = max(i for i, e in enumerate(events) if e.get("fusion_event", {}).get("type") == "member.done"
                     and e["fusion_event"]["model"] == "cheap")
    first_content = next(
        i for i, e in enumerate(events) if e.get("choices") and e["choices"][0]["delta"].get("content")
    )
    assert first_content > cheap_done and "cascade.escalated" not in kinds
    (c,) = [p for p in stats["pools"] if p["pool"] == "c"]
    assert c["cascade"]["requests"] == 2 and c["cascade"]["escalated"] == 0 and c["cascade"]["escalation_rate"] == 0


def test_disagreement_escalates_to_the_pool(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    fake.behaviours["ft"] = answer("The answer is 445.")
    fake.behaviours["cheap"] = answer("The answer is 444.")
    pool_answers(fake)
    with gateway(cascade_config(fake, "{agree_with: cheap, compare: numeric}")) as (_, srv):
        body = post(srv.url)
        _, events = raw_stream(srv.url, {"model": "c", "messages": Q, "stream": True, "fusion": {"events": True}})
        stats = httpx.get(srv.url + "/v1/fusion/stats").json()
        metrics = httpx.get(srv.url + "/metrics").text
    fusion = body["fusion"]
    assert body["choices"][0]["message"]["content"] == "The answer is 444. BEST"  # type: ignore[index]
    cascade = fusion["cascade"]  # type: ignore[index]
    assert cascade["escalated"] is True and cascade["reason"] == "disagreed"
    nested = cascade["escalation"]
    assert nested["pool"] == "p" and nested["winner"] == "a" and nested["judge"]["status"] == "ok"
    own = sum(m["cost_usd"] for m in fusion["members"])  # type: ignore[index]
    assert fusion["cost_usd"] == own + nested["cost_usd"] and nested["cost_usd"] > 0  # type: ignore[index]
    assert fusion["latency_ms"]["escalation"] > 0  # type: ignore[index]
    assert not any("445" in (e["choices"][0]["delta"].get("content") or "") for e in events if e.get("choices"))
    escalated = [e["fusion_event"] for e in events if e.get("fusion_event", {}).get("type") == "cascade.escalated"]
    assert len(escalated) == 1 and escalated[0]["reason"] == "disagreed" and escalated[0]["pool"] == "p"
    (c,) = [p for p in stats["pools"] if p["pool"] == "c"]
    assert c["cascade"]["escalated"] == 2 and c["cascade"]["escalation_rate"] == 1.0
    assert Decimal(str(c["cascade"]["pool_mean_cost_usd"])) == nested["cost_usd"]
    assert 'fusion_cascade_requests_total{outcome="escalated",pool="c",reason="disagreed"} 2.0' in metrics


SCHEMA = {"type": "json_schema", "json_schema": {"name": "n", "schema": {
    "type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}}}


@pytest.mark.parametrize(
    ("check", "first", "extra", "reason"),
    [
        ("{response_format: true}", '{"n": 444}', {"response_format": SCHEMA}, None),
        ("{response_format: true}", '{"n": "444"}', {"response_format": SCHEMA}, "schema_mismatch"),
        ("{response_format: true}", "n = 444", {"response_format": SCHEMA}, "invalid_json"),
        ("{response_format: true}", "[1]", {"response_format": {"type": "json_object"}}, "invalid_json"),
        ("{regex: '^The answer is -?[0-9]+[.]$'}", "The answer is 444.", {}, None),
        ("{regex: '^The answer is -?[0-9]+[.]$'}", "Hmm, maybe 444?", {}, "regex_mismatch"),
    ],
)
def test_output_validity_checks(
    gateway: GatewayRunner, fake: FakeUpstream, check: str, first: str, extra: dict[str, object], reason: str | None
) -> None:
    fake.behaviours["ft"] = answer(first)
    pool_answers(fake)
    with gateway(cascade_config(fake, check)) as (_, srv):
        body = post(srv.url, **extra)
    cascade = body["fusion"]["cascade"]  # type: ignore[index]
    assert cascade["reason"] == reason and cascade["escalated"] is (reason is not None)
    assert (fake.requests_for("a") == []) is (reason is None)
    assert fake.requests_for("ft")[0].body.get("response_format") == extra.get("response_format")


def test_judge_confidence_check(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    """The simulated judge reads the confidence question from the outside and works the sum out."""
    pool_answers(fake)
    with gateway(cascade_config(fake, "{judge: sj, min_confidence: 0.8}")) as (_, srv):
        fake.behaviours["ft"] = answer("The answer is 444.")
        right = post(srv.url)["fusion"]
        fake.behaviours["ft"] = answer("The answer is 446.")
        wrong = post(srv.url)["fusion"]
    assert right["cascade"]["escalated"] is False and right["cascade"]["confidence"] == Decimal("0.95")  # type: ignore[index]
    assert right["judge"]["status"] == "ok" and right["judge"]["calls"] == 1  # type: ignore[index]
    assert right["judge"]["cost_usd"] > 0  # type: ignore[index]
    assert wrong["cascade"]["escalated"] is True and wrong["cascade"]["reason"] == "low_confidence"  # type: ignore[index]
    assert wrong["cascade"]["confidence"] == Decimal("0.05")  # type: ignore[index]
    assert wrong["judge"]["calls"] == 1  # type: ignore[index]  # the escalation pool's judge is nested, not here
    assert wrong["cascade"]["escalation"]["judge"]["calls"] == 1  # type: ignore[index]


def test_cascade_overrides_that_shape_a_pool_are_refused(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    with gateway(cascade_config(fake, "{regex: x}")) as (_, srv):
        r = httpx.post(srv.url + "/v1/chat/completions",
                       json={"model": "c", "messages": Q, "fusion": {"mode": "merge"}}, timeout=10)
    assert r.status_code == 400
    assert r.json()["error"]["message"] == "'fusion.mode' cannot be set on cascade 'c'"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("escalate: p", "escalate: nope"), "test.yaml:20: pools.c.escalate: unknown pool 'nope' (known: p)"),
        (("escalate: p", "escalate: c"), "test.yaml:20: pools.c.escalate: 'c' is a cascade; escalate to a pool"),
        (("first: ft", "first: p"), "test.yaml:18: pools.c.first: 'p' is a pool; a cascade's first model must be a "
                                    "model (no pool inside a pool)"),
        (("{regex: x}", "{compare: numeric}"), "test.yaml:19: pools.c.check: give at least one of "
                                              "response_format, regex, agree_with, judge"),
    ],
)
def test_cascade_config_errors(fake: FakeUpstream, edit: tuple[str, str], message: str) -> None:
    fake.url = "http://127.0.0.1:1"  # type: ignore[attr-defined]
    text = cascade_config(fake, "{regex: x}").replace(*edit)
    with pytest.raises(ConfigError) as info:
        parse_config(text, "test.yaml")
    assert info.value.message == message
