"""Pools end to end through the openai SDK: every mode, fan-out policy, failures, cancellation, streaming."""

from __future__ import annotations

import json
import threading
import time
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletion

from tests.conftest import GatewayRunner, sdk
from tests.support.fakes import (
    FakeUpstream,
    answer,
    candidates_in,
    error_reply,
    hang,
    json_reply,
    judge_picking,
    sse_reply,
    text_chunks,
)
from tests.support.servers import wait_until

HI = [{"role": "user", "content": "Which sorting algorithm should I use?"}]
USAGE = {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25}


def pool_config(fake: FakeUpstream, pool: str, *, server: str = "", models: tuple[str, ...] = ("a", "b", "c")) -> str:
    """Models a, b, c (members) and j (judge) on the fake upstream, priced, plus ``pool`` (YAML, indented)."""
    names = [*models, "j"]
    lines = [
        f"server: {{{server}}}" if server else "",
        "providers:",
        f"  up: {{type: openai, base_url: '{fake.url}/v1', retry: {{max_retries: 0}}}}",
        "models:",
        *(f"  {m}: {{provider: up, price: {{input: 1, output: 2}}}}" for m in names),
        "pools:",
        pool,
    ]
    return "\n".join(lines) + "\n"


def three_answers(fake: FakeUpstream, delays: tuple[float, float, float] = (0, 0, 0)) -> None:
    fake.behaviours["a"] = answer("Use merge sort: it is stable.", delay=delays[0])
    fake.behaviours["b"] = answer("Use quicksort. BEST: average n log n, in place.", delay=delays[1])
    fake.behaviours["c"] = answer("Bubble sort is fine.", delay=delays[2])


BEST_OF = """  p:
    mode: best-of
    members: [a, b, c]
    judge: {model: j}
"""


def raw_stream(url: str, body: dict[str, Any], timeout: float = 20) -> tuple[str, list[dict[str, Any]]]:
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=timeout) as r:
        assert r.status_code == 200, r.read()
        text = r.read().decode()
    events = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]
    return text, events


# ------------------------------------------------------------------ modes


