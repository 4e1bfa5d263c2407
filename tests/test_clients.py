"""The client libraries people use, against a running gateway: the openai SDK, LangChain and LiteLLM.

Each is run on a model, a best-of, a merge and a debate pool, twice: on the default config (the
in-process simulator) and through a real loopback HTTP upstream (the simulator served over HTTP behind a
``type: openai`` provider). JSON, stream, structured output, tools, and the cost of each answer as that
client can see it.
"""

from __future__ import annotations

import os
import re
import textwrap
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from pydantic import BaseModel

from gateway.config.providers import SimulatorProfile, SimulatorProviderConfig
from gateway.providers.simulator.server import SimulatorApp
from tests.conftest import run_gateway, sdk
from tests.support.servers import serving

# LiteLLM fetches a model price map from the network at import unless told not to.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

# LiteLLM's stream handler reads a pydantic attribute pydantic has deprecated: its warning, not ours.
pytestmark = pytest.mark.filterwarnings(
    r"ignore:Accessing the 'model_\w+' attribute on the instance is deprecated"
)

ROOT = Path(__file__).resolve().parent.parent
Q = [{"role": "user", "content": "What is 37 * 12?"}]
MODELS = ["sim-fast", "best-of-3", "merge-3", "debate-3"]
#: pools whose answer the judge writes or a debate revises: tools are refused there, with a 400
NO_TOOLS = {"merge-3", "debate-3"}


class Product(BaseModel):
    """The product of two numbers."""

    value: int
    unit: str


#: the default config's models and pools, with quick profiles, over HTTP
HTTP_CONFIG = """
providers:
  up: {{type: openai, base_url: '{url}/v1', retry: {{max_retries: 0}}}}
models:
  sim-fast:     {{provider: up, model: fast,     price: {{input: 0.15, output: 0.60}}}}
  sim-balanced: {{provider: up, model: balanced, price: {{input: 0.25, output: 1.00}}}}
  sim-slow:     {{provider: up, model: slow,     price: {{input: 0.10, output: 0.40}}}}
  sim-judge:    {{provider: up, model: judge,    price: {{input: 0.10, output: 0.40}}}}
pools:
  best-of-3: {{mode: best-of, members: [sim-fast, sim-balanced, sim-slow], judge: {{model: sim-judge, swap: true}}}}
  merge-3:   {{mode: merge, members: [sim-fast, sim-balanced, sim-slow], judge: {{model: sim-judge}}}}
  debate-3:  {{mode: debate, members: [sim-fast, sim-balanced, sim-slow], judge: {{model: sim-judge}}}}
"""


@pytest.fixture(scope="module", params=["default-config", "http-upstream"])
def base_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """One gateway per module and upstream kind; its ``/v1`` URL."""
    if request.param == "default-config":
        with run_gateway((ROOT / "config" / "gateway.yaml").read_text()) as (_, srv):
            yield srv.url + "/v1"
        return
    quick = {"ttft_ms": 5, "tokens_per_s": 4000, "accuracy": 0.7}
    profiles = {name: SimulatorProfile(**quick) for name in ("fast", "balanced", "slow", "judge")}  # type: ignore[arg-type]
    with serving(SimulatorApp(SimulatorProviderConfig(type="simulator", seed=7, profiles=profiles))) as up, \
            run_gateway(HTTP_CONFIG.format(url=up.url)) as (_, srv):
        yield srv.url + "/v1"


def looked_up(base_url: str, request_id: str) -> dict[str, Any]:
    r = httpx.get(f"{base_url}/fusion/requests/{request_id}", timeout=10)
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json(parse_float=Decimal)
    return data


def answer_number(text: str) -> int:
    return int(re.findall(r"-?\d+", text)[-1])


def near_444(value: int) -> bool:
    """The simulator's members are right 70% of the time and otherwise off by at most 12."""
    return abs(value - 444) <= 12


# ------------------------------------------------------------------ openai SDK


@pytest.mark.parametrize("model", MODELS)
def test_openai_sdk(base_url: str, model: str) -> None:
    client = sdk(base_url.removesuffix("/v1"))
    raw = client.chat.completions.with_raw_response.create(model=model, messages=Q)  # type: ignore[arg-type]
    done = raw.parse()
    assert near_444(answer_number(done.choices[0].message.content or ""))
    assert done.usage is not None
    cost = Decimal(raw.headers["x-fusion-cost-usd"])
    assert Decimal(str(done.usage.model_extra["fusion_cost_usd"])) == cost > 0  # type: ignore[index]

    rid = "req_sdk_" + uuid.uuid4().hex
    chunks = list(client.chat.completions.create(
        model=model, messages=Q, stream=True, stream_options={"include_usage": True},  # type: ignore[arg-type]
        extra_headers={"x-request-id": rid},
    ))
    assert near_444(answer_number("".join(c.choices[0].delta.content or "" for c in chunks if c.choices)))
    usage = chunks[-1].usage
    assert usage is not None
    receipt = looked_up(base_url, rid)
    assert receipt["model"] == model and receipt["status"] == 200
    assert Decimal(str(usage.model_extra["fusion_cost_usd"])) == receipt["cost_usd"] > 0  # type: ignore[index]
    if model != "sim-fast":
        assert chunks[-1].model_extra["fusion"]["pool"] == model  # type: ignore[index]
        assert receipt["fusion"]["pool"] == model

    parsed = client.chat.completions.parse(model=model, messages=Q, response_format=Product)  # type: ignore[arg-type]
    assert parsed.choices[0].message.parsed is not None and near_444(parsed.choices[0].message.parsed.value)
    with client.chat.completions.stream(model=model, messages=Q, response_format=Product) as s:  # type: ignore[arg-type]
        final = s.get_final_completion()
    assert final.choices[0].message.parsed is not None and near_444(final.choices[0].message.parsed.value)

    tool = openai.pydantic_function_tool(Product, name="record_product")
    forced = {"type": "function", "function": {"name": "record_product"}}
    if model in NO_TOOLS:
        with pytest.raises(openai.BadRequestError) as err:
            client.chat.completions.parse(model=model, messages=Q, tools=[tool], tool_choice=forced)  # type: ignore[arg-type]
        assert err.value.body["param"] == "tools"  # type: ignore[index]
        return
    called = client.chat.completions.parse(model=model, messages=Q, tools=[tool], tool_choice=forced)  # type: ignore[arg-type]
    (call,) = called.choices[0].message.tool_calls or []
    assert call.function.name == "record_product"
    assert isinstance(call.function.parsed_arguments, Product) and near_444(call.function.parsed_arguments.value)


