"""``server.cors``: the CORS wrapper on its own, its config, and a running gateway answering browsers'
requests (preflights, JSON, streams and errors on the raw-ASGI routes and on FastAPI's)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from gateway.app import GatewayApp, create_app
from gateway.config import parse_config
from gateway.config.server import CORS_ALLOW_HEADERS, CORS_EXPOSE_HEADERS
from gateway.wire.asgi import Message, Receive, Scope, Send
from gateway.wire.cors import CORS, CorsPolicy
from gateway.wire.errors import ConfigError
from tests.conftest import GatewayRunner, http_client
from tests.support.logcapture import captured_log, request_lines

APP = "https://app.example.com"
EXPOSED = ", ".join(CORS_EXPOSE_HEADERS)
POLICY = CorsPolicy((APP, "http://localhost:5173"), CORS_ALLOW_HEADERS, CORS_EXPOSE_HEADERS, 600)

# ------------------------------------------------------------------ the wrapper on its own


@dataclass
class Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    #: scopes the wrapped app was called with
    reached: list[Scope] = field(default_factory=list)

    def get(self, name: str) -> str | None:
        values = [v.decode() for k, v in self.headers if k == name.encode()]
        assert len(values) <= 1, values
        return values[0] if values else None

    @property
    def cors(self) -> dict[str, str]:
        return {k.decode(): v.decode() for k, v in self.headers if k.startswith(b"access-control-")}


def inner(headers: list[tuple[bytes, bytes]], reached: list[Scope]) -> Any:
    """An app that answers 200 ``ok`` with ``headers``, in two body messages, recording its scope."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        reached.append(scope)
        await send({"type": "http.response.start", "status": 200, "headers": list(headers)})
        await send({"type": "http.response.body", "body": b"o", "more_body": True})
        await send({"type": "http.response.body", "body": b"k"})

    return app


