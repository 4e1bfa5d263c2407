"""What a fused request reports about itself: typed records, and the ``fusion`` JSON they become.

The pipeline builds these once a pool request is finished; the route sends :meth:`FusionMetadata.to_json`
as the response's ``fusion`` object, the progress events reuse the call and judge entries, and the
metrics read the same record. The JSON shape is a contract with clients (documented in the README):
key names and order here are the wire format.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from fusion_modes.base import JudgeStatus
from gateway.books.calls import CallRecord, CallStatus
from gateway.books.usage import Usage


def ms(x: float) -> float:
    """Milliseconds as reported: to the microsecond."""
    return round(x, 3)


def span_ms(records: Sequence[CallRecord]) -> float:
    """Wall time covered by ``records`` (parallel calls overlap: first start to last end)."""
    done = [r for r in records if r.started and r.ended]
    if not done:
        return 0.0
    return (max(r.ended for r in done) - min(r.started for r in done)) * 1000


def _usage_json(usage: Usage | None) -> dict[str, Any] | None:
    return usage.to_openai() if usage is not None else None


@dataclass(frozen=True, slots=True)
class CallEntry:
    """One upstream call as a client sees it."""

    member: int | None  # position in the pool's members
    model: str
    status: CallStatus
    latency_ms: float
    usage: Usage | None
    cost_usd: Decimal | None
    error_type: str | None
    #: the model that answered: ``model``, or the fallback that did (None when nothing answered)
    answered_by: str | None = None
    #: why a fallback answered: failure, rate_limited or unavailable
    fallback_reason: str | None = None

    @classmethod
    def of(cls, r: CallRecord) -> CallEntry:
        answered_by = (r.answered_by or r.model) if r.status == "ok" else None
        return cls(r.member, r.model, r.status, ms(r.latency_ms), r.usage, r.cost, r.error_type, answered_by,
                   r.fallback_reason)

    def to_json(self) -> dict[str, Any]:
        return {
            "member": self.member,
            "model": self.model,
            "status": self.status,
            "latency_ms": self.latency_ms,
            "usage": _usage_json(self.usage),
            "cost_usd": self.cost_usd,
            "error_type": self.error_type,
            "answered_by": self.answered_by,
            "fallback_reason": self.fallback_reason,
        }


@dataclass(frozen=True, slots=True)
class MemberRef:
    member: int
    model: str


@dataclass(frozen=True, slots=True)
class VerdictEntry:
    winner: MemberRef
    analysis: str
    consistent: bool
    #: the analysis speaks of anonymous labels: this says who they were
    labels: Mapping[str, MemberRef]
    #: what decided: ``judge`` (a verdict) or ``consensus`` (enough members agreed; no verdict asked)
    reason: str = "judge"

    def to_json(self) -> dict[str, Any]:
        return {
            "winner": self.winner.model,
            "winner_index": self.winner.member,
            "analysis": self.analysis,
            "consistent": self.consistent,
            "labels": {label: {"member": m.member, "model": m.model} for label, m in self.labels.items()},
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class ConsensusEntry:
    """Enough members agreed: which, by what comparison, and who was stopped because of it."""

    compare: str
    min: int
    agreed: tuple[MemberRef, ...]  # in the order they finished; the first one's answer was returned
    stopped_early: tuple[int, ...]  # members cancelled once the others agreed

    def to_json(self) -> dict[str, Any]:
        return {
            "compare": self.compare,
            "min": self.min,
            "agreed": [{"member": m.member, "model": m.model} for m in self.agreed],
            "stopped_early": list(self.stopped_early),
        }


@dataclass(frozen=True, slots=True)
class AnalysisEntry:
    """A merge that showed its work: the judge's comparison of the panel, and what that call took.

    ``status`` is ``ok``, or ``error`` when the comparison failed (``error`` says why: ``not_json``,
    ``extra_keys``, ``timeout`` ...) and the answer was merged without it. The call is also one of
    ``judge.calls``, in ``cost_by_role.judge`` and in ``latency_ms.judge``."""

    status: str
    error: str | None
    #: section name -> entries, in the order of :data:`fusion_modes.analysis.SECTIONS`
    sections: Mapping[str, Sequence[str]]
    #: the entries speak of anonymous labels: this says who they were
    labels: Mapping[str, MemberRef]
    latency_ms: float
    usage: Usage | None
    cost_usd: Decimal | None

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "error": self.error,
            **{name: list(entries) for name, entries in self.sections.items()},
            "labels": {label: {"member": m.member, "model": m.model} for label, m in self.labels.items()},
            "latency_ms": self.latency_ms,
            "usage": _usage_json(self.usage),
            "cost_usd": self.cost_usd,
        }


@dataclass(frozen=True, slots=True)
class JudgeEntry:
    model: str
    status: JudgeStatus
    calls: int
    latency_ms: float
    usage: Usage | None
    cost_usd: Decimal | None  # 0 when the judge was not needed
    verdict: VerdictEntry | None
    fallback_reason: str | None
    errors: tuple[str | None, ...]

    def to_json(self, *, with_errors: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "model": self.model,
            "status": self.status,
            "calls": self.calls,
            "latency_ms": self.latency_ms,
            "usage": _usage_json(self.usage),
            "cost_usd": self.cost_usd,
            "verdict": self.verdict.to_json() if self.verdict is not None else None,
            "fallback_reason": self.fallback_reason,
        }
        if with_errors:
            out["errors"] = list(self.errors)
        return out


@dataclass(frozen=True, slots=True)
class RoundEntry:
    """One debate round."""

    round: int
    answers: int
    agreed: bool
    latency_ms: float | None
    members: tuple[CallEntry, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "round": self.round,
            "answers": self.answers,
            "agreed": self.agreed,
            "latency_ms": self.latency_ms,
            "members": [m.to_json() for m in self.members],
        }


@dataclass(frozen=True, slots=True)
class LatencyBreakdown:
    """``total`` and its parts, in milliseconds. ``gateway`` is what is left after the time spent waiting
    on upstream calls on the critical path (fan-out, debate rounds, judge): what the gateway itself adds.
    The parts add up to the total by construction."""

    total: float
    fanout: float
    slowest_member: float
    rounds: tuple[float, ...]
    judge: float
    gateway: float
    #: cascade: time in the escalation pool (0 otherwise)
    escalation: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "fanout": self.fanout,
            "slowest_member": self.slowest_member,
            "rounds": list(self.rounds),
            "judge": self.judge,
            "gateway": self.gateway,
            "escalation": self.escalation,
        }


@dataclass(frozen=True, slots=True)
class CascadeEntry:
    """What a cascade did: its first model's answer stood, or it escalated (and why) to a pool."""

    first: str
    escalate: str
    escalated: bool
    #: why it escalated: first_failed, invalid_json, schema_mismatch, regex_mismatch, disagreed,
    #: check_failed, low_confidence, judge_failed (None when the first answer stood)
    reason: str | None
    confidence: float | None
    #: the escalation pool's own ``fusion`` object
    escalation: FusionMetadata | None

    def to_json(self) -> dict[str, Any]:
        return {
            "first": self.first,
            "escalate": self.escalate,
            "escalated": self.escalated,
            "reason": self.reason,
            "confidence": self.confidence,
            "escalation": self.escalation.to_json() if self.escalation is not None else None,
        }


