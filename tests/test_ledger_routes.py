"""The ledger records what every route does: the Responses, Messages and embeddings APIs beside chat
completions, answers from the response cache (cost 0, with what they saved), cascades (their decision
and escalation) and fallbacks (which model answered, where, and why). On the default SQLite ledger."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import pytest

from gateway.config import parse_config
from gateway.wire.errors import ConfigError
from tests.conftest import GatewayRunner
from tests.support.fakes import FakeUpstream, answer, completion, error_reply, json_reply
from tests.test_cache import USAGE
from tests.test_cache import config as cache_config
from tests.test_cascade import cascade_config, pool_answers
from tests.test_fallbacks import DOWN
from tests.test_fallbacks import config as fallback_config
from tests.test_responses import SIM

Q = [{"role": "user", "content": "What is 6 * 7?"}]
M = Decimal(1_000_000)


def post(url: str, path: str, rid: str, body: dict[str, Any], **headers: str) -> httpx.Response:
    return httpx.post(url + path, json=body, headers={"x-request-id": rid, **headers}, timeout=20)


def record(url: str, rid: str) -> dict[str, Any]:
    resp = httpx.get(f"{url}/v1/fusion/requests/{rid}", timeout=20)
    assert resp.status_code == 200, resp.text
    found: dict[str, Any] = resp.json(parse_float=Decimal)
    return found


def test_every_inbound_api_is_recorded_with_its_endpoint(gateway: GatewayRunner) -> None:
    anthropic = {"anthropic-version": "2023-06-01"}
    with gateway(SIM) as (_, srv):
        assert post(srv.url, "/v1/chat/completions", "chat", {"model": "quick", "messages": Q}).status_code == 200
        assert post(srv.url, "/v1/responses", "resp", {"model": "duo", "input": "What is 6 * 7?"}).status_code == 200
        assert post(srv.url, "/v1/messages", "msg", {"model": "quick", "max_tokens": 64, "messages": Q},
                    **anthropic).status_code == 200
        assert post(srv.url, "/v1/messages", "msg-bad", {"model": "quick", "messages": Q},
                    **anthropic).status_code == 400  # max_tokens is required there
        embedded = post(srv.url, "/v1/embeddings", "emb", {"model": "quick", "input": "the cat sat"})
        assert embedded.status_code == 200
        listed = httpx.get(f"{srv.url}/v1/fusion/requests", params={"limit": 10}).json()["data"]
        responses, emb = record(srv.url, "resp"), record(srv.url, "emb")
    seen = {r["request_id"]: (r["endpoint"], r["kind"], r["model"], r["status"]) for r in listed}
    assert seen == {
        "chat": ("/v1/chat/completions", "passthrough", "quick", 200),
        "resp": ("/v1/responses", "pool", "duo", 200),
        "msg": ("/v1/messages", "passthrough", "quick", 200),
        "msg-bad": ("/v1/messages", "refused", None, 400),  # refused while its body was read
        "emb": ("/v1/embeddings", "passthrough", "quick", 200),
    }
    # a pool reached through the Responses API keeps its calls and its fusion object
    assert [c["role"] for c in responses["calls"]] == ["member", "member", "judge"]
    assert responses["fusion"]["pool"] == "duo" and responses["cost_usd"] == responses["fusion"]["cost_usd"]
    # an embeddings call is priced per input token, as its header said
    assert emb["mode"] == "embeddings" and [c["role"] for c in emb["calls"]] == ["passthrough"]
    assert emb["cost_usd"] == Decimal(embedded.headers["x-fusion-cost-usd"]) > 0
    assert emb["usage"]["prompt_tokens"] == embedded.json()["usage"]["prompt_tokens"]


def test_a_cache_hit_is_recorded_at_cost_zero_with_what_it_saved(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    fake.behaviours["up-m"] = answer("42 from m", usage=USAGE)
    fake.behaviours["up-o"] = answer("42 from o", usage=USAGE)
    fake.behaviours["up-j"] = answer("42, merged", usage=USAGE)
    ask = {"messages": Q, "temperature": 0}
    with gateway(cache_config(fake)) as (_, srv):
        for rid, model in (("m-1", "m"), ("m-2", "m"), ("p-1", "p"), ("p-2", "p")):
            resp = post(srv.url, "/v1/chat/completions", rid, {"model": model, **ask})
            assert resp.status_code == 200, resp.text
        miss, hit, pool_miss, pool_hit = (record(srv.url, rid) for rid in ("m-1", "m-2", "p-1", "p-2"))
        spend = httpx.get(f"{srv.url}/v1/fusion/spend", params={"group_by": "pool"}).json(parse_float=Decimal)
    one_call = (1000 * 1 + 500 * 2) / M
    assert (miss["kind"], miss["cost_usd"], miss["cost_saved_usd"]) == ("passthrough", one_call, None)
    assert (hit["kind"], hit["model"], hit["pool"], hit["status"]) == ("cached", "m", None, 200)
    assert hit["cost_usd"] == 0 and hit["cost_saved_usd"] == one_call and hit["calls"] == []
    assert (pool_hit["kind"], pool_hit["pool"], pool_hit["cost_usd"]) == ("cached", "p", 0)
    assert pool_hit["cost_saved_usd"] == pool_miss["cost_usd"] == 3 * one_call
    # what was spent is counted once: the hits cost nothing
    assert {r["pool"]: (r["cost_usd"], r["requests"]) for r in spend["data"]} == {
        "p": (3 * one_call, 2), "m": (one_call, 2)}


def test_a_cascade_is_recorded_with_its_decision_and_its_escalation(gateway: GatewayRunner,
                                                                   fake: FakeUpstream) -> None:
    fake.behaviours["ft"] = answer("The answer is 445.")
    fake.behaviours["cheap"] = answer("The answer is 444.")
    pool_answers(fake)
    with gateway(cascade_config(fake, "{agree_with: cheap, compare: numeric}")) as (_, srv):
        body = post(srv.url, "/v1/chat/completions", "casc", {"model": "c", "messages": Q}).json(parse_float=Decimal)
        rec = record(srv.url, "casc")
    fusion = body["fusion"]
    assert (rec["kind"], rec["pool"], rec["mode"]) == ("pool", "c", "cascade")
    assert rec["fusion"] == fusion and rec["fusion"]["cascade"]["reason"] == "disagreed"
    assert rec["cost_usd"] == fusion["cost_usd"]
    assert rec["latency_ms"]["escalation"] == fusion["latency_ms"]["escalation"] > 0
    # every call, the escalation pool's included
    assert sorted(c["model"] for c in rec["calls"]) == ["a", "b", "cheap", "ft", "j"]


def test_a_fallback_is_recorded_with_the_model_that_answered(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    fake.behaviours["east"] = error_reply(500)
    fake.behaviours["west"] = error_reply(503)
    usage = {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}
    fake.behaviours["spare"] = json_reply(completion("from the spare", usage=usage))
    priced = DOWN.replace("  f: {provider: up, model: spare}", "  f: {provider: up, model: spare, price: {input: 1, "
                                                                  "output: 2}}")
    with gateway(fallback_config(fake, priced)) as (_, srv):
        resp = post(srv.url, "/v1/chat/completions", "fb", {"model": "m", "messages": Q})
        assert resp.status_code == 200 and resp.headers["x-fusion-answered-by"] == "f"
        rec = record(srv.url, "fb")
        by_model = httpx.get(f"{srv.url}/v1/fusion/spend", params={"group_by": "model"}).json(parse_float=Decimal)
    [call] = rec["calls"]
    assert (call["model"], call["answered_by"], call["deployment"], call["fallback_reason"]) == (
        "m", "f", "up/spare", "failure")
    assert call["provider"] == "up" and call["attempts"] == 3
    # the money went to the model that answered
    cost = (100 * 1 + 10 * 2) / M
    assert rec["cost_usd"] == cost
    assert [(r["model"], r["cost_usd"]) for r in by_model["data"]] == [("f", cost)]


def test_the_ledger_section_is_checked_with_the_others_in_one_pass() -> None:
    text = ("models: {}\n"
            "ledger:\n  contnet: true\n  queue_max: 0\n"
            "logging: {level: loud}\n")
    with pytest.raises(ConfigError) as info:
        parse_config(text, "gw.yaml")
    assert info.value.message.splitlines()[-3:] == [
        "gw.yaml:3: ledger.contnet: unknown key (did you mean 'content'?)",
        "gw.yaml:4: ledger.queue_max: Input should be greater than or equal to 1",
        "gw.yaml:5: logging.level: Input should be 'debug', 'info', 'warning' or 'error'",
    ]
