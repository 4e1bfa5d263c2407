"""Fallbacks: a model that cannot answer hands the call to the next model in order, within the request's
deadline and the retry budget; a request the upstream refused never falls back; cycles are refused at
load. Against real loopback upstreams that fail on cue."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from gateway.config import parse_config
from gateway.wire.errors import ConfigError
from tests.conftest import GatewayRunner, fake_provider_yaml
from tests.support.fakes import FakeUpstream, answer, completion, error_reply, json_reply
from tests.test_deployments import HI, ask, hits, sample

RETRY = ", retry: {max_retries: 1, backoff_base_s: 0}"


def config(fake: FakeUpstream, models: str, *, extra: str = RETRY, top: str = "") -> str:
    return top + "providers:\n" + fake_provider_yaml(fake.url, extra=extra) + "models:\n" + models


DOWN = """  m:
    deployments: [{provider: up, model: east}, {provider: up, model: west}]
    fallbacks: [f]
  f: {provider: up, model: spare}
"""


def test_a_model_whose_deployments_are_all_down_falls_back(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    fake.behaviours["east"] = error_reply(500)
    fake.behaviours["west"] = error_reply(503)
    fake.behaviours["spare"] = json_reply(completion("from the spare"))
    with gateway(config(fake, DOWN)) as (_, srv):
        resp = ask(srv.url)
        scrape = httpx.get(f"{srv.url}/metrics").text
    assert resp.status_code == 200
    assert resp.json()["choices"][0]["message"]["content"] == "from the spare"
    assert resp.json()["model"] == "m"
    assert resp.headers["x-fusion-answered-by"] == "f"
    assert resp.headers["x-fusion-fallback-reason"] == "failure"
    assert (hits(fake, "east"), hits(fake, "west"), hits(fake, "spare")) == (1, 1, 1)
    assert sample(scrape, "fusion_fallbacks_total", model="m", fallback="f", reason="failure") == 1


def test_an_ejected_model_goes_straight_to_its_fallback(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    fake.behaviours["east"] = error_reply(500)
    fake.behaviours["west"] = error_reply(500)
    fake.behaviours["spare"] = json_reply(completion("from the spare"))
    outlier = "{consecutive_failures: 1, base_ejection_s: 600, max_ejection_s: 600, max_ejected_percent: 100}"
    models = DOWN.replace("    fallbacks: [f]\n", f"    fallbacks: [f]\n    outlier_detection: {outlier}\n")
    with gateway(config(fake, models)) as (_, srv):
        first = ask(srv.url)
        rest = [ask(srv.url) for _ in range(5)]
    assert first.headers["x-fusion-fallback-reason"] == "failure"
    assert {r.headers["x-fusion-fallback-reason"] for r in rest} == {"unavailable"}
    assert hits(fake, "east") + hits(fake, "west") == 2  # each failed once, then was out of rotation
    assert hits(fake, "spare") == 6


def test_a_streamed_call_falls_back_before_anything_was_sent(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    fake.behaviours["east"] = error_reply(500)
    fake.behaviours["west"] = error_reply(500)
    fake.behaviours["spare"] = answer("spare answer")
    with gateway(config(fake, DOWN)) as (_, srv), httpx.stream(
        "POST", f"{srv.url}/v1/chat/completions", json={"model": "m", "messages": HI, "stream": True}
    ) as resp:
        body = resp.read().decode()
        headers = resp.headers
    assert resp.status_code == 200 and headers["x-fusion-answered-by"] == "f"
    assert body.rstrip().endswith("data: [DONE]") and '"model":"m"' in body


@pytest.mark.parametrize(
    "refusal",
    [
        error_reply(400, "bad request"),
        json_reply({"error": {"message": "Your request was flagged by our content policy.",
                              "type": "invalid_request_error", "param": None, "code": "content_policy_violation"}},
                   status=400),
    ],
    ids=["400", "content-policy"],
)
def test_a_refused_request_never_falls_back(gateway: GatewayRunner, fake: FakeUpstream, refusal: object) -> None:
    fake.behaviours["east"] = refusal  # type: ignore[assignment]
    fake.behaviours["west"] = refusal  # type: ignore[assignment]
    fake.behaviours["spare"] = json_reply(completion("laundered"))
    with gateway(config(fake, DOWN)) as (_, srv):
        resp = ask(srv.url)
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "upstream_rejected_request"
    assert hits(fake, "spare") == 0 and hits(fake, "east") + hits(fake, "west") == 1


def test_a_content_filtered_answer_is_an_answer_not_a_failure(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    filtered = json_reply(completion("", finish_reason="content_filter"))
    fake.behaviours["east"] = filtered
    fake.behaviours["west"] = filtered
    fake.behaviours["spare"] = json_reply(completion("laundered"))
    with gateway(config(fake, DOWN)) as (_, srv):
        resp = ask(srv.url)
    assert resp.json()["choices"][0]["finish_reason"] == "content_filter"
    assert hits(fake, "spare") == 0


def test_a_pool_member_falls_back_and_the_metadata_says_so(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    fake.behaviours["east"] = error_reply(503)
    fake.behaviours["west"] = error_reply(503)
    fake.behaviours["spare"] = answer("spare says 4")
    fake.behaviours["other"] = answer("other says 4")
    fake.behaviours["judge"] = answer("both say 4")
    models = DOWN + "  o: {provider: up, model: other}\n  j: {provider: up, model: judge}\n"
    text = config(fake, models) + "pools:\n  p: {mode: merge, members: [m, o], judge: {model: j}}\n"
    with gateway(text) as (_, srv):
        resp = ask(srv.url, "p")
    assert resp.status_code == 200
    fusion = resp.json()["fusion"]
    member = fusion["members"][0]
    assert (member["model"], member["status"], member["answered_by"], member["fallback_reason"]) == (
        "m", "ok", "f", "failure"
    )
    assert fusion["members"][1]["answered_by"] == "o" and fusion["members"][1]["fallback_reason"] is None
    judged = fake.requests_for("judge")[0].body["messages"][-1]["content"]
    assert "spare says 4" in judged


def test_fallback_cycles_and_pools_are_refused_at_load_with_file_and_line() -> None:
    base = "providers:\n  up: {type: openai, base_url: http://127.0.0.1:9/v1}\nmodels:\n"
    text = base + "".join(f"  {a}: {{provider: up, fallbacks: [{b}]}}\n" for a, b in ("ab", "bc", "ca"))
    with pytest.raises(ConfigError) as err:
        parse_config(text, "t.yaml")
    assert str(err.value).splitlines()[0] == "t.yaml:4: models.a.fallbacks[0]: fallback cycle: a -> b -> c -> a"
    text = base + "  a: {provider: up, fallbacks: [p]}\npools:\n  p: {mode: best-of, members: [a]}\n"
    with pytest.raises(ConfigError) as err:
        parse_config(text, "t.yaml")
    assert str(err.value) == "t.yaml:4: models.a.fallbacks[0]: 'p' is a pool; a fallback must be a model"
    cfg = parse_config(base + "  a: {provider: up, fallbacks: [b, c]}\n  b: {provider: up, fallbacks: [c]}\n"
                       "  c: {provider: up}\n", "t.yaml")
    assert cfg.models["a"].fallbacks == ("b", "c")  # a diamond is not a cycle


def test_the_retry_budget_bounds_calls_when_every_upstream_fails(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    fake.behaviours["east"] = error_reply(500)
    fake.behaviours["west"] = error_reply(500)
    fake.behaviours["spare"] = error_reply(500)
    never_eject = "    outlier_detection: {consecutive_failures: 100000}\n"
    models = DOWN.replace("    fallbacks: [f]\n", "    fallbacks: [f]\n" + never_eject)
    top = "server: {retry_budget: {ratio: 0.2, min_retries_per_s: 0.5, window_s: 60}}\n"
    requests = 100
    with gateway(config(fake, models, extra=", retry: {max_retries: 2, backoff_base_s: 0}", top=top)) as (_, srv), \
            ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(lambda _: ask(srv.url).status_code, range(requests)))
        scrape = httpx.get(f"{srv.url}/metrics").text
    calls = hits(fake, "east") + hits(fake, "west") + hits(fake, "spare")
    assert set(statuses) == {502}
    # Without a budget: 3 attempts on m, then 3 on f, per request (600). With it: one call per request,
    # plus at most 20% of them, plus the floor of 0.5/s over the 60 s window.
    assert requests <= calls <= requests + 0.2 * requests + 30, calls
    assert sample(scrape, "fusion_retry_budget_exhausted_total") > 0
