"""What a finished request hands to the ledger, and the rows it becomes.

A request builds one :class:`LedgerEntry` from objects it already has (its call records, its
``fusion`` metadata): nothing is copied or formatted on the request path. The writer turns entries
into rows in the background (:func:`rows`).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

from gateway.books.calls import CallRecord
from gateway.books.cost import sum_costs
from gateway.books.record import FusionMetadata
from gateway.books.usage import Usage, total

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


def _day(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _call_role(r: CallRecord) -> str:
    return "debate_round" if r.role == "member" and r.round > 0 else r.role


_ANSWERING = frozenset({"passthrough", "member", "baseline"})
_JUDGING = frozenset({"judge", "comparison"})


def _cost(calls: Sequence[CallRecord], roles: frozenset[str]) -> Decimal | None:
    return sum_costs(r.cost for r in calls if r.role in roles and r.usage is not None)


def rows(entry: LedgerEntry) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The request row and its call rows."""
    row_id = secrets.token_hex(16)
    created = _day(entry.created)
    providers = entry.providers or {}
    calls = []
    for seq, r in enumerate(entry.calls):
        u = r.usage
        calls.append(
            {
                "row_id": secrets.token_hex(16),
                "created_at": created,
                "request_row": row_id,
                "request_id": entry.request_id,
                "seq": seq,
                "role": _call_role(r),
                "round": r.round,
                "member": r.member,
                "model": r.model,
                "provider": providers.get((r.answered_by or r.model, r.deployment)),
                "answered_by": r.answered_by,
                "deployment": r.deployment,
                "fallback_reason": r.fallback_reason,
                "status": r.status,
                "error_type": r.error_type,
                "attempts": r.attempts,
                "latency_ms": round(r.latency_ms, 3),
                "ttfb_ms": round((r.first_byte - r.started) * 1000, 3) if r.first_byte else None,
                "prompt_tokens": u.prompt_tokens if u else None,
                "completion_tokens": u.completion_tokens if u else None,
                "cached_tokens": u.cached_tokens if u else None,
                "reasoning_tokens": u.reasoning_tokens if u else None,
                "cost_pusd": to_pico(r.cost),
                "usage_estimated": bool(u and u.estimated),
            }
        )
    usage: Usage | None = total(r.usage for r in entry.calls) if any(r.usage for r in entry.calls) else None
    meta = entry.meta
    lat = meta.latency if meta is not None else None
    judge = meta.judge if meta is not None else None
    cascade = meta.cascade if meta is not None else None
    escalation = cascade.escalation if cascade is not None else None
    request = {
        "row_id": row_id,
        "created_at": created,
        "request_id": entry.request_id,
        "parent_id": entry.parent_id,
        "kind": entry.kind,
        "endpoint": entry.endpoint,
        "key_name": entry.key,
        "model": entry.model,
        "pool": entry.pool,
        "mode": entry.mode,
        "status": entry.status,
        "error_code": entry.error_code,
        "stream": entry.stream,
        "degraded": bool(meta and meta.degraded),
        "latency_ms": round(entry.latency_ms, 3) if entry.latency_ms is not None else None,
        "fanout_ms": lat.fanout if lat else None,
        "slowest_member_ms": lat.slowest_member if lat else None,
        "rounds_ms": list(lat.rounds) if lat else None,
        "judge_ms": lat.judge if lat else None,
        "gateway_ms": lat.gateway if lat else None,
        "escalation_ms": lat.escalation if lat and cascade else None,
        "cost_pusd": to_pico(entry.cost),
        "member_cost_pusd": to_pico(meta.cost_member if meta else _cost(entry.calls, _ANSWERING)),
        "judge_cost_pusd": to_pico(meta.cost_judge if meta else _cost(entry.calls, _JUDGING)),
        "saved_cost_pusd": to_pico(entry.saved),
        "prompt_tokens": usage.prompt_tokens if usage else None,
        "completion_tokens": usage.completion_tokens if usage else None,
        "usage_estimated": bool(usage and usage.estimated),
        "judge_status": judge.status if judge else None,
        "judge_model": judge.model if judge else None,
        "winner": meta.winner.model if meta and meta.winner else None,
        "winner_index": meta.winner.member if meta and meta.winner else None,
        "fusion": meta.to_json() if meta is not None else None,
        "escalated": cascade.escalated if cascade is not None else None,
        "escalation_cost_pusd": to_pico(escalation.cost_usd) if escalation is not None else None,
        "baseline_sampled": bool(meta and meta.baseline_sampled),
        "latency_ratio": entry.latency_ratio,
        "cost_ratio": entry.cost_ratio,
        "comparison": entry.comparison,
        "messages": entry.messages,
        "answer": entry.answer,
    }
    return request, calls