# ------------------------------------------------------------------ LangChain


@pytest.mark.parametrize("model", MODELS)
def test_langchain(base_url: str, model: str) -> None:
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model=model, base_url=base_url, api_key="unused", max_retries=0,  # type: ignore[arg-type]
                     stream_usage=True, include_response_headers=True)
    said = llm.invoke(Q)
    assert near_444(answer_number(str(said.content)))
    headers = said.response_metadata["headers"]
    assert Decimal(str(said.response_metadata["token_usage"]["fusion_cost_usd"])) == Decimal(
        headers["x-fusion-cost-usd"])

    pieces = list(llm.stream(Q))
    streamed = pieces[0]
    for p in pieces[1:]:
        streamed = streamed + p  # type: ignore[assignment]
    assert near_444(answer_number(str(streamed.content)))
    # LangChain keeps neither the last chunk's fusion object nor unknown usage keys: the request id it
    # does keep (response headers) finds the cost.
    assert streamed.usage_metadata is not None and streamed.usage_metadata["total_tokens"] > 0
    receipt = looked_up(base_url, streamed.response_metadata["headers"]["x-request-id"])
    assert receipt["model"] == model and receipt["cost_usd"] > 0

    # json_mode sends no schema (the prompt is expected to describe it); the simulator answers {"answer": ...}
    got = llm.with_structured_output(method="json_mode").invoke(Q)
    assert isinstance(got, dict) and near_444(int(got["answer"]))
    for method in ("json_schema", "function_calling"):
        structured = llm.with_structured_output(Product, method=method)  # type: ignore[arg-type]
        if method == "function_calling" and model in NO_TOOLS:
            with pytest.raises(openai.BadRequestError, match="'tools' are supported by mode best-of only"):
                structured.invoke(Q)
            continue
        product = structured.invoke(Q)
        assert isinstance(product, Product) and near_444(product.value), method

    if model not in NO_TOOLS:
        with_tool = llm.bind_tools([Product], tool_choice="Product")
        (call,) = with_tool.invoke(Q).tool_calls  # type: ignore[attr-defined]
        assert call["name"] == "Product" and near_444(Product(**call["args"]).value)


# ------------------------------------------------------------------ LiteLLM


@pytest.mark.parametrize("model", MODELS)
def test_litellm(base_url: str, model: str) -> None:
    import litellm

    common: dict[str, Any] = {"model": "openai/" + model, "api_base": base_url, "api_key": "unused", "messages": Q}
    said = litellm.completion(**common)
    assert near_444(answer_number(said.choices[0].message.content))
    assert Decimal(str(said.usage.fusion_cost_usd)) == Decimal(
        said._hidden_params["additional_headers"]["llm_provider-x-fusion-cost-usd"]) > 0

    rid = "req_litellm_" + uuid.uuid4().hex
    chunks = list(litellm.completion(**common, stream=True, stream_options={"include_usage": True},
                                     extra_headers={"x-request-id": rid}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert near_444(answer_number(text))
    receipt = looked_up(base_url, rid)
    assert receipt["model"] == model and receipt["cost_usd"] > 0

    structured = litellm.completion(**common, response_format=Product)
    assert near_444(Product.model_validate_json(structured.choices[0].message.content).value)

    tool = {"type": "function", "function": {"name": "record_product", "parameters": Product.model_json_schema()}}
    forced = {"type": "function", "function": {"name": "record_product"}}
    if model in NO_TOOLS:
        with pytest.raises(litellm.BadRequestError, match="'tools' are supported by mode best-of only"):
            litellm.completion(**common, tools=[tool], tool_choice=forced)
        return
    called = litellm.completion(**common, tools=[tool], tool_choice=forced)
    (call,) = called.choices[0].message.tool_calls
    assert call.function.name == "record_product"
    assert near_444(Product.model_validate_json(call.function.arguments).value)


# ------------------------------------------------------------------ README


@pytest.mark.parametrize("base_url", ["default-config"], indirect=True)
def test_the_readmes_try_it_runs_on_the_default_config(base_url: str) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Try it"):readme.index("## Configuration")]
    code = "\n".join(textwrap.dedent(block) for block in re.findall(r"```python\n(.*?)```", section, re.DOTALL))
    code = code.replace("http://127.0.0.1:8000/v1", base_url)
    printed: list[str] = []
    exec(compile(code, "README.md", "exec"), {"print": lambda *a, **k: printed.append(" ".join(map(str, a)))})
    assert "value=444 unit='sim'" in printed
    assert "get_weather" in printed