def call(
    method: str,
    headers: dict[str, str],
    policy: CorsPolicy = POLICY,
    app_headers: tuple[tuple[bytes, bytes], ...] = ((b"content-type", b"text/plain"),),
) -> Answer:
    reached: list[Scope] = []
    sent: list[Message] = []
    wrapper = CORS(inner(list(app_headers), reached), policy)
    scope = {
        "type": "http",
        "method": method,
        "path": "/v1/chat/completions",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(wrapper(scope, receive, send))
    start, *bodies = sent
    assert start["type"] == "http.response.start"
    return Answer(start["status"], start["headers"], b"".join(m.get("body", b"") for m in bodies), reached)


def preflight(origin: str, method: str = "POST", headers: str | None = None, **kw: Any) -> Answer:
    h = {"origin": origin, "access-control-request-method": method}
    if headers is not None:
        h["access-control-request-headers"] = headers
    return call("OPTIONS", h, **kw)


def test_a_preflight_from_an_allowed_origin_is_answered_here_with_the_allow_headers() -> None:
    got = preflight(APP, "POST", "authorization,content-type,x-stainless-os,openai-organization,X-Request-Id")
    assert (got.status, got.body, got.reached) == (204, b"", [])
    assert got.cors == {
        "access-control-allow-origin": APP,
        "access-control-allow-methods": "GET, HEAD, POST",
        "access-control-max-age": "600",
        "access-control-allow-headers": "authorization, content-type, x-stainless-os, openai-organization, "
        "x-request-id",
    }
    assert got.get("vary") == "origin"
    # what the anthropic SDK sends from a browser
    sdk_headers = "anthropic-dangerous-direct-browser-access,anthropic-version,x-api-key"
    got = preflight("http://localhost:5173", "POST", sdk_headers)
    assert got.status == 204
    assert got.cors["access-control-allow-headers"] == sdk_headers.replace(",", ", ")
    # a GET needing no extra header: no allow-headers at all
    assert "access-control-allow-headers" not in preflight(APP, "GET").cors


@pytest.mark.parametrize(
    ("origin", "method", "headers", "why"),
    [
        ("https://evil.example", "POST", "authorization",
         "origin 'https://evil.example' is not allowed (server.cors.allow_origins)"),
        (APP + ":8443", "POST", None,
         "origin 'https://app.example.com:8443' is not allowed (server.cors.allow_origins)"),
        ("null", "POST", None, "origin 'null' is not allowed (server.cors.allow_origins)"),
        (APP, "PUT", None, "method 'PUT' is not allowed: the API answers GET, HEAD, POST"),
        (APP, "POST", "authorization,x-custom", "request header 'x-custom' is not allowed (server.cors.allow_headers)"),
    ],
)  # fmt: skip
def test_a_refused_preflight_gets_no_cors_header_and_says_why(
    origin: str, method: str, headers: str | None, why: str
) -> None:
    got = preflight(origin, method, headers)
    assert (got.status, got.cors, got.reached) == (403, {}, [])
    assert json.loads(got.body) == {"error": {"message": f"CORS preflight refused: {why}", "type": "permission_error",
                                              "param": None, "code": "cors_not_allowed"}}  # fmt: skip
    assert got.get("vary") == "origin"


def test_an_answer_to_an_allowed_origin_carries_the_origin_and_the_exposed_headers() -> None:
    got = call("POST", {"origin": APP, "authorization": "Bearer k"})
    assert (got.status, got.body, len(got.reached)) == (200, b"ok", 1)
    assert got.cors == {"access-control-allow-origin": APP, "access-control-expose-headers": EXPOSED}
    assert got.get("vary") == "origin" and got.get("content-type") == "text/plain"


def test_a_vary_the_app_set_is_kept_and_origin_added_once() -> None:
    got = call("GET", {"origin": APP}, app_headers=((b"vary", b"accept-encoding"),))
    assert got.get("vary") == "accept-encoding, origin"
    assert call("GET", {"origin": APP}, app_headers=((b"vary", b"Origin"),)).get("vary") == "Origin"


def test_a_refused_origin_or_no_origin_gets_the_answer_without_cors_headers() -> None:
    for headers in ({"origin": "https://evil.example"}, {}):
        got = call("POST", headers)
        assert (got.status, got.body, got.cors, len(got.reached)) == (200, b"ok", {}, 1)
        assert got.get("vary") == "origin"  # a cache must not give this answer to another origin


def test_an_options_request_that_is_not_a_preflight_reaches_the_app() -> None:
    got = call("OPTIONS", {"origin": APP})
    assert (got.status, len(got.reached)) == (200, 1)
    assert got.cors["access-control-allow-origin"] == APP


def test_any_origin_is_answered_with_a_star_and_credentials_need_listed_origins() -> None:
    star = CorsPolicy(("*",), CORS_ALLOW_HEADERS, (), 60)
    got = call("POST", {"origin": "https://anywhere.example"}, policy=star)
    assert got.cors == {"access-control-allow-origin": "*"}
    assert preflight("https://anywhere.example", policy=star).cors["access-control-allow-origin"] == "*"

    with_credentials = CorsPolicy((APP,), CORS_ALLOW_HEADERS, (), 60, allow_credentials=True)
    got = call("POST", {"origin": APP}, policy=with_credentials)
    assert got.cors == {"access-control-allow-origin": APP, "access-control-allow-credentials": "true"}
    assert preflight(APP, policy=with_credentials).cors["access-control-allow-credentials"] == "true"
    with pytest.raises(ValueError, match="CORS credentials need the origins listed"):
        CORS(inner([], []), CorsPolicy(("*",), (), (), 60, allow_credentials=True))


def test_other_scopes_pass_through_untouched() -> None:
    seen: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope)

    async def nothing() -> Message:
        return {}

    async def ignore(message: Message) -> None:
        return None

    asyncio.run(CORS(app, POLICY)({"type": "lifespan"}, nothing, ignore))
    assert seen == [{"type": "lifespan"}]


# ------------------------------------------------------------------ config

KEY = "sk-browser-0123456789abcdef"
SIM = f"""
providers:
  sim: {{type: simulator, seed: 7, profiles: {{a: {{ttft_ms: 5, tokens_per_s: 4000, accuracy: 1.0}}}}}}
models:
  quick: {{provider: sim, model: a, price: {{input: 1, output: 2}}}}
auth:
  keys:
    - {{name: web, key: {KEY}, pools: ["*"], models: ["*"]}}
"""


def cors_yaml(cors: str) -> str:
    return f"server:\n  cors: {cors}\n" + SIM


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "gateway.yaml")
    return info.value.message


