"""Fusion progress events ride in the standard stream and the openai SDK still parses it."""

from __future__ import annotations

from typing import Any

import httpx
from openai.lib.streaming.chat import ChatCompletionStreamState

from tests.conftest import GatewayRunner, sdk
from tests.support.fakes import FakeUpstream, answer, error_reply, judge_picking
from tests.test_fusion import BEST_OF, HI, pool_config, raw_stream, three_answers


def events_of(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c["fusion_event"] for c in chunks if "fusion_event" in c]


def test_events_narrate_members_and_judge_before_the_answer(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    three_answers(fake, delays=(0.05, 0.0, 0.1))
    fake.behaviours["c"] = error_reply(500)
    fake.behaviours["j"] = judge_picking(lambda t: "BEST" in t)
    pool = BEST_OF.replace("judge: {model: j}", "judge: {model: j, swap: true}")
    body = {"model": "p", "messages": HI, "stream": True, "fusion": {"events": True}}
    with gateway(pool_config(fake, pool)) as (_, srv):
        _, chunks = raw_stream(srv.url, body)
        state: ChatCompletionStreamState = ChatCompletionStreamState()
        for c in sdk(srv.url).chat.completions.create(model="p", messages=HI, stream=True,  # type: ignore[arg-type]
                                                     extra_body={"fusion": {"events": True}}):
            state.handle_chunk(c)
    ev = events_of(chunks)
    kinds = [e["type"] for e in ev]
    assert kinds.count("member.started") == 3 and kinds.count("member.done") == 3
    assert kinds.count("judge.started") == 2 and kinds[-1] == "judge.done"
    deltas = "".join(e["content"] for e in ev if e["type"] == "member.delta" and e["model"] == "b")
    assert deltas == "Use quicksort. BEST: average n log n, in place."
    done = {e["model"]: e for e in ev if e["type"] == "member.done"}
    assert done["c"]["status"] == "error" and done["c"]["error_type"] == "http_500"
    assert done["b"]["status"] == "ok" and done["b"]["cost_usd"] > 0 and done["b"]["usage"]["total_tokens"] == 25
    judged = ev[-1]
    assert judged["status"] == "ok" and judged["verdict"]["winner"] == "b" and judged["calls"] == 2
    assert [e["t_ms"] for e in ev] == sorted(e["t_ms"] for e in ev)
    # every event precedes the first word of the answer
    first_answer = next(i for i, c in enumerate(chunks) if c["choices"] and c["choices"][0]["delta"].get("content"))
    last_event = max(i for i, c in enumerate(chunks) if "fusion_event" in c)
    assert last_event < first_answer
    assert all(c["choices"] == [] for c in chunks if "fusion_event" in c)
    assert state.get_final_completion().choices[0].message.content == "Use quicksort. BEST: average n log n, in place."


def test_debate_rounds_are_announced(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    three_answers(fake)
    fake.behaviours["j"] = judge_picking(lambda t: "BEST" in t)
    pool = BEST_OF.replace("best-of", "debate") + "    debate: {rounds: 2}\n"
    with gateway(pool_config(fake, pool)) as (_, srv):
        _, chunks = raw_stream(srv.url, {"model": "p", "messages": HI, "stream": True, "fusion": {"events": True}})
    ev = events_of(chunks)
    rounds = [e for e in ev if e["type"] == "round.done"]
    assert [r["round"] for r in rounds] == [1, 2] and all(r["answers"] == 3 for r in rounds)
    assert {e["round"] for e in ev if e["type"] == "member.done"} == {0, 1, 2}


def test_without_the_flag_nothing_changes_and_json_requests_cannot_ask(
    gateway: GatewayRunner, fake: FakeUpstream
) -> None:
    three_answers(fake)
    fake.behaviours["j"] = answer("merged")
    pool = BEST_OF.replace("best-of", "merge")
    with gateway(pool_config(fake, pool)) as (_, srv):
        _, chunks = raw_stream(srv.url, {"model": "p", "messages": HI, "stream": True})
        bad = httpx.post(srv.url + "/v1/chat/completions",
                         json={"model": "p", "messages": HI, "fusion": {"events": True}})
    assert events_of(chunks) == []
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "fusion.events"
