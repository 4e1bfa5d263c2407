"""Consensus: a pool whose members already agree answers without its judge and stops waiting."""

from __future__ import annotations

import time

import anyio
import httpx
import pytest

from fusion_modes.agreement import COMPARISONS, Agreement, EquivalenceAsk
from fusion_modes.base import Candidate
from gateway.config.loader import parse_config
from gateway.wire.errors import ConfigError
from tests.conftest import GatewayRunner
from tests.support.fakes import FakeUpstream, answer, hang, judge_picking
from tests.support.servers import wait_until
from tests.test_fusion import BEST_OF, HI, pool_config

AGREE = "    agreement: {compare: numeric, min: 2}\n"


def cand(member: int, text: str) -> Candidate:
    return Candidate(member, f"m{member}", {"role": "assistant", "content": text}, "stop")


@pytest.mark.parametrize(
    ("compare", "a", "b", "same"),
    [
        ("exact", " 444 ", "444", True),
        ("exact", "444", "444.", False),
        ("normalized", "The answer is 444.", "the  answer is 444", True),
        ("normalized", "The answer is 444.", "The answer is 445.", False),
        ("numeric", "37 * 12 = 444. The answer is 444.", "It is 444.0", True),
        ("numeric", "Total: 1,000", "1000", True),
        ("numeric", "The answer is 444.", "The answer is 445.", False),
        ("numeric", "no number here", "no number here", False),  # nothing to compare agrees with nothing
        ("json", '{"a": 1, "b": [2, 3]}', '```json\n{"b": [2, 3], "a": 1}\n```', True),
        ("json", '{"a": 1}', '{"a": 2}', False),
        ("json", "not json", "not json", False),
    ],
)
def test_comparisons(compare: str, a: str, b: str, same: bool) -> None:
    async def main() -> bool:
        ask = EquivalenceAsk(None, HI, 1000)
        return await COMPARISONS[compare].same(cand(0, a), cand(1, b), ask)

    assert anyio.run(main) is same


def test_agreement_settles_on_the_first_group_to_reach_min_in_finishing_order() -> None:
    async def main() -> None:
        agreement = Agreement(COMPARISONS["numeric"], 2, EquivalenceAsk(None, HI, 1000))
        assert await agreement.add(cand(2, "It is 445")) is None
        assert await agreement.add(cand(0, "It is 444")) is None
        consensus = await agreement.add(cand(1, "444, surely"))
        assert consensus is not None
        assert [c.member for c in consensus.agreed] == [0, 1] and consensus.answer.member == 0
        assert await agreement.add(cand(3, "445")) is consensus  # settled stays settled

    anyio.run(main)