def test_cors_is_off_by_default_and_then_the_app_is_the_plain_one() -> None:
    config = parse_config(SIM, "gateway.yaml")
    assert not config.server.cors.enabled
    # Not wrapped at all: the request path is the one measured without CORS.
    assert type(create_app(config)) is GatewayApp
    assert type(create_app(parse_config(cors_yaml(f"{{allow_origins: [{APP}]}}"), "g.yaml"))) is not GatewayApp


def test_origins_are_read_the_way_browsers_send_them() -> None:
    config = parse_config(
        cors_yaml("{allow_origins: ['HTTPS://App.Example.com:443/', 'http://localhost:5173', 'http://[::1]:80'],"
                  " allow_headers: [Authorization, x-my-*], max_age_s: 0}"), "g.yaml")  # fmt: skip
    cors = config.server.cors
    assert cors.allow_origins == (APP, "http://localhost:5173", "http://[::1]")
    assert cors.allow_headers == ("authorization", "x-my-*")
    assert cors.expose_headers == CORS_EXPOSE_HEADERS and cors.max_age_s == 0


@pytest.mark.parametrize(
    ("cors", "message"),
    [
        ("{allow_origins: ['*', 'https://a.example']}",
         "server.cors.allow_origins: '*' allows every origin: list it alone"),
        ("{allow_origins: ['https://a.example/app']}",
         "server.cors.allow_origins: 'https://a.example/app' is not an origin: an origin has no path, query or user"),
        ("{allow_origins: [a.example]}",
         "server.cors.allow_origins: 'a.example' is not an origin: write scheme://host[:port], or '*' alone for any"),
        ("{allow_origins: ['https://*.a.example']}",
         "server.cors.allow_origins: 'https://*.a.example' is not an origin: write scheme://host[:port], "
         "or '*' alone for any"),
        ("{allow_origins: ['*'], allow_credentials: true}",
         "server.cors: allow_credentials needs the origins listed: browsers refuse credentials for '*'"),
        ("{allow_headers: ['x y']}",
         "server.cors.allow_headers: 'x y' is not a header name (a trailing '*' matches a prefix)"),
        ("{allow_origin: ['*']}", "server.cors.allow_origin: unknown key (did you mean 'allow_origins'?)"),
    ],
)  # fmt: skip
def test_what_is_not_an_origin_is_refused_at_its_line(cors: str, message: str) -> None:
    assert error_of(cors_yaml(cors)) == f"gateway.yaml:2: {message}"


# ------------------------------------------------------------------ a running gateway

CHAT = {"model": "quick", "messages": [{"role": "user", "content": "What is 6 * 7?"}]}
FROM_APP = {"origin": APP, "authorization": f"Bearer {KEY}"}


def check_allowed(headers: Any) -> None:
    assert headers["access-control-allow-origin"] == APP
    assert headers["access-control-expose-headers"] == EXPOSED
    assert headers["vary"] == "origin"


def test_every_answer_to_an_allowed_origin_carries_cors_headers(gateway: GatewayRunner) -> None:
    with gateway(cors_yaml(f"{{allow_origins: [{APP}]}}")) as (_, srv), http_client(srv.url) as client:
        resp = client.post("/v1/chat/completions", json=CHAT, headers=FROM_APP)
        assert resp.status_code == 200 and resp.json()["object"] == "chat.completion"
        check_allowed(resp.headers)
        assert resp.headers["x-fusion-cost-usd"] and resp.headers["x-request-id"]

        with client.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}, headers=FROM_APP) as s:
            assert s.status_code == 200 and s.headers["content-type"].startswith("text/event-stream")
            check_allowed(s.headers)
            assert s.read().endswith(b"data: [DONE]\n\n")

        # errors, raised before the body is read (auth) and after (an unknown model)
        resp = client.post("/v1/chat/completions", json=CHAT, headers={"origin": APP, "authorization": "Bearer no"})
        assert resp.status_code == 401
        check_allowed(resp.headers)
        resp = client.post("/v1/chat/completions", json={**CHAT, "model": "nope"}, headers=FROM_APP)
        assert resp.status_code == 404 and resp.json()["error"]["code"] == "model_not_found"
        check_allowed(resp.headers)

        resp = client.post("/v1/responses", json={"model": "quick", "input": "What is 6 * 7?"}, headers=FROM_APP)
        assert resp.status_code == 200 and resp.json()["object"] == "response"
        check_allowed(resp.headers)
        resp = client.post("/v1/messages", headers={"origin": APP, "x-api-key": KEY, "anthropic-version": "2023-06-01"},
                           json={"model": "quick", "max_tokens": 50, "messages": CHAT["messages"]})  # fmt: skip
        assert resp.status_code == 200 and resp.json()["type"] == "message"
        check_allowed(resp.headers)
        resp = client.get("/v1/models", headers=FROM_APP)  # a FastAPI route
        assert resp.status_code == 200 and resp.json()["data"][0]["id"] == "quick"
        check_allowed(resp.headers)

        # another origin gets the same answers, without anything that lets its page read them
        resp = client.post("/v1/chat/completions", json=CHAT, headers={**FROM_APP, "origin": "https://evil.example"})
        assert resp.status_code == 200
        assert not [k for k in resp.headers if k.startswith("access-control-")]


