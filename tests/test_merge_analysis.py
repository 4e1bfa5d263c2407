"""A merge that shows its work: the judge compares the panel, then writes the answer from its comparison."""

from __future__ import annotations

import json
import random
from decimal import Decimal
from typing import Any

import anyio
import httpx
import pytest

from fusion_modes.analysis import SECTIONS, analysis_messages, analysis_response_format, parse_analysis
from fusion_modes.base import Candidate, FusionContext, JudgeFailed, Written
from fusion_modes.judge import make_ballot
from fusion_modes.merge import merge
from gateway.config.loader import parse_config
from gateway.config.providers import SimulatorProfile
from gateway.pipeline.estimate import JUDGE_OVERHEAD_TOKENS, pool_cost, prompt_tokens
from gateway.pipeline.plan import plan_pool
from gateway.providers.simulator.engine import SimulatedModel
from gateway.wire.errors import ConfigError
from gateway.wire.protocol import parse_chat_request
from tests.conftest import GatewayRunner
from tests.support.fakes import FakeUpstream, Seen, Send, answer, candidates_in
from tests.test_fusion import HI, pool_config, raw_stream

MERGE_ANALYSIS = """  p:
    mode: merge
    members: [a, b, c]
    judge: {model: j}
    merge: {analysis: true}
"""
JUDGE_USAGE = {"prompt_tokens": 300, "completion_tokens": 20, "total_tokens": 320}
EMPTY: dict[str, list[str]] = {name: [] for name in SECTIONS}
FINAL = "Use merge sort when you need stability; quicksort otherwise."


def panel(fake: FakeUpstream) -> None:
    fake.behaviours["a"] = answer("Quicksort: fastest on average.")
    fake.behaviours["b"] = answer("Merge sort: stable and O(n log n).")
    fake.behaviours["c"] = answer("Quicksort: fastest on average.")


def analysing_judge(reply: Any = None) -> Any:
    """Answers the comparison (by the schema it is asked for) naming the labels it was shown, and any
    other prompt with ``FINAL``. ``reply`` replaces the comparison when given."""

    async def run(seen: Seen, send: Send) -> None:
        fmt = seen.body.get("response_format") or {}
        if (fmt.get("json_schema") or {}).get("name") != "fusion_analysis":
            await answer(FINAL, usage=JUDGE_USAGE)(seen, send)
            return
        by_text: dict[str, list[str]] = {}
        for block in candidates_in(seen):
            by_text.setdefault(block.body, []).append(block.label)
        quick, merge_sort = by_text["Quicksort: fastest on average."], by_text["Merge sort: stable and O(n log n)."]
        comparison = reply if reply is not None else {
            "consensus": [f"{' and '.join(quick)} recommend quicksort."],
            "contradictions": [f"{merge_sort[0]} recommends merge sort instead."],
            "coverage_gaps": ["Nobody asks how large the input is."],
            "unique_insights": [f"{merge_sort[0]} points out stability."],
            "blind_spots": [],
        }
        await answer(json.dumps(comparison), usage=JUDGE_USAGE)(seen, send)

    return run


def test_the_judge_compares_the_panel_then_writes_from_its_comparison(
    gateway: GatewayRunner, fake: FakeUpstream
) -> None:
    panel(fake)
    fake.behaviours["j"] = analysing_judge()
    with gateway(pool_config(fake, MERGE_ANALYSIS)) as (_, srv):
        r = httpx.post(srv.url + "/v1/chat/completions", json={"model": "p", "messages": HI}, timeout=20)
        listed = {m["id"]: m.get("fusion") for m in httpx.get(srv.url + "/v1/models").json()["data"]}
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["choices"][0]["message"]["content"] == FINAL
    assert listed["p"] == {"mode": "merge", "members": ["a", "b", "c"], "judge": "j", "analysis": True}

    first, second = fake.requests_for("j")
    schema = first.body["response_format"]["json_schema"]
    assert schema["name"] == "fusion_analysis" and schema["strict"] is True
    assert schema["schema"]["required"] == list(SECTIONS)
    assert "response_format" not in second.body  # the answer itself is free text
    final_prompt = second.body["messages"][-1]["content"]
    assert "recommends merge sort instead." in final_prompt  # written from the comparison
    assert [b.label for b in candidates_in(second)] == [b.label for b in candidates_in(first)]

    analysis = body["fusion"]["analysis"]
    assert analysis["status"] == "ok" and analysis["error"] is None
    assert analysis["coverage_gaps"] == ["Nobody asks how large the input is."]
    assert analysis["blind_spots"] == []
    # The labels the comparison speaks of are resolved to the members that wrote those answers.
    (lone,) = [b.label for b in candidates_in(first) if b.body.startswith("Merge sort")]
    assert analysis["contradictions"] == [f"{lone} recommends merge sort instead."]
    assert analysis["labels"][lone] == {"member": 1, "model": "b"}
    assert sorted(m["member"] for m in analysis["labels"].values()) == [0, 1, 2]

    # Counted like any judge call: price 1 in / 2 out per 1M tokens, 300 + 20 tokens a call.
    call_cost = (300 * 1 + 20 * 2) / 1e6
    assert analysis["usage"]["total_tokens"] == 320
    assert Decimal(str(analysis["cost_usd"])) == Decimal(str(call_cost))
    judge = body["fusion"]["judge"]
    assert judge["calls"] == 2 and judge["usage"]["total_tokens"] == 640
    assert Decimal(str(body["fusion"]["cost_by_role"]["judge"])) == Decimal(str(2 * call_cost))
    assert 0 < analysis["latency_ms"] <= body["fusion"]["latency_ms"]["judge"]


