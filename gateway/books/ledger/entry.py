"""What a finished request hands to the ledger, and the rows it becomes.

A request builds one :class:`LedgerEntry` from objects it already has (its call records, its
``fusion`` metadata): nothing is copied or formatted on the request path. The writer turns entries
into rows in the background, at flush time (:func:`rows`): plain tuples the database driver takes as
they are, one prepared INSERT per table for a whole batch.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from gateway.books.calls import CallRecord
from gateway.books.record import FusionMetadata
from gateway.books.usage import Usage

Kind = Literal["passthrough", "pool", "baseline", "cached", "refused"]

#: money in the ledger: integer picodollars
PICO = Decimal(10) ** 12


def to_pico(usd: Decimal | None) -> int | None:
    return None if usd is None else int((usd * PICO).to_integral_value())


def from_pico(pico: Any) -> Decimal | None:
    return None if pico is None else Decimal(int(pico)) / PICO


@dataclass(slots=True)
class LedgerEntry:
    request_id: str
    kind: Kind
    key: str
    #: wall clock (``time.time()``) when the request arrived
    created: float
    status: int
    stream: bool = False
    #: the inbound API's path (None: a shadow baseline, which no caller asked for)
    endpoint: str | None = None
    model: str | None = None  # what the caller asked for
    pool: str | None = None
    mode: str | None = None
    error_code: str | None = None
    latency_ms: float | None = None
    cost: Decimal | None = None
    #: a cache hit: what the answer cost when it was made
    saved: Decimal | None = None
    calls: Sequence[CallRecord] = ()
    #: (model, deployment or None) -> provider name, to say where each call went
    providers: Mapping[tuple[str, str | None], str] | None = None
    meta: FusionMetadata | None = None
    parent_id: str | None = None
    #: shadow baseline only: fused / baseline ratios and the pairwise verdict
    latency_ratio: float | None = None
    cost_ratio: float | None = None
    comparison: str | None = None
    #: only with ``ledger.content: true``
    messages: Any = None
    answer: Any = None


def _call_role(r: CallRecord) -> str:
    return "debate_round" if r.role == "member" and r.round > 0 else r.role


_ANSWERING = frozenset({"passthrough", "member", "baseline"})
_JUDGING = frozenset({"judge", "comparison"})
_ZERO = Decimal(0)


#: the columns :func:`rows` fills, in the order of its tuples (the store's INSERTs name them in this order)
REQUEST_COLUMNS = (
    "row_id", "created_at", "request_id", "parent_id", "kind", "endpoint", "key_name", "model", "pool", "mode",
    "status", "error_code", "stream", "degraded", "latency_ms", "fanout_ms", "slowest_member_ms", "rounds_ms",
    "judge_ms", "gateway_ms", "escalation_ms", "cost_pusd", "member_cost_pusd", "judge_cost_pusd",
    "saved_cost_pusd", "prompt_tokens", "completion_tokens", "usage_estimated", "judge_status", "judge_model",
    "winner", "winner_index", "fusion", "escalated", "escalation_cost_pusd", "baseline_sampled", "latency_ratio",
    "cost_ratio", "comparison", "messages", "answer",
)
CALL_COLUMNS = (
    "row_id", "created_at", "request_row", "request_id", "seq", "role", "round", "member", "model", "provider",
    "answered_by", "deployment", "fallback_reason", "status", "error_type", "attempts", "latency_ms", "ttfb_ms",
    "prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens", "cost_pusd", "usage_estimated",
)

Row = tuple[Any, ...]


class RowIds:
    """Row keys: unique across replicas sharing a database, cheap, and in time order.

    When this process began (microseconds since the epoch), a random tag drawn then, and a counter: 32
    hex digits. Keys that grow with time land at the end of the primary key's index instead of at a
    random page of it, and making one is a string format, not a call for 16 random bytes.
    """

    def __init__(self) -> None:
        self._base = f"{time.time_ns() // 1000:014x}{secrets.token_hex(4)}"
        self._seq = itertools.count()

    def __call__(self) -> str:
        return f"{self._base}{next(self._seq):010x}"


def rows(
    entry: LedgerEntry, row_id: Callable[[], str], created: Any, json: Callable[[Any], Any]
) -> tuple[Row, list[Row]]:
    """The request row and its call rows, as tuples of :data:`REQUEST_COLUMNS` and :data:`CALL_COLUMNS`.

    ``created``: the request's ``created_at`` as the backend's driver takes it; ``json``: what a JSON
    column is given for a value (None, no value, stays SQL NULL).
    """
    request_row = row_id()
    request_id = entry.request_id
    providers = entry.providers or {}
    calls: list[Row] = []
    usage: Usage | None = None
    # what answering and judging calls cost (a request without ``fusion`` metadata): unknown if one is
    answering: Decimal | None = _ZERO
    judging: Decimal | None = _ZERO
    for seq, r in enumerate(entry.calls):
        u = r.usage
        if u is not None:
            usage = u if usage is None else usage + u
            role, cost = r.role, r.cost
            if role in _ANSWERING:
                answering = None if answering is None or cost is None else answering + cost
            elif role in _JUDGING:
                judging = None if judging is None or cost is None else judging + cost
        calls.append((
            row_id(), created, request_row, request_id, seq, _call_role(r), r.round, r.member, r.model,
            providers.get((r.answered_by or r.model, r.deployment)), r.answered_by, r.deployment,
            r.fallback_reason, r.status, r.error_type, r.attempts, round(r.latency_ms, 3),
            round((r.first_byte - r.started) * 1000, 3) if r.first_byte else None,
            u.prompt_tokens if u else None, u.completion_tokens if u else None,
            u.cached_tokens if u else None, u.reasoning_tokens if u else None,
            to_pico(r.cost), bool(u and u.estimated),
        ))
    meta = entry.meta
    if meta is None:
        request: Row = (
            request_row, created, request_id, entry.parent_id, entry.kind, entry.endpoint, entry.key, entry.model,
            entry.pool, entry.mode, entry.status, entry.error_code, entry.stream, False,
            round(entry.latency_ms, 3) if entry.latency_ms is not None else None, None, None, None, None, None,
            None, to_pico(entry.cost), to_pico(answering), to_pico(judging), to_pico(entry.saved),
            usage.prompt_tokens if usage else None, usage.completion_tokens if usage else None,
            bool(usage and usage.estimated), None, None, None, None, None, None, None, False,
            entry.latency_ratio, entry.cost_ratio, entry.comparison, _json(json, entry.messages),
            _json(json, entry.answer),
        )
        return request, calls
    lat = meta.latency
    judge = meta.judge
    cascade = meta.cascade
    escalation = cascade.escalation if cascade is not None else None
    request = (
        request_row, created, request_id, entry.parent_id, entry.kind, entry.endpoint, entry.key, entry.model,
        entry.pool, entry.mode, entry.status, entry.error_code, entry.stream, meta.degraded,
        round(entry.latency_ms, 3) if entry.latency_ms is not None else None,
        lat.fanout, lat.slowest_member, json(list(lat.rounds)), lat.judge, lat.gateway,
        lat.escalation if cascade is not None else None, to_pico(entry.cost), to_pico(meta.cost_member),
        to_pico(meta.cost_judge), to_pico(entry.saved),
        usage.prompt_tokens if usage else None, usage.completion_tokens if usage else None,
        bool(usage and usage.estimated), judge.status if judge else None, judge.model if judge else None,
        meta.winner.model if meta.winner else None, meta.winner.member if meta.winner else None,
        json(meta.to_json()), cascade.escalated if cascade is not None else None,
        to_pico(escalation.cost_usd) if escalation is not None else None, bool(meta.baseline_sampled),
        entry.latency_ratio, entry.cost_ratio, entry.comparison, _json(json, entry.messages),
        _json(json, entry.answer),
    )
    return request, calls


def _json(json: Callable[[Any], Any], value: Any) -> Any:
    return None if value is None else json(value)
