"""A pool honours the caller's output contract: the call that writes the answer (merge, debate ending in
merge) carries response_format, token limits, stop and sampling, and a structured answer is checked
against the caller's schema before it is returned; best-of returns the winner's fields as sent."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
from pydantic import BaseModel

from tests.conftest import GatewayRunner, sdk
from tests.support.fakes import FakeUpstream, Seen, Send, answer, chunk, error_reply, judge_picking, sse_reply
from tests.test_fusion import pool_config, raw_stream

Q = [{"role": "user", "content": "What is 37 * 12?"}]
USAGE = {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25}


class Product(BaseModel):
    value: int
    unit: str


SCHEMA = {
    "type": "json_schema",
    "json_schema": {"name": "Product", "strict": True, "schema": {
        "type": "object", "properties": {"value": {"type": "integer"}, "unit": {"type": "string"}},
        "required": ["value", "unit"], "additionalProperties": False}},
}

MERGE = """  p:
    mode: merge
    members: [a, b, c]
    judge: {model: j, params: {temperature: 0, max_tokens: 999}}
"""
DEBATE_MERGE = """  p:
    mode: debate
    members: [a, b, c]
    judge: {model: j, params: {temperature: 0, max_tokens: 999}}
    debate: {rounds: 1, final: merge}
"""


def writes(text: str, finish: str = "stop") -> Any:
    """An upstream that answers ``text`` with ``finish`` as its finish_reason (streamed, as pools ask)."""

    async def run(seen: Seen, send: Send) -> None:
        events = [chunk({"role": "assistant", "content": ""}), chunk({"content": text}), chunk({}, finish),
                  chunk(None, usage=USAGE)]
        await sse_reply(events)(seen, send)

    return run


def json_members(fake: FakeUpstream, values: tuple[int, int, int] = (444, 444, 440)) -> None:
    for name, v in zip("abc", values, strict=True):
        fake.behaviours[name] = answer(json.dumps({"value": v, "unit": "apples"}))


@pytest.mark.parametrize(
    ("pool", "fusion"),
    [(MERGE, {}), (DEBATE_MERGE, {}), (MERGE.replace("mode: merge", "mode: best-of"), {"mode": "merge"})],
    ids=["merge", "debate-final-merge", "fusion.mode-merge"],
)
def test_the_writing_judge_gets_the_callers_contract_and_its_answer_validates(
    gateway: GatewayRunner, fake: FakeUpstream, pool: str, fusion: dict[str, Any]
) -> None:
    json_members(fake, (444, 440, 432))  # no agreement: debate goes to its final merge
    fake.behaviours["j"] = writes('{"value": 444, "unit": "apples"}')
    with gateway(pool_config(fake, pool)) as (_, srv):
        client = sdk(srv.url)
        parsed = client.chat.completions.parse(
            model="p", messages=Q, response_format=Product, max_completion_tokens=50, stop=["END"],  # type: ignore[arg-type]
            temperature=0.3, top_p=0.9, seed=11, extra_body={"user": "u-1", "fusion": fusion},
        )
        with client.chat.completions.stream(model="p", messages=Q, response_format=Product,  # type: ignore[arg-type]
                                            extra_body={"fusion": fusion}) as s:
            streamed = s.get_final_completion()
    assert parsed.choices[0].message.parsed == Product(value=444, unit="apples")
    assert streamed.choices[0].message.parsed == Product(value=444, unit="apples")
    writer = fake.requests_for("j")[0].body
    assert writer["response_format"]["json_schema"]["name"] == "Product"
    assert writer["response_format"]["json_schema"]["strict"] is True
    assert writer["max_completion_tokens"] == 50 and writer["stop"] == ["END"]
    # the caller's sampling and limit win over the judge's params on the writing call
    assert writer["temperature"] == 0.3 and writer["top_p"] == 0.9 and writer["seed"] == 11
    assert "max_tokens" not in writer
    assert "user" not in writer  # members-only fields stay with the members
    assert all(s.body["user"] == "u-1" for s in fake.requests_for("a")[:1])


def test_a_merged_answer_that_breaks_the_schema_falls_back_to_a_member_that_keeps_it(
    gateway: GatewayRunner, fake: FakeUpstream
) -> None:
    fake.behaviours["a"] = answer("444 apples, I think")  # ignored the format: never returned
    fake.behaviours["b"] = answer(json.dumps({"value": 444, "unit": "apples"}))
    fake.behaviours["c"] = answer(json.dumps({"value": "444"}))
    fake.behaviours["j"] = writes("The merged answer is 444 apples.")
    with gateway(pool_config(fake, MERGE)) as (_, srv):
        body = httpx.post(srv.url + "/v1/chat/completions", timeout=20,
                          json={"model": "p", "messages": Q, "response_format": SCHEMA}).json()
    assert json.loads(body["choices"][0]["message"]["content"]) == {"value": 444, "unit": "apples"}
    judge = body["fusion"]["judge"]
    assert judge["status"] == "fallback" and judge["fallback_reason"] == "invalid_output"
    assert body["fusion"]["winner"] == "b"


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_no_answer_within_the_schema_is_a_clear_error_never_prose(
    gateway: GatewayRunner, fake: FakeUpstream, stream: bool
) -> None:
    for name in "abc":
        fake.behaviours[name] = answer(json.dumps({"value": "many", "unit": "apples"}))
    fake.behaviours["j"] = writes("Roughly 444 apples.")
    with gateway(pool_config(fake, MERGE)) as (_, srv):
        r = httpx.post(srv.url + "/v1/chat/completions", timeout=20,
                       json={"model": "p", "messages": Q, "response_format": SCHEMA, "stream": stream})
    assert r.status_code == 502
    assert r.json()["error"] == {
        "message": "pool 'p': the judge failed (invalid_output: the merged answer breaks the requested "
                   "response_format: it is not JSON) and no member's answer matches the requested response_format",
        "type": "api_error", "param": None, "code": "judge_failed",
    }


def test_a_lone_answer_is_checked_too(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    fake.behaviours["a"] = answer("444 apples")  # the only member to answer, in prose
    fake.behaviours["b"] = fake.behaviours["c"] = error_reply(500)
    with gateway(pool_config(fake, MERGE)) as (_, srv):
        r = httpx.post(srv.url + "/v1/chat/completions", timeout=20,
                       json={"model": "p", "messages": Q, "response_format": SCHEMA})
    assert r.status_code == 502
    assert r.json()["error"]["message"] == "pool 'p': the members' answer does not match the requested response_format"
    assert fake.requests_for("j") == []


def test_json_object_is_checked_too(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    json_members(fake)
    fake.behaviours["j"] = writes('["not", "an", "object"]')
    with gateway(pool_config(fake, MERGE)) as (_, srv):
        body = httpx.post(srv.url + "/v1/chat/completions", timeout=20, json={
            "model": "p", "messages": Q, "response_format": {"type": "json_object"}}).json()
    assert fake.requests_for("j")[0].body["response_format"] == {"type": "json_object"}
    assert body["fusion"]["judge"]["fallback_reason"] == "invalid_output"
    assert json.loads(body["choices"][0]["message"]["content"])["value"] in (444, 440)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_the_callers_token_limit_cuts_the_merged_answer_with_finish_reason_length(
    gateway: GatewayRunner, fake: FakeUpstream, stream: bool
) -> None:
    json_members(fake)
    fake.behaviours["j"] = writes("The answer", finish="length")
    with gateway(pool_config(fake, MERGE)) as (_, srv):
        body = {"model": "p", "messages": Q, "max_tokens": 2}
        if stream:
            _, events = raw_stream(srv.url, {**body, "stream": True})
            finish = [c["choices"][0]["finish_reason"] for c in events if c["choices"]][-1]
            text = "".join(c["choices"][0]["delta"].get("content") or "" for c in events if c["choices"])
        else:
            got = httpx.post(srv.url + "/v1/chat/completions", json=body, timeout=20).json()
            finish, text = got["choices"][0]["finish_reason"], got["choices"][0]["message"]["content"]
    assert (text, finish) == ("The answer", "length")
    assert fake.requests_for("j")[0].body["max_tokens"] == 2


@pytest.mark.parametrize(
    ("extra", "param", "message"),
    [
        ({"logprobs": True}, "logprobs",
         "'logprobs' is not supported when the judge writes the answer (pool 'p' runs merge): token log "
         "probabilities would describe the judge's rewrite, not the members' answers. Use a best-of pool, or "
         "fusion.mode 'best-of'."),
        ({"modalities": ["text", "audio"]}, "modalities",
         "'modalities' is not supported when the judge writes the answer (pool 'p' runs merge): the judge writes "
         "text. Use a best-of pool, or fusion.mode 'best-of'."),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": 12}}}},
         "response_format.json_schema.schema",
         "'response_format.json_schema.schema' is not a valid JSON Schema: 12 is not valid under any of the "
         "given schemas"),
        ({"response_format": {"type": "yaml"}}, "response_format.type",
         "'response_format.type' must be one of text, json_object, json_schema"),
    ],
    ids=["logprobs", "audio", "bad-schema", "bad-type"],
)
def test_what_a_written_answer_cannot_honour_is_refused_before_any_call(
    gateway: GatewayRunner, fake: FakeUpstream, extra: dict[str, Any], param: str, message: str
) -> None:
    with gateway(pool_config(fake, MERGE)) as (_, srv), pytest.raises(openai.BadRequestError) as err:
        sdk(srv.url).chat.completions.create(model="p", messages=Q, extra_body=extra)  # type: ignore[arg-type]
    assert err.value.body == {"message": message, "type": "invalid_request_error", "param": param,
                              "code": "unsupported_for_mode" if param in ("logprobs", "modalities")
                              else "invalid_value"}
    assert fake.seen == []


def member_with_extras(text: str, fingerprint: str) -> Any:
    """A member that sends logprobs, a system fingerprint, a service tier and an annotation, as OpenAI does."""

    def lp(token: str) -> dict[str, Any]:
        return {"token": token, "logprob": -0.25, "bytes": list(token.encode()),
                "top_logprobs": [{"token": token, "logprob": -0.25, "bytes": list(token.encode())}]}

    citation = {"type": "url_citation", "url_citation": {"url": "https://example.com/" + fingerprint,
                                                         "title": "source", "start_index": 0, "end_index": 3}}

    async def run(seen: Seen, send: Send) -> None:
        extra = {"system_fingerprint": fingerprint, "service_tier": "default"}
        events = [chunk({"role": "assistant", "content": ""})]
        for word in text.split(" "):
            c = chunk({"content": word + " "})
            c["choices"][0]["logprobs"] = {"content": [lp(word + " ")], "refusal": None}
            events.append(c)
        events += [chunk({"annotations": [citation]}), chunk({}, "stop"), chunk(None, usage=USAGE)]
        await sse_reply([{**e, **extra} for e in events])(seen, send)

    return run


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_best_of_returns_the_winners_logprobs_fingerprint_tier_and_annotations(
    gateway: GatewayRunner, fake: FakeUpstream, stream: bool
) -> None:
    fake.behaviours["a"] = member_with_extras("It is 440", "fp_a")
    fake.behaviours["b"] = member_with_extras("It is 444", "fp_b")
    fake.behaviours["c"] = member_with_extras("It is 432", "fp_c")
    fake.behaviours["j"] = judge_picking(lambda t: "444" in t)
    with gateway(pool_config(fake, MERGE.replace("merge", "best-of"))) as (_, srv):
        client = sdk(srv.url)
        kwargs: dict[str, Any] = {"model": "p", "messages": Q, "logprobs": True, "top_logprobs": 1}
        if stream:
            with client.chat.completions.stream(**kwargs) as s:
                done = s.get_final_completion()
        else:
            done = client.chat.completions.create(**kwargs)  # type: ignore[assignment]
    assert fake.requests_for("a")[0].body["logprobs"] is True
    choice = done.choices[0]
    assert choice.message.content == "It is 444 "
    assert choice.logprobs is not None and choice.logprobs.content is not None
    assert [t.token for t in choice.logprobs.content] == ["It ", "is ", "444 "]
    assert choice.logprobs.content[2].top_logprobs[0].bytes == list(b"444 ")
    assert done.system_fingerprint == "fp_b" and done.service_tier == "default"
    assert choice.message.annotations is not None
    assert [a.url_citation.url for a in choice.message.annotations] == ["https://example.com/fp_b"]


# ------------------------------------------------------------------ the cost of a stream, afterwards

ALPHA, BETA = "sk-alpha-0123456789abcdef", "sk-beta-0123456789abcdef"


@pytest.mark.parametrize("ledger", ["default", "none"])
def test_a_streamed_answers_cost_is_in_its_usage_and_its_receipt_for_its_own_key_only(
    gateway: GatewayRunner, fake: FakeUpstream, ledger: str
) -> None:
    """Looked up in the ledger (the default) or, with ``ledger: none``, in this process's receipts."""
    json_members(fake)
    fake.behaviours["j"] = judge_picking(lambda t: "444" in t)
    keys = (f"auth:\n  keys:\n    - {{name: alpha, key: {ALPHA}, pools: [p]}}\n"
            f"    - {{name: beta, key: {BETA}, pools: [p]}}\n")
    off = "ledger: none\n" if ledger == "none" else ""
    with gateway(off + keys + pool_config(fake, MERGE.replace("merge", "best-of"))) as (_, srv):
        with httpx.stream("POST", srv.url + "/v1/chat/completions", timeout=20,
                          headers={"authorization": f"Bearer {ALPHA}", "x-request-id": "mine-1"},
                          json={"model": "p", "messages": Q, "stream": True,
                                "stream_options": {"include_usage": True}}) as r:
            assert r.status_code == 200, r.read()
            assert "x-fusion-cost-usd" not in r.headers  # headers precede the answer: no cost yet
            events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]

        def receipt(key: str, rid: str = "mine-1") -> httpx.Response:
            return httpx.get(f"{srv.url}/v1/fusion/requests/{rid}", headers={"authorization": f"Bearer {key}"})

        mine, theirs, unknown = receipt(ALPHA), receipt(BETA), receipt(ALPHA, "never-sent")
    usage = events[-1]["usage"]
    # members 3 x (20 + 5 x 2) + judge (300 + 20 x 2) at 1 / 2 USD per 1M tokens
    assert usage["fusion_cost_usd"] == events[-1]["fusion"]["cost_usd"] == pytest.approx(0.00043)
    assert mine.status_code == 200
    got = mine.json()
    assert (got["request_id"], got["model"], got["status"]) == ("mine-1", "p", 200)
    assert got["cost_usd"] == usage["fusion_cost_usd"] and got["fusion"] == events[-1]["fusion"]
    if ledger == "none":
        message = "no recent request 'never-sent' of this key on this gateway process (the last 1000 are kept)"
        assert "calls" not in got
    else:
        message = "no request 'never-sent' in the ledger"
        assert [c["role"] for c in got["calls"]] == ["member"] * 3 + ["judge"] and got["key"] == "alpha"
    not_found = {"message": message, "type": "invalid_request_error", "param": "request_id",
                 "code": "request_not_found"}
    assert unknown.status_code == 404 and unknown.json()["error"] == not_found
    assert theirs.status_code == 404 and theirs.json()["error"] == {
        **not_found, "message": not_found["message"].replace("never-sent", "mine-1")}