def test_a_comparison_that_fails_strict_parsing_leaves_a_plain_merge(
    gateway: GatewayRunner, fake: FakeUpstream
) -> None:
    panel(fake)
    bad = {**EMPTY, "winner": "A"}  # an extra key: never half-trusted
    fake.behaviours["j"] = analysing_judge(bad)
    with gateway(pool_config(fake, MERGE_ANALYSIS)) as (_, srv):
        r = httpx.post(srv.url + "/v1/chat/completions", json={"model": "p", "messages": HI}, timeout=20)
    assert r.status_code == 200, r.text
    fusion = r.json()["fusion"]
    assert r.json()["choices"][0]["message"]["content"] == FINAL
    assert fusion["analysis"]["status"] == "error" and fusion["analysis"]["error"] == "extra_keys"
    assert all(fusion["analysis"][name] == [] for name in SECTIONS)
    assert fusion["judge"]["status"] == "ok" and fusion["judge"]["calls"] == 2
    _, second = fake.requests_for("j")
    assert "ANALYSIS" not in second.body["messages"][-1]["content"]  # merged as without a comparison


def test_streamed_only_the_answer_goes_out_and_the_analysis_rides_on_the_fusion_object(
    gateway: GatewayRunner, fake: FakeUpstream
) -> None:
    panel(fake)
    fake.behaviours["j"] = analysing_judge()
    with gateway(pool_config(fake, MERGE_ANALYSIS)) as (_, srv):
        _, events = raw_stream(srv.url, {"model": "p", "messages": HI, "stream": True})
    text = "".join((c["choices"][0]["delta"].get("content") or "") for c in events if c.get("choices"))
    assert text == FINAL
    (last,) = [c for c in events if "fusion" in c]
    assert last["fusion"]["analysis"]["coverage_gaps"] == ["Nobody asks how large the input is."]


def test_without_the_option_a_merge_makes_one_judge_call_and_no_analysis(
    gateway: GatewayRunner, fake: FakeUpstream
) -> None:
    panel(fake)
    fake.behaviours["j"] = analysing_judge()
    with gateway(pool_config(fake, MERGE_ANALYSIS.replace("    merge: {analysis: true}\n", ""))) as (_, srv):
        r = httpx.post(srv.url + "/v1/chat/completions", json={"model": "p", "messages": HI}, timeout=20)
    assert r.status_code == 200, r.text
    assert r.json()["fusion"]["analysis"] is None
    assert len(fake.requests_for("j")) == 1


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ("not json", "not_json"),
        ('{"consensus": []}', "missing_field"),
        (json.dumps({**EMPTY, "consensus": "all agree"}), "wrong_type"),
        (json.dumps({**EMPTY, "blind_spots": [1]}), "wrong_type"),
        (json.dumps({**EMPTY, "consensus": ["x"] * 21}), "too_long"),
    ],
)
def test_the_comparison_is_parsed_strictly(reply: str, reason: str) -> None:
    ballot = make_ballot([cand(0, "1"), cand(1, "2")], random.Random(0))
    with pytest.raises(JudgeFailed) as caught:
        parse_analysis(reply, ballot)
    assert caught.value.reason == reason


def test_a_fenced_comparison_is_read_and_its_labels_kept() -> None:
    ballot = make_ballot([cand(0, "1"), cand(1, "2")], random.Random(0))
    reply = "```json\n" + json.dumps({**EMPTY, "consensus": [" both say hi "]}) + "\n```"
    analysis = parse_analysis(reply, ballot)
    assert analysis.consensus == ("both say hi",)
    assert analysis.labels == ballot.by_label


