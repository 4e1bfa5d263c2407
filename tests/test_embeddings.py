"""``POST /v1/embeddings``: passthrough to models that serve embeddings, offline on the simulator."""

from __future__ import annotations

import base64
import math
import struct
from decimal import Decimal

import openai
import pytest

from tests.conftest import GatewayRunner, fake_provider_yaml, http_client, sdk
from tests.openapi_schemas import validate
from tests.support.fakes import FakeUpstream, json_reply
from tests.test_responses import SIM


def test_simulator_serves_deterministic_unit_vectors_through_the_sdk(gateway: GatewayRunner) -> None:
    with gateway(SIM) as (_, srv), sdk(srv.url) as client:
        one = client.embeddings.create(model="quick", input="the cat sat")  # the SDK asks for base64
        again = client.embeddings.create(model="quick", input="the cat sat", encoding_format="float")
        many = client.embeddings.create(model="quick", input=["the cat sat", "a dog ran"], dimensions=8)
        with http_client(srv.url) as http:
            raw = http.post("/v1/embeddings", json={"model": "quick", "input": "the cat sat"})
    vector = one.data[0].embedding
    assert len(vector) == 64 and math.isclose(sum(v * v for v in vector), 1.0, rel_tol=1e-5)
    assert again.data[0].embedding == pytest.approx(vector, abs=1e-6)  # base64 (float32) and float agree
    assert [d.index for d in many.data] == [0, 1] and all(len(d.embedding) == 8 for d in many.data)
    assert many.data[0].embedding != many.data[1].embedding
    assert one.model == "quick" and one.usage.prompt_tokens > 0
    body = raw.json()
    validate(body, "CreateEmbeddingResponse")
    tokens = body["usage"]["prompt_tokens"]
    assert Decimal(raw.headers["x-fusion-cost-usd"]) == Decimal(tokens) * Decimal(1) / Decimal(1_000_000)


def test_passthrough_to_an_openai_upstream(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    packed = base64.b64encode(struct.pack("<2f", 0.5, -0.25)).decode()
    fake.default = json_reply({"object": "list", "model": "up-e",
                               "data": [{"object": "embedding", "index": 0, "embedding": packed}],
                               "usage": {"prompt_tokens": 4000, "total_tokens": 4000}})
    cfg = (f"providers:\n{fake_provider_yaml(fake.url)}"
           "models:\n  e: {provider: up, model: up-e, price: {input: 0.5, output: 0}}\n")
    with gateway(cfg) as (_, srv), http_client(srv.url) as http:
        resp = http.post("/v1/embeddings", json={"model": "e", "input": [[1, 2, 3], [4, 5]], "dimensions": 2,
                                                 "encoding_format": "base64", "user": "u1"})
        metrics = http.get("/metrics").text
    assert resp.status_code == 200
    [seen] = fake.seen
    assert seen.path == "/v1/embeddings"
    assert seen.body == {"model": "up-e", "input": [[1, 2, 3], [4, 5]], "dimensions": 2,
                         "encoding_format": "base64", "user": "u1"}
    assert resp.json()["model"] == "e" and resp.json()["data"][0]["embedding"] == packed
    assert resp.headers["x-fusion-cost-usd"] == "0.002"  # 4000 input tokens at $0.50 per million
    # recorded like any call: the input tokens are counted for the model
    [line] = [m for m in metrics.splitlines()
              if m.startswith("gen_ai_client_token_usage_sum{") and 'gen_ai_request_model="e"' in m
              and 'gen_ai_token_type="input"' in m]
    assert line.endswith(" 4000.0")


def test_pools_and_models_without_embeddings_are_a_400(gateway: GatewayRunner) -> None:
    cfg = SIM.replace("providers:\n", "providers:\n  anth: {type: anthropic, base_url: http://127.0.0.1:9, "
                      "api_key: sk-ant-0123456789}\n").replace(
        "models:\n", "models:\n  claude: {provider: anth, model: claude-x}\n")
    with gateway(cfg) as (_, srv), sdk(srv.url) as client:
        with pytest.raises(openai.BadRequestError) as pool:
            client.embeddings.create(model="duo", input="x")
        with pytest.raises(openai.BadRequestError) as native:
            client.embeddings.create(model="claude", input="x")
        with pytest.raises(openai.BadRequestError) as empty:
            client.embeddings.create(model="quick", input=[])
    assert pool.value.body == {"message": "'duo' is a fusion pool; embeddings are served by models only",
                               "type": "invalid_request_error", "param": "model", "code": "invalid_model"}
    assert native.value.message.endswith(
        "model 'claude' does not serve embeddings (its provider has no embeddings API)")
    assert empty.value.param == "input"