def test_preflights_are_answered_before_any_route(gateway: GatewayRunner) -> None:
    with (
        captured_log() as logged,
        gateway(cors_yaml(f"{{allow_origins: [{APP}], max_age_s: 7200}}")) as (_, srv),
        http_client(srv.url) as c,
    ):
        for path, asked in [
            ("/v1/chat/completions", "authorization,content-type,x-stainless-lang,x-stainless-retry-count"),
            ("/v1/messages", "anthropic-dangerous-direct-browser-access,anthropic-version,content-type,x-api-key"),
            ("/v1/models", "authorization"),
        ]:
            resp = c.options(path, headers={"origin": APP, "access-control-request-method": "POST",
                                            "access-control-request-headers": asked})  # fmt: skip
            assert resp.status_code == 204, (path, resp.text)
            assert resp.headers["access-control-allow-origin"] == APP
            assert resp.headers["access-control-allow-headers"] == asked.replace(",", ", ")
            assert resp.headers["access-control-max-age"] == "7200"
        resp = c.options("/v1/chat/completions", headers={"origin": "https://evil.example",
                                                          "access-control-request-method": "POST"})  # fmt: skip
        assert resp.status_code == 403
        assert resp.json()["error"]["message"] == (
            "CORS preflight refused: origin 'https://evil.example' is not allowed (server.cors.allow_origins)"
        )
        assert not [k for k in resp.headers if k.startswith("access-control-")]
    # each preflight has its access line, like any request the gateway answered
    lines = [(x["method"], x["path"], x["status"]) for x in request_lines(logged)]
    assert lines == [("OPTIONS", "/v1/chat/completions", 204), ("OPTIONS", "/v1/messages", 204),
                     ("OPTIONS", "/v1/models", 204), ("OPTIONS", "/v1/chat/completions", 403)]  # fmt: skip


def test_with_cors_off_a_browser_gets_nothing_it_could_use(gateway: GatewayRunner) -> None:
    with gateway(SIM) as (_, srv), http_client(srv.url) as client:
        resp = client.post("/v1/chat/completions", json=CHAT, headers=FROM_APP)
        assert resp.status_code == 200
        assert "vary" not in resp.headers and not [k for k in resp.headers if k.startswith("access-control-")]
        resp = client.options("/v1/chat/completions", headers={"origin": APP, "access-control-request-method": "POST"})
        assert resp.status_code == 405  # as before: the route only answers POST
        assert not [k for k in resp.headers if k.startswith("access-control-")]


def test_a_reload_that_changes_cors_says_it_takes_effect_at_the_next_restart() -> None:
    app = create_app(parse_config(cors_yaml(f"{{allow_origins: [{APP}]}}"), "gateway.yaml"))
    changed = parse_config(cors_yaml("{allow_origins: ['*']}"), "gateway.yaml")
    with captured_log() as logged:
        app.gateway.install_config(changed, "file changed", "gateway.yaml")
        app.gateway.install_config(changed, "file changed", "gateway.yaml")  # the same again: nothing to say
    lines = [json.loads(x) for x in logged.getvalue().splitlines()]
    assert [(x["msg"], x["reason"]) for x in lines if x["level"] == "warning"] == [
        ("server.cors changed: it takes effect at the next restart", "file changed")
    ]