def test_best_of_returns_the_winning_answer_unchanged(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    three_answers(fake)
    fake.behaviours["j"] = judge_picking(lambda text: "BEST" in text)
    with gateway(pool_config(fake, BEST_OF)) as (_, srv):
        raw = httpx.post(srv.url + "/v1/chat/completions", json={"model": "p", "messages": HI}, timeout=20)
    assert raw.status_code == 200, raw.text
    body = raw.json(parse_float=Decimal)
    ChatCompletion.model_validate(raw.json())
    assert body["model"] == "p"
    assert body["choices"][0]["message"]["content"] == "Use quicksort. BEST: average n log n, in place."
    fusion = body["fusion"]
    assert fusion["pool"] == "p" and fusion["mode"] == "best-of"
    assert fusion["winner"] == "b" and fusion["winner_index"] == 1
    assert [m["model"] for m in fusion["members"]] == ["a", "b", "c"]
    assert all(m["status"] == "ok" and m["error_type"] is None for m in fusion["members"])
    assert fusion["judge"]["status"] == "ok" and fusion["judge"]["verdict"]["winner"] == "b"
    assert fusion["degraded"] is False
    # usage sums every call: three members (20+5 each) and the judge (300+20)
    assert body["usage"]["prompt_tokens"] == 3 * 20 + 300 and body["usage"]["completion_tokens"] == 3 * 5 + 20
    # price 1 / 2 USD per 1M: 360 * 1 + 35 * 2 = 430 micro-USD
    assert fusion["cost_usd"] == Decimal("0.00043")
    assert raw.headers["x-fusion-cost-usd"] == "0.00043"
    # the judge saw the three answers as anonymous candidates with this request's nonce
    (judge_req,) = fake.requests_for("j")
    shown = sorted(b.body for b in candidates_in(judge_req))
    assert shown == sorted(["Use merge sort: it is stable.", "Use quicksort. BEST: average n log n, in place.",
                            "Bubble sort is fine."])
    assert judge_req.body["response_format"]["json_schema"]["name"] == "fusion_verdict"
    assert not any(m in judge_req.body["messages"][-1]["content"] for m in ("'a'", "'b'", "'c'"))


def test_best_of_streamed_through_the_sdk(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    three_answers(fake)
    fake.behaviours["j"] = judge_picking(lambda text: "BEST" in text)
    with gateway(pool_config(fake, BEST_OF)) as (_, srv):
        state: ChatCompletionStreamState = ChatCompletionStreamState()
        chunks = list(sdk(srv.url).chat.completions.create(model="p", messages=HI, stream=True,  # type: ignore[arg-type]
                                                          stream_options={"include_usage": True}))
        for c in chunks:
            state.handle_chunk(c)
    final = state.get_final_completion()
    assert final.choices[0].message.content == "Use quicksort. BEST: average n log n, in place."
    assert final.choices[0].finish_reason == "stop"
    assert {c.model for c in chunks} == {"p"} and len({c.id for c in chunks}) == 1
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None and last.usage.total_tokens == 3 * 25 + 320
    fusion = last.model_extra["fusion"]  # type: ignore[index]
    assert fusion["winner"] == "b" and fusion["judge"]["status"] == "ok"


def test_merge_streams_the_judges_words_as_they_come(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    three_answers(fake)
    merged = "Use quicksort for speed, merge sort when stability matters; avoid bubble sort."
    fake.behaviours["j"] = answer(merged, pieces=6, interval=0.05)
    pool = BEST_OF.replace("best-of", "merge")
    with gateway(pool_config(fake, pool)) as (_, srv):
        text, events = raw_stream(srv.url, {"model": "p", "messages": HI, "stream": True})
        plain = httpx.post(srv.url + "/v1/chat/completions", json={"model": "p", "messages": HI}, timeout=20).json()
    deltas = [e["choices"][0]["delta"].get("content") for e in events if e["choices"]]
    pieces = [d for d in deltas if d]
    assert "".join(pieces) == merged
    assert len(pieces) >= 6  # relayed piece by piece, not buffered
    assert text.rstrip().endswith("data: [DONE]")
    assert events[-1]["fusion"]["mode"] == "merge" and events[-1]["choices"][0]["finish_reason"] == "stop"
    assert plain["choices"][0]["message"]["content"] == merged
    assert plain["fusion"]["winner"] is None and plain["fusion"]["judge"]["status"] == "ok"
    judge_prompt = fake.requests_for("j")[0].body
    assert "response_format" not in judge_prompt  # merge asks for free text
    assert len(candidates_in(fake.requests_for("j")[0])) == 3


def test_debate_members_see_each_other_and_stop_once_they_agree(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    def member(first: str) -> Any:
        async def run(seen: Any, send: Any) -> None:
            revising = len(seen.body["messages"]) > len(HI)
            await answer("Consensus: quicksort." if revising else first)(seen, send)
        return run

    fake.behaviours["a"] = member("merge sort")
    fake.behaviours["b"] = member("quicksort")
    fake.behaviours["c"] = member("heap sort")
    fake.behaviours["j"] = judge_picking(lambda text: True)
    pool = BEST_OF.replace("best-of", "debate") + "    debate: {rounds: 3, final: best-of}\n"
    with gateway(pool_config(fake, pool)) as (_, srv):
        body = httpx.post(srv.url + "/v1/chat/completions", json={"model": "p", "messages": HI}, timeout=20).json()
    fusion = body["fusion"]
    assert body["choices"][0]["message"]["content"] == "Consensus: quicksort."
    assert [r["round"] for r in fusion["rounds"]] == [1]  # round 1 agreed: rounds 2 and 3 never ran
    assert fusion["rounds"][0]["agreed"] is True and len(fusion["rounds"][0]["members"]) == 3
    assert fusion["judge"]["status"] == "skipped" and fake.requests_for("j") == []
    # in round 1 each member saw its own answer and the two others, anonymously
    (revision,) = [s for s in fake.requests_for("a") if len(s.body["messages"]) > len(HI)]
    msgs = revision.body["messages"]
    assert msgs[-2] == {"role": "assistant", "content": "merge sort"}
    assert "quicksort" in msgs[-1]["content"] and "heap sort" in msgs[-1]["content"]
    assert "merge sort" not in msgs[-1]["content"]
    assert body["usage"]["prompt_tokens"] == 6 * 20  # two rounds of three members, no judge


def test_debate_that_never_agrees_runs_every_round_then_the_judge_decides(
    gateway: GatewayRunner, fake: FakeUpstream
) -> None:
    three_answers(fake)
    fake.behaviours["j"] = judge_picking(lambda text: "BEST" in text)
    pool = BEST_OF.replace("best-of", "debate") + "    debate: {rounds: 2, final: best-of}\n"
    with gateway(pool_config(fake, pool)) as (_, srv):
        fusion = httpx.post(srv.url + "/v1/chat/completions", json={"model": "p", "messages": HI}, timeout=20).json()[
            "fusion"
        ]
    assert [r["round"] for r in fusion["rounds"]] == [1, 2]
    assert len(fake.requests_for("a")) == 3
    assert fusion["winner"] == "b" and fusion["judge"]["status"] == "ok"
    assert len(fusion["latency_ms"]["rounds"]) == 2


# ------------------------------------------------------------------ failures


def test_one_failing_member_degrades_but_never_reaches_the_judge(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    three_answers(fake)
    fake.behaviours["c"] = error_reply(500, "secret stack trace XYZZY")
    fake.behaviours["j"] = judge_picking(lambda text: "BEST" in text)
    with gateway(pool_config(fake, BEST_OF)) as (_, srv):
        resp = httpx.post(srv.url + "/v1/chat/completions", json={"model": "p", "messages": HI}, timeout=20)
        metrics = httpx.get(srv.url + "/metrics").text
    assert resp.status_code == 200
    fusion = resp.json()["fusion"]
    assert fusion["degraded"] is True
    assert fusion["members"][2] | {"latency_ms": 0} == {
        "member": 2, "model": "c", "status": "error", "latency_ms": 0, "usage": None, "cost_usd": 0,
        "error_type": "http_500", "answered_by": None, "fallback_reason": None}  # refused: nothing billed
    judge_prompt = fake.requests_for("j")[0].body["messages"][-1]["content"]
    assert len(candidates_in(fake.requests_for("j")[0])) == 2
    assert "XYZZY" not in judge_prompt and "XYZZY" not in resp.text
    assert 'fusion_requests_total{mode="best-of",outcome="degraded",pool="p"} 1.0' in metrics
    assert 'fusion_member_calls_total{model="c",outcome="error",pool="p"} 1.0' in metrics


def test_only_one_member_answering_skips_the_judge(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    three_answers(fake)
    fake.behaviours["a"] = error_reply(503)
    fake.behaviours["c"] = error_reply(500)
    fake.behaviours["j"] = judge_picking(lambda text: True)
    with gateway(pool_config(fake, BEST_OF)) as (_, srv):
        body = httpx.post(srv.url + "/v1/chat/completions", json={"model": "p", "messages": HI}, timeout=20).json()
    assert body["choices"][0]["message"]["content"].startswith("Use quicksort")
    assert body["fusion"]["judge"]["status"] == "skipped" and fake.requests_for("j") == []


@pytest.mark.parametrize(
    ("statuses", "code", "message"),
    [
        ((500, 500, 503), 502, "pool 'p': all 3 members failed (2 http_500, 1 http_503)"),
        ((400, 400, 400), 400, "pool 'p': all 3 members failed (3 http_400); first refusal: upstream 'a' "
                               "rejected the request (400): upstream internals ***"),
        ((503, 503, 503), 503, "pool 'p': all 3 members failed (3 http_503)"),
    ],
)
def test_every_member_failing_is_an_error_saying_how(
    gateway: GatewayRunner, fake: FakeUpstream, statuses: tuple[int, int, int], code: int, message: str
) -> None:
    for name, status in zip("abc", statuses, strict=True):
        fake.behaviours[name] = error_reply(status, "upstream internals sk-live-abcdefghijklmnop")
    with gateway(pool_config(fake, BEST_OF)) as (_, srv):
        resp = httpx.post(srv.url + "/v1/chat/completions", json={"model": "p", "messages": HI}, timeout=20)
        with pytest.raises(openai.APIStatusError) as info:
            sdk(srv.url).chat.completions.create(model="p", messages=HI)  # type: ignore[arg-type]
    assert resp.status_code == code and info.value.status_code == code
    err = resp.json()["error"]
    assert err["message"] == message and err["code"] == "pool_failed"
    assert "sk-live" not in resp.text
    assert ("internals" in resp.text) == (code == 400)  # only the caller's own mistake is explained


def test_quorum_and_grace_cancel_a_hung_member_and_close_its_connection(
    gateway: GatewayRunner, fake: FakeUpstream
) -> None:
    three_answers(fake)
    fake.behaviours["c"] = hang()
    fake.behaviours["j"] = judge_picking(lambda text: "BEST" in text)
    pool = BEST_OF + "    quorum: 2\n    grace_ms: 150\n    timeout_s: 30\n"
    with gateway(pool_config(fake, pool)) as (_, srv):
        t0 = time.monotonic()
        body = httpx.post(srv.url + "/v1/chat/completions", json={"model": "p", "messages": HI}, timeout=20).json()
        elapsed = time.monotonic() - t0
        (hung,) = fake.requests_for("c")
        assert wait_until(lambda: hung.disconnected is not None, timeout=1.0)
    assert elapsed < 1.5
    c = body["fusion"]["members"][2]
    assert c["status"] == "cancelled" and c["error_type"] == "cancelled"
    assert 140 <= c["latency_ms"] <= 1000  # waited for the grace period only
    assert body["fusion"]["winner"] == "b"
    # cancelled by design (quorum met, grace over): the answer is whole, not degraded
    assert body["fusion"]["degraded"] is False


def test_a_member_timeout_is_its_own_wall_clock(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    three_answers(fake)
    fake.behaviours["a"] = sse_reply(text_chunks("slow but steady"), interval=0.4)  # drips past the limit
    fake.behaviours["j"] = judge_picking(lambda text: "BEST" in text)
    pool = BEST_OF + "    timeout_s: 0.5\n"
    with gateway(pool_config(fake, pool)) as (_, srv):
        body = httpx.post(srv.url + "/v1/chat/completions", json={"model": "p", "messages": HI}, timeout=20).json()
    a = body["fusion"]["members"][0]
    assert a["status"] == "timeout" and a["error_type"] == "timeout"
    assert 450 <= a["latency_ms"] < 1500
    assert a["usage"]["usage_estimated"] is True  # it produced text before the cut: charged, estimated
    assert len(candidates_in(fake.requests_for("j")[0])) == 2


def test_client_disconnect_cancels_every_upstream_call_and_skips_the_judge(
    gateway: GatewayRunner, fake: FakeUpstream
) -> None:
    for name in "abc":
        fake.behaviours[name] = hang()
    fake.behaviours["j"] = judge_picking(lambda text: True)
    with gateway(pool_config(fake, BEST_OF)) as (_, srv):
        for stream in (False, True):
            before = len(fake.seen)
            with pytest.raises(httpx.ReadTimeout):
                httpx.post(srv.url + "/v1/chat/completions", json={"model": "p", "messages": HI, "stream": stream},
                           timeout=httpx.Timeout(5, read=0.5))
            gone_at = time.monotonic()
            calls = fake.seen[before:]
            assert len(calls) == 3
            assert wait_until(lambda calls=calls: all(s.disconnected for s in calls), timeout=1.0)  # type: ignore[misc]
            assert max(s.disconnected for s in calls) - gone_at < 1.0  # type: ignore[type-var,operator]
    assert fake.requests_for("j") == []


def test_keepalives_flow_while_members_work_and_the_sdk_ignores_them(
    gateway: GatewayRunner, fake: FakeUpstream
) -> None:
    three_answers(fake, delays=(0.9, 0.9, 0.9))
    fake.behaviours["j"] = judge_picking(lambda text: "BEST" in text)
    with gateway(pool_config(fake, BEST_OF, server="keepalive_s: 0.2")) as (_, srv):
        text, _ = raw_stream(srv.url, {"model": "p", "messages": HI, "stream": True})
        chunks = list(sdk(srv.url).chat.completions.create(model="p", messages=HI, stream=True))  # type: ignore[arg-type]
    before_data = text.split("data: ", 1)[0]
    assert before_data.count(": fusion keep-alive\n\n") >= 3
    assert "event:" not in text  # never an event the SDK could choke on
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).startswith("Use quicksort")


# ------------------------------------------------------------------ judge failures


@pytest.mark.parametrize(
    ("behaviour", "reason"),
    [
        (error_reply(500), "upstream_error"),
        (hang(), "timeout"),
        (answer("I think B is best."), "not_json"),
        (answer('{"analysis": "x"}'), "missing_field"),
        (answer('{"analysis": "x", "winner": "ZZ"}'), "unknown_label"),
        (answer('{"analysis": "x", "winner": "A", "confidence": 1}'), "extra_keys"),
        (answer('[{"winner": "A"}]'), "not_object"),
    ],
)
def test_judge_failures_fall_back_to_the_first_success(
    gateway: GatewayRunner, fake: FakeUpstream, behaviour: Any, reason: str
) -> None:
    three_answers(fake, delays=(0.3, 0.0, 0.15))  # b finishes first
    fake.behaviours["j"] = behaviour
    pool = BEST_OF.replace("judge: {model: j}", "judge: {model: j, timeout_s: 0.5}")
    with gateway(pool_config(fake, pool)) as (_, srv):
        resp = httpx.post(srv.url + "/v1/chat/completions", json={"model": "p", "messages": HI}, timeout=20)
        metrics = httpx.get(srv.url + "/metrics").text
    assert resp.status_code == 200
    fusion = resp.json()["fusion"]
    assert fusion["judge"]["status"] == "fallback" and fusion["judge"]["fallback_reason"] == reason
    assert fusion["winner"] == "b" and fusion["degraded"] is True
    assert resp.json()["choices"][0]["message"]["content"].startswith("Use quicksort")
    assert 'fusion_judge_verdicts_total{outcome="fallback",pool="p"} 1.0' in metrics


def test_judge_failure_with_fallback_error_is_a_502(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    three_answers(fake)
    fake.behaviours["j"] = answer("not a verdict")
    with gateway(pool_config(fake, BEST_OF + "    fallback: error\n")) as (_, srv):
        resp = httpx.post(srv.url + "/v1/chat/completions", json={"model": "p", "messages": HI}, timeout=20)
    assert resp.status_code == 502
    assert resp.json()["error"]["code"] == "judge_failed"
    assert resp.json()["error"]["message"] == "pool 'p': the judge failed (not_json) and fallback is 'error'"
    # what was spent is still reported: three members (20 in, 5 out) and the judge, at 1 / 2 USD per 1M
    assert resp.headers["x-fusion-cost-usd"] == "0.00012"


def test_stream_errors_keep_their_status_until_the_stream_starts_then_go_in_band(
    gateway: GatewayRunner, fake: FakeUpstream
) -> None:
    for name in "abc":
        fake.behaviours[name] = error_reply(500)
    with gateway(pool_config(fake, BEST_OF)) as (_, srv):
        early = httpx.post(srv.url + "/v1/chat/completions", json={"model": "p", "messages": HI, "stream": True})
        with pytest.raises(openai.APIStatusError) as info:
            list(sdk(srv.url).chat.completions.create(model="p", messages=HI, stream=True))  # type: ignore[arg-type]
    assert early.status_code == 502 and early.json()["error"]["code"] == "pool_failed"
    assert early.headers["x-fusion-cost-usd"] == "0"
    assert info.value.status_code == 502
    three_answers(fake, delays=(0.6, 0.6, 0.6))
    fake.behaviours["j"] = answer("not a verdict")
    config = pool_config(fake, BEST_OF + "    fallback: error\n", server="keepalive_s: 0.2")
    with gateway(config) as (_, srv):
        text, events = raw_stream(srv.url, {"model": "p", "messages": HI, "stream": True})
    assert text.startswith(": fusion keep-alive")  # the stream had started: the error can only go in-band
    assert "[DONE]" not in text and events[-1]["error"]["code"] == "judge_failed"


def test_swap_asks_twice_in_reversed_order(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    three_answers(fake)
    fake.behaviours["j"] = judge_picking(lambda text: "BEST" in text)
    pool = BEST_OF.replace("judge: {model: j}", "judge: {model: j, swap: true}")
    with gateway(pool_config(fake, pool)) as (_, srv):
        fusion = httpx.post(srv.url + "/v1/chat/completions", json={"model": "p", "messages": HI}, timeout=20).json()[
            "fusion"
        ]
    first, second = (candidates_in(s) for s in fake.requests_for("j"))
    assert [b.label for b in first] == [b.label for b in reversed(second)]
    assert fusion["judge"]["calls"] == 2 and fusion["judge"]["verdict"]["consistent"] is True
    assert fusion["winner"] == "b"


def test_swap_disagreement_is_broken_by_member_order_not_position(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    three_answers(fake)
    # A judge with pure position bias: always the first candidate shown.
    fake.behaviours["j"] = judge_picking(lambda text: True)
    pool = BEST_OF.replace("judge: {model: j}", "judge: {model: j, swap: true}")
    with gateway(pool_config(fake, pool)) as (_, srv):
        fusion = httpx.post(srv.url + "/v1/chat/completions", json={"model": "p", "messages": HI}, timeout=20).json()[
            "fusion"
        ]
    first, second = (candidates_in(s) for s in fake.requests_for("j"))
    picked = {first[0].body, second[0].body}
    members = {"Use merge sort: it is stable.": "a", "Use quicksort. BEST: average n log n, in place.": "b",
               "Bubble sort is fine.": "c"}
    assert fusion["judge"]["verdict"]["consistent"] is False
    assert fusion["winner"] == min(members[p] for p in picked)  # the earlier of the two in members order


# ------------------------------------------------------------------ requests


def test_per_request_overrides(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    three_answers(fake)
    fake.behaviours["j"] = answer("merged")
    with gateway(pool_config(fake, BEST_OF)) as (_, srv):
        client = sdk(srv.url)
        resp = client.chat.completions.create(
            model="p", messages=HI,  # type: ignore[arg-type]
            extra_body={"fusion": {"mode": "merge", "members": ["a", "c"], "criteria": "Prefer stable sorts."}},
        )
        for bad, param in [({"temperature": 1}, "fusion.temperature"), ({"members": ["a", "zz"]}, "fusion.members"),
                           ({"mode": "vote"}, "fusion.mode"), ({"rounds": 9}, "fusion.rounds")]:
            with pytest.raises(openai.BadRequestError) as info:
                client.chat.completions.create(model="p", messages=HI, extra_body={"fusion": bad})  # type: ignore[arg-type]
            assert info.value.body["param"] == param  # type: ignore[index]
    assert resp.choices[0].message.content == "merged"
    fusion = resp.model_extra["fusion"]  # type: ignore[index]
    assert fusion["mode"] == "merge" and [m["model"] for m in fusion["members"]] == ["a", "c"]
    assert fake.requests_for("b") == []
    system = fake.requests_for("j")[0].body["messages"][0]["content"]
    assert "Prefer stable sorts." in system
    assert all("fusion" not in s.body for s in fake.seen)  # the gateway's own options never go upstream


def test_tools_work_in_best_of_and_are_refused_elsewhere(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"q": "sort"}'}}
    tool_chunks = [
        {"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m",
         "choices": [{"index": 0, "delta": {"role": "assistant", "tool_calls": [{"index": 0, **call}]},
                      "finish_reason": None}]},
        {"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m",
         "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
        {"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [], "usage": USAGE},
    ]
    three_answers(fake)
    fake.behaviours["b"] = sse_reply(tool_chunks)
    fake.behaviours["j"] = judge_picking(lambda text: "lookup" in text)
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    with gateway(pool_config(fake, BEST_OF + BEST_OF.replace("  p:", "  m:").replace("best-of", "merge"))) as (_, srv):
        client = sdk(srv.url)
        resp = client.chat.completions.create(model="p", messages=HI, tools=tools)  # type: ignore[arg-type]
        streamed = list(client.chat.completions.create(model="p", messages=HI, tools=tools, stream=True))  # type: ignore[arg-type]
        with pytest.raises(openai.BadRequestError) as info:
            client.chat.completions.create(model="m", messages=HI, tools=tools)  # type: ignore[arg-type]
    msg = resp.choices[0].message
    assert resp.choices[0].finish_reason == "tool_calls"
    assert msg.tool_calls is not None and msg.tool_calls[0].function.name == "lookup"
    assert msg.tool_calls[0].function.arguments == '{"q": "sort"}' and msg.tool_calls[0].id == "call_1"
    state: ChatCompletionStreamState = ChatCompletionStreamState()
    for c in streamed:
        state.handle_chunk(c)
    assert state.get_final_completion().choices[0].message.tool_calls[0].function.name == "lookup"  # type: ignore[index]
    assert info.value.body["param"] == "tools" and "best-of" in info.value.message  # type: ignore[index]
    assert all(s.body.get("tools") == tools for s in fake.seen if s.model in "abc")


def test_models_lists_pools_alongside_models(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    with gateway(pool_config(fake, BEST_OF)) as (_, srv):
        data = sdk(srv.url).models.list().data
    assert [m.id for m in data] == ["a", "b", "c", "j", "p"]
    assert data[-1].model_extra["fusion"] == {"mode": "best-of", "members": ["a", "b", "c"], "judge": "j"}  # type: ignore[index]


def test_members_run_in_parallel_not_in_sequence(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    three_answers(fake, delays=(0.4, 0.4, 0.4))
    fake.behaviours["j"] = judge_picking(lambda text: "BEST" in text, delay=0.1)
    with gateway(pool_config(fake, BEST_OF)) as (_, srv):
        t0 = time.monotonic()
        body = httpx.post(srv.url + "/v1/chat/completions", json={"model": "p", "messages": HI}, timeout=20).json()
        elapsed = time.monotonic() - t0
    starts = [s.started for s in fake.seen if s.model in "abc"]
    assert max(starts) - min(starts) < 0.1
    assert elapsed < 1.0  # 0.4 + 0.1, not 1.2 + 0.1
    lat = body["fusion"]["latency_ms"]
    parts = lat["fanout"] + sum(lat["rounds"]) + lat["judge"] + lat["gateway"]
    assert abs(parts - lat["total"]) < 1.0


def test_concurrent_requests_do_not_share_labels_or_state(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    three_answers(fake, delays=(0.05, 0.05, 0.05))
    fake.behaviours["j"] = judge_picking(lambda text: "BEST" in text)
    results: list[str] = []
    with gateway(pool_config(fake, BEST_OF)) as (_, srv):

        def one() -> None:
            r = httpx.post(srv.url + "/v1/chat/completions", json={"model": "p", "messages": HI}, timeout=20)
            results.append(r.json()["fusion"]["winner"])

        threads = [threading.Thread(target=one) for _ in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert results == ["b"] * 12
    nonces = {candidates_in(s)[0].nonce for s in fake.requests_for("j")}
    assert len(nonces) == 12


def test_unknown_json_reply_from_a_member_is_a_member_error(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    three_answers(fake)
    fake.behaviours["a"] = json_reply({"unexpected": True})
    fake.behaviours["j"] = judge_picking(lambda text: "BEST" in text)
    with gateway(pool_config(fake, BEST_OF)) as (_, srv):
        fusion = httpx.post(srv.url + "/v1/chat/completions", json={"model": "p", "messages": HI}, timeout=20).json()[
            "fusion"
        ]
    assert fusion["members"][0]["status"] == "error" and fusion["members"][0]["error_type"] == "protocol_error"


def test_the_member_expected_to_answer_last_is_started_first(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    """Its request leaves first, so the fan-out's wait for the slowest member is not lengthened by the time
    the gateway takes to start the others. Answers keep their place in the pool's members."""
    three_answers(fake, delays=(0.0, 0.05, 0.3))
    fake.behaviours["j"] = judge_picking(lambda t: "quicksort" in t)
    with gateway(pool_config(fake, BEST_OF)) as (_, srv):
        body = {"model": "p", "messages": HI}
        first = httpx.post(srv.url + "/v1/chat/completions", json=body, timeout=20).json()
        fake.seen.clear()
        second = httpx.post(srv.url + "/v1/chat/completions", json=body, timeout=20).json()
    members = sorted((s for s in fake.seen if s.model in ("a", "b", "c")), key=lambda s: s.started)
    assert [s.model for s in members] == ["c", "b", "a"]  # slowest first, once their latencies are known
    for answer_ in (first, second):
        assert [m["model"] for m in answer_["fusion"]["members"]] == ["a", "b", "c"]
        assert answer_["choices"][0]["message"]["content"].startswith("Use quicksort")