@dataclass(frozen=True, slots=True)
class FusionMetadata:
    """The ``fusion`` object of a pool's answer."""

    pool: str
    mode: str
    members: tuple[CallEntry, ...]  # the fan-out, in the pool's member order
    judge: JudgeEntry | None  # None: the pool has no judge
    winner: MemberRef | None
    rounds: tuple[RoundEntry, ...]
    degraded: bool
    cost_usd: Decimal | None
    cost_member: Decimal | None
    cost_judge: Decimal | None
    usage_estimated: bool
    latency: LatencyBreakdown
    #: this request's answer was handed to a sampled baseline comparison
    baseline_sampled: bool = False
    consensus: ConsensusEntry | None = None
    cascade: CascadeEntry | None = None
    #: merge with ``analysis: true``: the judge's comparison of the panel
    analysis: AnalysisEntry | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "pool": self.pool,
            "mode": self.mode,
            "members": [m.to_json() for m in self.members],
            "judge": self.judge.to_json() if self.judge is not None else None,
            "winner": self.winner.model if self.winner is not None else None,
            "winner_index": self.winner.member if self.winner is not None else None,
            "rounds": [r.to_json() for r in self.rounds],
            "degraded": self.degraded,
            "cost_usd": self.cost_usd,
            "cost_by_role": {"member": self.cost_member, "judge": self.cost_judge},
            "usage_estimated": self.usage_estimated,
            "latency_ms": self.latency.to_json(),
            "consensus": self.consensus.to_json() if self.consensus is not None else None,
            "cascade": self.cascade.to_json() if self.cascade is not None else None,
            "analysis": self.analysis.to_json() if self.analysis is not None else None,
        }
        if self.baseline_sampled:
            out["baseline_sampled"] = True
        return out