def test_merge_on_a_cascade_is_refused() -> None:
    text = """
providers: {sim: {type: simulator}}
models: {a: {provider: sim}, b: {provider: sim}, j: {provider: sim}}
pools:
  q: {mode: merge, members: [a, b], judge: {model: j}}
  p:
    mode: cascade
    first: a
    check: {agree_with: b}
    escalate: q
    merge: {analysis: true}
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "g.yaml", environ={})
    assert "pools.p.merge: not used by mode: cascade (the escalation pool has its own)" in str(caught.value)


# ------------------------------------------------------------------ the simulator's judge


def cand(member: int, text: str) -> Candidate:
    return Candidate(member, f"m{member}", {"role": "assistant", "content": text}, "stop")


class SimJudge:
    """The simulator's judge model, called as the gateway calls a judge (prompts read from the outside)."""

    def __init__(self) -> None:
        self.model = SimulatedModel("judge", SimulatorProfile(accuracy=1.0), 7, random.Random(0))
        self.replies: list[str] = []

    async def verdict(self, messages: list[dict[str, Any]], response_format: dict[str, Any]) -> str:
        text = str(self.model.answer({"messages": messages, "response_format": response_format}).message["content"])
        self.replies.append(text)
        return text

    async def write(self, messages: list[dict[str, Any]], on_delta: Any) -> Written:
        text = str(self.model.answer({"messages": messages}).message["content"])
        self.replies.append(text)
        return Written(text)


@pytest.mark.parametrize("structured", [True, False])
def test_the_simulated_judge_answers_the_comparison_and_settles_a_wrong_majority(structured: bool) -> None:
    conversation = [{"role": "user", "content": "What is 37 * 12?"}]
    panel_ = [cand(0, "The answer is 440."), cand(1, "It is 440."), cand(2, "37 * 12 = 444. The answer is 444.")]

    async def run(analysis: bool) -> tuple[str, SimJudge]:
        judge = SimJudge()
        if not structured:  # a judge asked with the prompt only still knows what is asked
            verdict = judge.verdict

            async def prompt_only(messages: list[dict[str, Any]], response_format: dict[str, Any]) -> str:
                return await verdict(messages, {"type": "json_object"})

            judge.verdict = prompt_only  # type: ignore[method-assign]
        ctx = FusionContext(
            pool="p", conversation=conversation, judge=judge, criteria=None, fallback="error",
            rng=random.Random(3), analysis=analysis,
        )
        result = await merge(ctx, panel_)
        return str(result.message["content"]), judge

    plain, _ = anyio.run(run, False)
    shown, judge = anyio.run(run, True)
    assert plain == "The answer is 440."  # a plain merge follows the majority
    assert shown == "The answer is 444."  # the comparison checked the contradiction
    comparison = parse_analysis(judge.replies[0], make_ballot(panel_, random.Random(3)))
    assert comparison.contradictions and comparison.contradictions[0].endswith("Worked out: 37 * 12 = 444.")


def test_analysis_prompt_names_its_schema_and_labels() -> None:
    ballot = make_ballot([cand(0, "x"), cand(1, "y")], random.Random(0))
    messages = analysis_messages(HI, ballot, "Prefer short answers.", 1000)
    assert "Criteria: Prefer short answers." in messages[0]["content"]
    assert all(label in messages[0]["content"] for label in ballot.order)
    assert analysis_response_format()["json_schema"]["schema"]["additionalProperties"] is False


def test_the_worst_case_estimate_counts_the_comparison_and_the_longer_answer_prompt() -> None:
    def estimate(analysis: bool) -> Decimal:
        text = (
            "providers: {sim: {type: simulator}}\n"
            "models:\n"
            "  a: {provider: sim, price: {input: 1, output: 2}}\n"
            "  j: {provider: sim, price: {input: 3, output: 5}}\n"
            "pools:\n"
            "  p: {mode: merge, members: [a, a], judge: {model: j}, max_tokens_cap: 100"
            + (", merge: {analysis: true}" if analysis else "") + "}\n"
        )
        config = parse_config(text, "g.yaml", environ={})
        raw = json.dumps({"model": "p", "messages": HI}).encode()
        plan = plan_pool(config, "p", config.pools["p"], parse_chat_request(raw, max_messages=10))
        return pool_cost(plan)

    judge_prompt = prompt_tokens({"messages": HI}) + 2 * 100 + JUDGE_OVERHEAD_TOKENS
    comparison = Decimal(judge_prompt * 3 + 100 * 5) / 1_000_000  # one more call at the answer's size...
    carried = Decimal(100 * 3) / 1_000_000  # ...and the answer's prompt carries the comparison
    assert estimate(True) - estimate(False) == comparison + carried
