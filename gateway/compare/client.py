"""Calls to the gateway's HTTP API, as any client would make them, with retries on transient errors.

Transient: HTTP 429 and 5xx, and connection errors or timeouts. Backoff is full-jitter exponential
(uniform in [0, min(max, base x 2^attempt)]); a ``Retry-After`` of a few seconds is honoured as a floor.
Other 4xx answers are final: asking again would get the same answer.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx

COST_HEADER = "x-fusion-cost-usd"
_RETRY_AFTER_MAX_S = 30.0


class GatewayUnreachable(Exception):
    pass


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 4
    backoff_base_s: float = 0.5
    backoff_max_s: float = 8.0


@dataclass
class Reply:
    """One answered (or finally failed) chat completion."""

    ok: bool
    answer: str | None = None
    #: exact USD from the ``x-fusion-cost-usd`` header; None when "unknown" or absent
    cost: Decimal | None = None
    cost_text: str | None = None
    #: wall clock of the successful attempt, as this client saw it
    latency_ms: float = 0.0
    usage: dict[str, Any] | None = None
    fusion: dict[str, Any] | None = None
    attempts: int = 0
    http_status: int | None = None
    error: dict[str, Any] | None = None
    finish_reason: str | None = None


def normalize_url(url: str) -> str:
    """``http://host:8000``, ``http://host:8000/`` and ``http://host:8000/v1`` all mean the same gateway."""
    url = url.rstrip("/")
    if url.endswith("/v1"):
        url = url[: -len("/v1")]
    return url


def parse_cost(text: str | None) -> Decimal | None:
    if text is None or text == "unknown":
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def answer_text(message: dict[str, Any]) -> str:
    """The text an answer is scored and judged on: content, else tool calls written out, else the refusal."""
    content = message.get("content")
    if isinstance(content, str) and content:
        return content
    calls = message.get("tool_calls")
    if calls:
        return "Tool calls: " + json.dumps(calls, sort_keys=True, default=str)
    refusal = message.get("refusal")
    if isinstance(refusal, str) and refusal:
        return "Refusal: " + refusal
    return content if isinstance(content, str) else ""


@dataclass
class GatewayClient:
    url: str
    api_key: str | None = None
    timeout_s: float = 180.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    rng: random.Random = field(default_factory=random.Random)
    #: called on every retry (for the progress line)
    on_retry: Callable[[], None] | None = None
    #: requests in a row that never reached the gateway, even after retries (0 once one gets an answer)
    unreachable_streak: int = 0
    _http: httpx.AsyncClient | None = None

    async def __aenter__(self) -> GatewayClient:
        headers = {"authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        self._http = httpx.AsyncClient(
            base_url=normalize_url(self.url),
            headers=headers,
            timeout=httpx.Timeout(self.timeout_s, connect=10.0),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
            follow_redirects=False,
            trust_env=False,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._http is not None:
            await self._http.aclose()

    @property
    def http(self) -> httpx.AsyncClient:
        assert self._http is not None, "use GatewayClient as an async context manager"
        return self._http

    async def models(self) -> list[dict[str, Any]]:
        """``GET /v1/models``: every callable name, pools with their ``fusion`` description."""
        try:
            resp = await self.http.get("/v1/models")
        except httpx.HTTPError as exc:
            raise GatewayUnreachable(f"cannot reach the gateway at {self.url}: {describe(exc)}") from None
        if resp.status_code != 200:
            raise GatewayUnreachable(f"GET {self.url}/v1/models answered {resp.status_code}: {error_message(resp)}")
        data = resp.json().get("data")
        return [m for m in data if isinstance(m, dict)] if isinstance(data, list) else []

    async def chat(self, body: dict[str, Any]) -> Reply:
        attempts = 0
        while True:
            attempts += 1
            started = time.monotonic()
            transient: str | None = None
            retry_after: float | None = None
            try:
                resp = await self.http.post("/v1/chat/completions", json=body)
            except httpx.HTTPError as exc:
                transient = describe(exc)
                reply = Reply(ok=False, attempts=attempts, error={"type": "connection_error", "message": transient})
            else:
                self.unreachable_streak = 0
                elapsed = (time.monotonic() - started) * 1000
                if resp.status_code == 200:
                    return self._success(resp, elapsed, attempts)
                reply = Reply(
                    ok=False,
                    attempts=attempts,
                    http_status=resp.status_code,
                    error={"type": error_type(resp), "message": error_message(resp), "status": resp.status_code},
                )
                if resp.status_code == 429 or resp.status_code >= 500:
                    transient = f"HTTP {resp.status_code}"
                    retry_after = _retry_after(resp)
            if transient is None or attempts > self.retry.max_retries:
                if reply.http_status is None:
                    self.unreachable_streak += 1
                return reply
            delay = self.rng.uniform(0, min(self.retry.backoff_max_s, self.retry.backoff_base_s * 2 ** (attempts - 1)))
            if retry_after is not None:
                delay = max(delay, min(retry_after, _RETRY_AFTER_MAX_S))
            if self.on_retry is not None:
                self.on_retry()
            await asyncio.sleep(delay)

    def _success(self, resp: httpx.Response, elapsed_ms: float, attempts: int) -> Reply:
        try:
            data = json.loads(resp.text, parse_float=Decimal)
            choice = data["choices"][0]
            message = choice["message"]
        except (ValueError, KeyError, IndexError, TypeError):
            return Reply(
                ok=False,
                attempts=attempts,
                http_status=resp.status_code,
                error={"type": "bad_response", "message": "the gateway's answer is not a chat completion"},
            )
        cost_text = resp.headers.get(COST_HEADER)
        fusion = data.get("fusion")
        return Reply(
            ok=True,
            answer=answer_text(message),
            cost=parse_cost(cost_text),
            cost_text=cost_text,
            latency_ms=round(elapsed_ms, 3),
            usage=data.get("usage") if isinstance(data.get("usage"), dict) else None,
            fusion=fusion if isinstance(fusion, dict) else None,
            attempts=attempts,
            http_status=resp.status_code,
            finish_reason=choice.get("finish_reason"),
        )


def describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def error_message(resp: httpx.Response) -> str:
    try:
        err = resp.json().get("error")
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return str(err["message"])
    except (ValueError, AttributeError):
        pass
    return resp.text[:200] or resp.reason_phrase


def error_type(resp: httpx.Response) -> str:
    try:
        err = resp.json().get("error")
        if isinstance(err, dict):
            return str(err.get("code") or err.get("type") or "error")
    except (ValueError, AttributeError):
        pass
    return "error"


def _retry_after(resp: httpx.Response) -> float | None:
    value = resp.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
