"""The judge as the fusion modes see it: a callable over an upstream model, with its own time budget.

Every judge failure (upstream error, timeout, empty reply) becomes :class:`JudgeFailed`, which the
modes turn into the pool's fallback. Each judge call lands in the request's ledger like any other.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fusion_modes.base import JudgeFailed, Written
from gateway.books.calls import CallRecord, CallRole, Ledger
from gateway.config.loader import ModelSpec
from gateway.config.pools import JudgeConfig
from gateway.pipeline.upstream import UpstreamCaller
from gateway.wire.assemble import Accumulator
from gateway.wire.errors import UpstreamError, UpstreamTimeout

_LIMITS = frozenset({"max_tokens", "max_completion_tokens"})


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
        writer_fields: Mapping[str, Any] | None = None,
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
        # The caller's output contract and sampling fields (see gateway.pipeline.contract): they shape the
        # answer the caller gets, so they win over the operator's params on the writing call.
        self._writer_fields = dict(writer_fields or {})
        self.spec = spec

    async def verdict(self, messages: list[dict[str, Any]], response_format: dict[str, Any]) -> str:
        body = self._body(messages)
        if self._structured == "json_schema":
            body["response_format"] = response_format
        elif self._structured == "json_object":
            body["response_format"] = {"type": "json_object"}
        return (await self._call(body, None)).content

    async def write(self, messages: list[dict[str, Any]], on_delta: Callable[[str], Awaitable[None]]) -> Written:
        body = self._body(messages)
        if _LIMITS & self._writer_fields.keys():
            for key in _LIMITS:  # one limit, the caller's: upstreams refuse both spellings at once
                body.pop(key, None)
        body.update(self._writer_fields)
        acc = await self._call(body, on_delta)
        return Written(acc.content, acc.finish_reason)

    def _body(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            **self._params,
            "model": self._spec.upstream,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
        }

    async def _call(self, body: dict[str, Any], on_delta: Callable[[str], Awaitable[None]] | None) -> Accumulator:
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
        return acc
