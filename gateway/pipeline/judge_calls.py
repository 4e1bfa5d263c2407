"""The judge as the fusion modes see it: a callable over an upstream model, with its own time budget.

Every judge failure (upstream error, timeout, empty reply) becomes :class:`JudgeFailed`, which the
modes turn into the pool's fallback. Each judge call lands in the request's ledger like any other.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from fusion_modes.base import JudgeFailed
from gateway.books.calls import CallRecord, CallRole, Ledger
from gateway.config.loader import ModelSpec
from gateway.config.schema import JudgeConfig
from gateway.pipeline.upstream import UpstreamCaller
from gateway.wire.errors import UpstreamError, UpstreamTimeout


class ModelJudge:
    def __init__(
        self,
        caller: UpstreamCaller,
        spec: ModelSpec,
        config: JudgeConfig | None,
        ledger: Ledger,
        pool: str,
        deadline: float,
        *,
        role: CallRole = "judge",
        on_call: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self._caller = caller
        self._spec = spec
        self._timeout = config.timeout_s if config else 30.0
        self._structured = config.structured_output if config else "json_schema"
        self._params = dict(config.params) if config else {}
        self._ledger = ledger
        self._pool = pool
        self._deadline = deadline
        self._role = role
        self._on_call = on_call
        self.spec = spec

    async def verdict(self, messages: list[dict[str, Any]], response_format: dict[str, Any]) -> str:
        body = self._body(messages)
        if self._structured == "json_schema":
            body["response_format"] = response_format
        elif self._structured == "json_object":
            body["response_format"] = {"type": "json_object"}
        return await self._call(body, None)

    async def write(self, messages: list[dict[str, Any]], on_delta: Callable[[str], Awaitable[None]]) -> str:
        return await self._call(self._body(messages), on_delta)

    def _body(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            **self._params,
            "model": self._spec.upstream,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
        }

    async def _call(self, body: dict[str, Any], on_delta: Callable[[str], Awaitable[None]] | None) -> str:
        if self._on_call is not None:
            await self._on_call(self._spec.name)
        record = self._ledger.add(CallRecord(model=self._spec.name, role=self._role, pool=self._pool))
        deadline = min(self._deadline, time.monotonic() + self._timeout)
        try:
            acc = await self._caller.collect(self._spec, body, record, deadline, on_delta)
        except UpstreamTimeout as exc:
            raise JudgeFailed("timeout", str(exc)) from exc
        except UpstreamError as exc:
            raise JudgeFailed("upstream_error", exc.kind) from exc
        return acc.content