def test_agreeing_members_skip_the_judge_and_cancel_the_slow_one(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    fake.behaviours["a"] = answer("37 * 12 = 444. The answer is 444.")
    fake.behaviours["b"] = answer("It is 444.", delay=0.1)
    fake.behaviours["c"] = hang()
    fake.behaviours["j"] = judge_picking(lambda text: True)
    with gateway(pool_config(fake, BEST_OF + AGREE)) as (_, srv):
        t0 = time.monotonic()
        r = httpx.post(srv.url + "/v1/chat/completions", json={"model": "p", "messages": HI}, timeout=20)
        elapsed = time.monotonic() - t0
        (hung,) = fake.requests_for("c")
        assert wait_until(lambda: hung.disconnected is not None, timeout=1.0)  # its connection was closed
        metrics = httpx.get(srv.url + "/metrics").text
    assert r.status_code == 200, r.text
    body = r.json()
    fusion = body["fusion"]
    assert body["choices"][0]["message"]["content"] == "37 * 12 = 444. The answer is 444."  # the first to agree
    assert fake.requests_for("j") == []
    assert elapsed < 5  # the pool's member timeout is 30 s: it did not wait for the hung member
    judge = fusion["judge"]
    assert judge["status"] == "skipped" and judge["calls"] == 0 and judge["cost_usd"] == 0
    assert judge["verdict"]["reason"] == "consensus" and judge["verdict"]["winner"] == "a"
    assert fusion["consensus"] == {
        "compare": "numeric",
        "min": 2,
        "agreed": [{"member": 0, "model": "a"}, {"member": 1, "model": "b"}],
        "stopped_early": [2],
    }
    c = fusion["members"][2]
    assert c["status"] == "cancelled" and c["cost_usd"] > 0  # its prompt was sent: charged, estimated
    assert fusion["cost_usd"] == sum(m["cost_usd"] for m in fusion["members"])  # partial cost counted
    assert fusion["degraded"] is False  # a member stopped because it was not needed did not fail
    assert 'fusion_judge_verdicts_total{outcome="consensus",pool="p"} 1.0' in metrics


def test_without_agreement_the_judge_decides_as_usual(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    fake.behaviours["a"] = answer("The answer is 444.")
    fake.behaviours["b"] = answer("The answer is 445. BEST")
    fake.behaviours["c"] = answer("The answer is 446.")
    fake.behaviours["j"] = judge_picking(lambda text: "BEST" in text)
    with gateway(pool_config(fake, BEST_OF + AGREE)) as (_, srv):
        fusion = httpx.post(srv.url + "/v1/chat/completions", json={"model": "p", "messages": HI}, timeout=20).json()[
            "fusion"
        ]
    assert fusion["consensus"] is None and fusion["winner"] == "b"
    assert fusion["judge"]["status"] == "ok" and fusion["judge"]["verdict"]["reason"] == "judge"
    assert [m["status"] for m in fusion["members"]] == ["ok", "ok", "ok"]


JUDGE_COMPARE = """providers:
  up: {{type: openai, base_url: '{url}/v1', retry: {{max_retries: 0}}}}
  sim: {{type: simulator, profiles: {{judge: {{ttft_ms: 5, tokens_per_s: 5000}}}}}}
models:
  a: {{provider: up, price: {{input: 1, output: 2}}}}
  b: {{provider: up, price: {{input: 1, output: 2}}}}
  c: {{provider: up, price: {{input: 1, output: 2}}}}
  j: {{provider: sim, model: judge, price: {{input: 1, output: 2}}}}
pools:
  p:
    mode: best-of
    members: [a, b, c]
    judge: {{model: j}}
    agreement: {{compare: judge, min: 2}}
"""


def test_judge_comparison_asks_the_judge_a_yes_no_question(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    """The simulated judge reads the equivalence question from the outside and answers it."""
    fake.behaviours["a"] = answer("Multiplying gives 444.")
    fake.behaviours["b"] = answer("I make it 444", delay=0.15)
    fake.behaviours["c"] = answer("It is 450.", delay=3)
    with gateway(JUDGE_COMPARE.format(url=fake.url)) as (_, srv):
        agreed = httpx.post(srv.url + "/v1/chat/completions", json={"model": "p", "messages": HI}, timeout=20).json()
        fake.behaviours["b"] = answer("I make it 445", delay=0.15)
        fake.behaviours["c"] = answer("It is 450.", delay=0.3)
        differ = httpx.post(srv.url + "/v1/chat/completions", json={"model": "p", "messages": HI}, timeout=20).json()
    fusion = agreed["fusion"]
    assert fusion["judge"]["status"] == "skipped" and fusion["judge"]["verdict"]["reason"] == "consensus"
    assert fusion["judge"]["calls"] == 1 and fusion["judge"]["cost_usd"] > 0  # one equivalence question, paid
    assert fusion["consensus"]["compare"] == "judge" and fusion["consensus"]["stopped_early"] == [2]
    assert fusion["members"][2]["status"] == "cancelled"
    # Three different answers: b asked against a (no), c against a and b (no, no), then a full verdict.
    fusion = differ["fusion"]
    assert fusion["consensus"] is None and fusion["judge"]["status"] == "ok"
    assert fusion["judge"]["calls"] == 4 and fusion["judge"]["verdict"]["reason"] == "judge"


def test_agreement_min_cannot_exceed_the_members() -> None:
    text = """models:
  a: {provider: sim}
  j: {provider: sim}
providers:
  sim: {type: simulator}
pools:
  p:
    mode: best-of
    members: [a, a]
    judge: {model: j}
    agreement: {compare: numeric, min: 3}
"""
    with pytest.raises(ConfigError) as info:
        parse_config(text, "gateway.yaml")
    assert info.value.message == "gateway.yaml:11: pools.p.agreement.min: agreement min 3 exceeds the 2 members"
    with pytest.raises(ConfigError) as info:
        parse_config(text.replace("numeric", "fuzzy"), "gateway.yaml")
    message = info.value.message
    assert "pools.p.agreement.compare" in message and "'exact', 'normalized', 'numeric', 'json' or 'judge'" in message
