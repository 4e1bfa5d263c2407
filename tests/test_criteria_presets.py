"""Judging presets: criteria an operator picks by name, in the pool's judge config or per request."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from fusion_modes.criteria import CRITERIA_PRESETS
from gateway.config.loader import parse_config
from gateway.wire.errors import ConfigError
from tests.conftest import GatewayRunner
from tests.support.fakes import FakeUpstream, answer, judge_picking
from tests.test_fusion import HI, pool_config, three_answers

ROOT = Path(__file__).resolve().parent.parent
KNOWN = "general, quality, budget, code, safety"


def best_of(criteria: str) -> str:
    return f"  p:\n    mode: best-of\n    members: [a, b, c]\n    judge: {{model: j, criteria: {criteria}}}\n"


def judge_system(fake: FakeUpstream) -> str:
    (seen,) = fake.requests_for("j")
    return str(seen.body["messages"][0]["content"])


def test_the_five_presets_are_declared_once_and_distinct() -> None:
    assert list(CRITERIA_PRESETS) == KNOWN.split(", ")
    assert len(set(CRITERIA_PRESETS.values())) == 5


@pytest.mark.parametrize("preset", list(CRITERIA_PRESETS))
def test_a_preset_named_in_the_judge_config_is_what_the_judge_reads(
    gateway: GatewayRunner, fake: FakeUpstream, preset: str
) -> None:
    three_answers(fake)
    fake.behaviours["j"] = judge_picking(lambda text: True)
    with gateway(pool_config(fake, best_of(preset))) as (_, srv):
        r = httpx.post(srv.url + "/v1/chat/completions", json={"model": "p", "messages": HI}, timeout=20)
    assert r.status_code == 200, r.text
    system = judge_system(fake)
    assert f"Judge against these criteria: {CRITERIA_PRESETS[preset]}\n" in system
    others = [text for name, text in CRITERIA_PRESETS.items() if name != preset]
    assert not any(text in system for text in others)


def test_a_request_picks_a_preset_over_the_pools_and_a_merge_reads_it_too(
    gateway: GatewayRunner, fake: FakeUpstream
) -> None:
    three_answers(fake)
    fake.behaviours["j"] = answer("merged")
    with gateway(pool_config(fake, best_of("general"))) as (_, srv):
        body = {"model": "p", "messages": HI, "fusion": {"mode": "merge", "criteria": "code"}}
        r = httpx.post(srv.url + "/v1/chat/completions", json=body, timeout=20)
    assert r.status_code == 200, r.text
    system = judge_system(fake)
    assert f"Criteria: {CRITERIA_PRESETS['code']}\n" in system
    assert CRITERIA_PRESETS["general"] not in system


def test_a_sentence_is_the_operators_own_criteria(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    three_answers(fake)
    fake.behaviours["j"] = judge_picking(lambda text: True)
    with gateway(pool_config(fake, best_of("'Prefer code over prose.'"))) as (_, srv):
        body = {"model": "p", "messages": HI}
        assert httpx.post(srv.url + "/v1/chat/completions", json=body, timeout=20).status_code == 200
    assert "Judge against these criteria: Prefer code over prose.\n" in judge_system(fake)


def test_an_unknown_preset_in_the_config_is_refused_at_its_line() -> None:
    text = (
        "providers: {sim: {type: simulator}}\n"
        "models: {a: {provider: sim}, b: {provider: sim}, c: {provider: sim}, j: {provider: sim}}\n"
        "pools:\n" + best_of("qualty")
    )
    with pytest.raises(ConfigError) as info:
        parse_config(text, "config/gateway.yaml", environ={})
    assert info.value.message == (
        "config/gateway.yaml:7: pools.p.judge.criteria: unknown criteria preset 'qualty' "
        f"(did you mean 'quality'? known: {KNOWN}); criteria of your own are a sentence"
    )


def test_an_unknown_preset_in_a_request_is_a_400_before_any_call(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    three_answers(fake)
    with gateway(pool_config(fake, best_of("general"))) as (_, srv):
        body = {"model": "p", "messages": HI, "fusion": {"criteria": "safty"}}
        r = httpx.post(srv.url + "/v1/chat/completions", json=body, timeout=20)
    assert r.status_code == 400
    assert r.json() == {
        "error": {
            "message": "'fusion.criteria': unknown criteria preset 'safty' "
            f"(did you mean 'safety'? known: {KNOWN}); criteria of your own are a sentence",
            "type": "invalid_request_error",
            "param": "fusion.criteria",
            "code": "invalid_value",
        }
    }
    assert fake.seen == []


def test_the_readme_lists_every_preset() -> None:
    readme = (ROOT / "README.md").read_text()
    for name in CRITERIA_PRESETS:
        assert f"`{name}`" in readme[readme.index("**Judging presets**") :][:2000], name
