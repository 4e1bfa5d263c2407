"""A web app on another origin calls the gateway from a real headless Chromium, with a client key.

The page is served by a second loopback server (another port, so another origin) and calls
``/v1/chat/completions`` with ``fetch``: once for JSON, once streamed and read through the body's
reader, reading the headers the gateway exposes. With ``server.cors`` allowing the page's origin both
succeed with the same answers a non-browser client gets; with CORS off, or on for another origin only,
the browser blocks both.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import pytest

from gateway.wire.asgi import Receive, Scope, Send, serve_lifespan
from tests.conftest import GatewayRunner, http_client
from tests.support.browser import Watched, chromium
from tests.support.servers import serving
from tests.test_cors import KEY, SIM, cors_yaml

pytestmark = pytest.mark.browser

PROMPT = "What is 37 * 12?"

PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>web app</title></head>
<body><pre id="out"></pre>
<script>
const q = new URLSearchParams(location.search);
const url = q.get("gateway") + "/v1/chat/completions";
const headers = {"authorization": "Bearer " + q.get("key"), "content-type": "application/json"};
const body = {model: q.get("model"), messages: [{role: "user", content: q.get("prompt")}]};
const failure = (e) => ({error: e.name + ": " + e.message});

async function json() {
  const r = await fetch(url, {method: "POST", headers, body: JSON.stringify(body)});
  const answer = await r.json();
  return {status: r.status, content: answer.choices[0].message.content,
          requestId: r.headers.get("x-request-id"), cost: r.headers.get("x-fusion-cost-usd")};
}

async function stream() {
  const r = await fetch(url, {method: "POST", headers, body: JSON.stringify({...body, stream: true})});
  const reader = r.body.getReader();
  const decoder = new TextDecoder();
  let text = "";
  for (;;) {
    const {value, done} = await reader.read();
    if (done) break;
    text += decoder.decode(value, {stream: true});
  }
  let content = "", ended = false;
  for (const line of text.split("\\n")) {
    if (!line.startsWith("data: ")) continue;
    if (line === "data: [DONE]") { ended = true; continue; }
    for (const choice of JSON.parse(line.slice(6)).choices) content += choice.delta.content || "";
  }
  return {status: r.status, content, ended, requestId: r.headers.get("x-request-id"),
          type: r.headers.get("content-type")};
}

(async () => {
  const out = {};
  out.json = await json().catch(failure);
  out.stream = await stream().catch(failure);
  document.getElementById("out").textContent = JSON.stringify(out);
  document.body.dataset.done = "yes";
})();
</script></body></html>
"""


async def web_app(scope: Scope, receive: Receive, send: Send) -> None:
    """The other origin: serves the page, nothing else."""
    if scope["type"] == "lifespan":
        await serve_lifespan(receive, send)
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/html")]})
    await send({"type": "http.response.body", "body": PAGE})


@pytest.fixture(scope="module")
def page_origin() -> Iterator[str]:
    with serving(web_app) as server:
        yield server.url


@contextmanager
def browser() -> Iterator[Watched]:
    with chromium() as watched:
        watched.page.set_default_timeout(15_000)
        yield watched


def run_page(watched: Watched, origin: str, gateway_url: str) -> dict[str, Any]:
    """Load the page from ``origin`` against ``gateway_url``; what its two calls got."""
    watched.problems.clear()
    query = urlencode({"gateway": gateway_url, "key": KEY, "model": "quick", "prompt": PROMPT})
    watched.page.goto(f"{origin}/?{query}")
    watched.page.wait_for_selector("body[data-done=yes]")
    result: dict[str, Any] = json.loads(watched.page.inner_text("#out"))
    return result


def served_directly(url: str) -> tuple[str, str, str]:
    """The JSON and streamed answers a non-browser client gets for the page's request, and the cost."""
    body = {"model": "quick", "messages": [{"role": "user", "content": PROMPT}]}
    auth = {"authorization": f"Bearer {KEY}"}
    with http_client(url) as client:
        resp = client.post("/v1/chat/completions", json=body, headers=auth)
        whole, cost = resp.json()["choices"][0]["message"]["content"], resp.headers["x-fusion-cost-usd"]
        streamed = ""
        with client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}, headers=auth) as resp:
            for line in resp.iter_lines():
                if line.startswith("data: {"):
                    streamed += "".join(c["delta"].get("content") or "" for c in json.loads(line[6:])["choices"])
    return whole, streamed, cost


def test_a_page_on_an_allowed_origin_calls_the_gateway_with_a_key(gateway: GatewayRunner, page_origin: str) -> None:
    with gateway(cors_yaml(f"{{allow_origins: ['{page_origin}']}}")) as (_, srv), browser() as watched:
        got = run_page(watched, page_origin, srv.url)
        whole, streamed, cost = served_directly(srv.url)
        assert watched.problems == []
    assert "444" in whole
    assert got["json"]["status"] == 200 and got["json"]["content"] == whole
    # the exposed headers are readable by the page's script
    assert got["json"]["requestId"] and got["json"]["cost"] == cost and Decimal(cost) > 0
    assert got["stream"]["status"] == 200 and got["stream"]["type"].startswith("text/event-stream")
    assert got["stream"]["content"] == streamed == whole and got["stream"]["ended"] is True
    assert got["stream"]["requestId"] and got["stream"]["requestId"] != got["json"]["requestId"]


@pytest.mark.parametrize("cors_on", [False, True], ids=["cors-off", "cors-for-another-origin"])
def test_a_page_on_an_origin_not_allowed_is_blocked_by_the_browser(
    gateway: GatewayRunner, page_origin: str, cors_on: bool
) -> None:
    config = cors_yaml("{allow_origins: ['https://app.example.com']}") if cors_on else SIM
    with gateway(config) as (_, srv), browser() as watched:
        got = run_page(watched, page_origin, srv.url)
        problems = list(watched.problems)
    assert got == {"json": {"error": "TypeError: Failed to fetch"}, "stream": {"error": "TypeError: Failed to fetch"}}
    # blocked at the preflight: the key never left the browser
    blocked = [p for p in problems if "has been blocked by CORS policy: Response to preflight request" in p]
    assert len(blocked) == 2, problems
