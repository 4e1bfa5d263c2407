"""The one place a finished request becomes what is recorded of it.

A pool answer becomes its typed :class:`~gateway.books.record.FusionMetadata` (the ``fusion`` object),
its metrics, its live statistics and the fields of its log line; a failed pool request and a passthrough
call are recorded the same way. :func:`finished` then writes the request's one log line and hands its
record to the ledger. Routes only shape the answer.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

from fusion_modes.analysis import SECTIONS
from fusion_modes.base import FusionError
from gateway.books.calls import CallRecord, Ledger
from gateway.books.cost import sum_costs
from gateway.books.ledger.entry import LedgerEntry
from gateway.books.logs import log_request
from gateway.books.receipts import Receipt
from gateway.books.record import (
    AnalysisEntry,
    CallEntry,
    CascadeEntry,
    ConsensusEntry,
    FusionMetadata,
    JudgeEntry,
    LatencyBreakdown,
    MemberRef,
    RoundEntry,
    VerdictEntry,
    ms,
    span_ms,
)
from gateway.books.usage import Usage
from gateway.books.usage import total as usage_total
from gateway.config.loader import ModelSpec
from gateway.pipeline.baseline import FusedAnswer, Sample
from gateway.pipeline.context import RequestContext
from gateway.pipeline.plan import PoolPlan
from gateway.pipeline.pool import PoolOutcome
from gateway.wire.asgi import Scope, client_host
from gateway.wire.errors import GatewayError, JudgeUnavailable, PoolFailed


def latency_breakdown(outcome: PoolOutcome, end: float) -> LatencyBreakdown:
    t = outcome.timeline
    total = (end - t.start) * 1000
    fanout = (t.fanout_end - t.fanout_start) * 1000
    rounds = tuple(t.rounds_ms)
    # Equivalence questions asked during the fan-out (consensus by judge) are inside its span already; an
    # escalation pool's judge is inside the escalation.
    own = _own_judge_calls(outcome)
    judge = span_ms([r for r in own if r.started >= t.fanout_end])
    members = [m.record for m in outcome.members]
    answered = [r for r in members if r.status == "ok"] or members
    slowest = max((r.latency_ms for r in answered), default=0.0)
    escalation = t.escalation_ms
    return LatencyBreakdown(
        total=ms(total),
        fanout=ms(fanout),
        slowest_member=ms(slowest),
        rounds=tuple(ms(r) for r in rounds),
        judge=ms(judge),
        gateway=ms(total - fanout - sum(rounds) - judge - escalation),
        escalation=ms(escalation),
    )


def _own_judge_calls(outcome: PoolOutcome) -> list[CallRecord]:
    return [r for r in outcome.ledger.by_role("judge") if r.pool == outcome.plan.name]


def _judge_entry(outcome: PoolOutcome) -> JudgeEntry | None:
    plan, result = outcome.plan, outcome.result
    if plan.judge is None:
        return None
    calls = _own_judge_calls(outcome)
    verdict = None
    if result.verdict is not None:
        v = result.verdict
        verdict = VerdictEntry(
            winner=MemberRef(v.winner.member, v.winner.model),
            analysis=v.analysis,
            consistent=v.consistent,
            labels={label: MemberRef(c.member, c.model) for label, c in v.labels.items()},
        )
    elif outcome.consensus is not None:
        c = outcome.consensus
        first = c.answer
        verdict = VerdictEntry(
            winner=MemberRef(first.member, first.model),
            analysis=f"{len(c.agreed)} members gave equivalent answers (compare: {c.compare}); no verdict was needed",
            consistent=True,
            labels={},
            reason="consensus",
        )
    return JudgeEntry(
        model=plan.judge.name,
        status=result.judge_status,
        calls=len(calls),
        latency_ms=ms(span_ms(calls)),
        usage=usage_total(c.usage for c in calls) if calls else None,
        cost_usd=sum_costs(c.cost for c in calls if c.usage is not None),
        verdict=verdict,
        fallback_reason=result.fallback_reason,
        errors=tuple(c.error_type for c in calls if c.status != "ok"),
    )


def fusion_metadata(outcome: PoolOutcome, latency: LatencyBreakdown, *, baseline_sampled: bool) -> FusionMetadata:
    result, ledger = outcome.result, outcome.ledger
    ordered = sorted(outcome.members, key=lambda m: m.call.index)
    rounds = []
    for i, rec in enumerate(result.rounds):
        records = sorted((r for r in ledger.by_role("member") if r.round == rec.round), key=lambda r: r.member or 0)
        rounds.append(
            RoundEntry(
                round=rec.round,
                answers=rec.answers,
                agreed=rec.agreed,
                latency_ms=latency.rounds[i] if i < len(latency.rounds) else None,
                members=tuple(CallEntry.of(r) for r in records),
            )
        )
    winner = result.winner
    return FusionMetadata(
        pool=outcome.plan.name,
        mode=outcome.plan.mode,
        members=tuple(CallEntry.of(m.record) for m in ordered),
        judge=_judge_entry(outcome),
        winner=MemberRef(winner.member, winner.model) if winner is not None else None,
        rounds=tuple(rounds),
        degraded=outcome.degraded,
        cost_usd=fused_cost(ledger),
        cost_member=ledger.cost("member"),
        cost_judge=ledger.cost("judge"),
        usage_estimated=any(r.usage is not None and r.usage.estimated for r in ledger.by_role("member", "judge")),
        latency=latency,
        baseline_sampled=baseline_sampled,
        consensus=_consensus_entry(outcome),
        cascade=_cascade_entry(outcome),
        analysis=_analysis_entry(outcome),
    )


def _analysis_entry(outcome: PoolOutcome) -> AnalysisEntry | None:
    result = outcome.result
    if result.analysis is None and result.analysis_error is None:
        return None
    # The comparison is the mode's first judge call once the fan-out (and any debate round) is over.
    after = sorted(
        (r for r in _own_judge_calls(outcome) if r.started >= outcome.timeline.fanout_end), key=lambda r: r.started
    )
    call = after[0] if after else None
    a = result.analysis
    return AnalysisEntry(
        status="ok" if a is not None else "error",
        error=result.analysis_error,
        sections=a.sections() if a is not None else {name: [] for name in SECTIONS},
        labels={label: MemberRef(c.member, c.model) for label, c in a.labels.items()} if a is not None else {},
        latency_ms=ms(call.latency_ms) if call is not None else 0.0,
        usage=call.usage if call is not None else None,
        cost_usd=call.cost if call is not None and call.usage is not None else None,
    )


def _cascade_entry(outcome: PoolOutcome) -> CascadeEntry | None:
    run, plan = outcome.cascade, outcome.plan
    if run is None or plan.escalate is None:
        return None
    nested = None
    if run.escalation is not None:
        esc = run.escalation
        end = esc.timeline.start + outcome.timeline.escalation_ms / 1000
        nested = fusion_metadata(esc, latency_breakdown(esc, end), baseline_sampled=False)
    return CascadeEntry(
        first=plan.members[0][1].name,
        escalate=plan.escalate.name,
        escalated=run.escalated,
        reason=run.reason,
        confidence=run.confidence,
        escalation=nested,
    )


def _consensus_entry(outcome: PoolOutcome) -> ConsensusEntry | None:
    c = outcome.consensus
    if c is None:
        return None
    return ConsensusEntry(
        compare=c.compare,
        min=c.min,
        agreed=tuple(MemberRef(a.member, a.model) for a in c.agreed),
        stopped_early=tuple(sorted(outcome.stopped_early)),
    )


def fused_cost(ledger: Ledger) -> Decimal | None:
    return ledger.cost("member", "judge")


def pool_answer(
    ctx: RequestContext, outcome: PoolOutcome, sample: Sample | None
) -> tuple[FusionMetadata, LatencyBreakdown]:
    """A pool answered: its ``fusion`` metadata and the latency breakdown it holds (timed now), and its
    receipt. The rest of its books wait until the answer has gone out (:func:`pool_answered`)."""
    latency = latency_breakdown(outcome, time.monotonic())
    meta = fusion_metadata(outcome, latency, baseline_sampled=sample is not None)
    ctx.status = 200
    ctx.cost = meta.cost_usd
    ctx.kind, ctx.calls, ctx.meta = "pool", outcome.ledger.records, meta
    _receipt(ctx, outcome.plan.name, meta)
    return meta, latency


def pool_answered(
    ctx: RequestContext, outcome: PoolOutcome, meta: FusionMetadata, latency: LatencyBreakdown, sample: Sample | None
) -> None:
    """The books of a pool answer that has gone out: metrics, stats, log fields; the answer to the
    baseline job if sampled."""
    plan, ledger = outcome.plan, outcome.ledger
    quorum = min(plan.pool.effective_quorum, len(outcome.members))
    services = ctx.services
    services.metrics.pool_answered(
        meta,
        judge_called=bool(ledger.by_role("judge")),
        quorum_missed=sum(1 for m in outcome.members if m.ok) < quorum,
    )
    services.stats.request(plan.name, "degraded" if meta.degraded else "ok", latency.total, meta.cost_usd)
    if meta.cascade is not None:
        c = meta.cascade
        services.metrics.cascade_decided(plan.name, c.escalated, c.reason)
        services.stats.cascade(plan.name, c.escalated, c.escalation.cost_usd if c.escalation is not None else None)
        ctx.fields["cascade"] = {"escalated": c.escalated, "reason": c.reason, "confidence": c.confidence}
    if sample is not None:
        sample.deliver(FusedAnswer(outcome.result.message, latency.total, meta.cost_usd))
    _tokens(ctx, ledger.usage("member", "judge"))
    ctx.fields.update(
        {
            "pool": plan.name,
            "degraded": meta.degraded,
            "members": [{"model": m.model, "status": m.status, "latency_ms": m.latency_ms} for m in meta.members],
            "judge": meta.judge.status if meta.judge else None,
            "winner": meta.winner.model if meta.winner else None,
            "rounds": len(meta.rounds),
            "latency_breakdown_ms": latency.to_json(),
        }
    )
    note_content(ctx, plan.body["messages"], outcome.result.message)


def pool_failed(ctx: RequestContext, plan: PoolPlan, ledger: Ledger, exc: GatewayError | FusionError) -> GatewayError:
    """A pool could not answer: count it, note what was spent, and give the error to show the caller."""
    judge_failed = isinstance(exc, FusionError)
    ctx.services.metrics.pool_failed(
        plan.name, plan.mode, judge_failed=judge_failed, quorum_missed=isinstance(exc, PoolFailed)
    )
    ctx.services.stats.request(plan.name, "error")
    error = JudgeUnavailable(str(exc)) if isinstance(exc, FusionError) else exc
    ctx.status = error.http_status
    ctx.kind, ctx.calls = "pool", ledger.records
    ctx.cost = fused_cost(ledger)  # what was spent before the failure is still spent
    _tokens(ctx, ledger.usage("member", "judge"))
    ctx.fields["error"] = error.code
    _receipt(ctx, plan.name, None)
    return error


def passthrough_answered(ctx: RequestContext, spec: ModelSpec, record: CallRecord, error: GatewayError | None) -> None:
    ctx.services.metrics.passthrough_answered(spec.name, error is None, time.monotonic() - ctx.started)
    ctx.status = 200 if error is None else error.http_status
    ctx.cost = record.cost
    ctx.kind, ctx.calls = "passthrough", (record,)
    _tokens(ctx, record.usage or Usage())
    ctx.fields["upstream"] = {"status": record.status, "attempts": record.attempts, "error_type": record.error_type,
                              "latency_ms": ms(record.latency_ms)}
    if record.deployment is not None:
        ctx.fields["upstream"].update(
            answered_by=record.answered_by, deployment=record.deployment, fallback_reason=record.fallback_reason
        )
    if error is not None:
        ctx.fields["error"] = error.code
    _receipt(ctx, spec.name, None)


def _receipt(ctx: RequestContext, model: str, meta: FusionMetadata | None) -> None:
    """Kept for ``GET /v1/fusion/requests/{id}``, before the answer's last byte goes out, so a client that
    asks right after it finds it (the ledger's record is handed over only once the request is over)."""
    ctx.services.receipts.add(
        Receipt(ctx.request_id, ctx.principal.name, model, ctx.status, ctx.cost, meta)
    )


def _tokens(ctx: RequestContext, usage: Usage) -> None:
    """Tokens in and out of every upstream call the request made, for its log line."""
    ctx.fields["tokens_in"] = usage.prompt_tokens
    ctx.fields["tokens_out"] = usage.completion_tokens


def note_content(ctx: RequestContext, messages: Any, answer: Any) -> None:
    """Prompt and answer, kept only where the operator opted in: in the log line, in the ledger, or both."""
    config = ctx.runtime.config
    if config.logging.content:
        ctx.fields["content"] = {"messages": messages, "answer": answer}
    if config.ledger.content:
        ctx.content = (messages, answer)


def finished(ctx: RequestContext, scope: Scope, stream: bool) -> None:
    """Every request of every inbound API ends here, answered, failed or refused: its one log line and
    its ledger record (handed to the background writer: nothing waits for the database)."""
    latency_ms = (time.monotonic() - ctx.started) * 1000
    status = ctx.status or 499  # 499: the client went away before an answer
    fields = ctx.fields
    path = scope["path"]
    log_request(
        ctx.services.log,
        {
            "method": "POST",
            "path": path,
            "client": client_host(scope),
            "request_id": ctx.request_id,
            "key": ctx.principal.name,
            "status": status,
            "stream": stream,
            "latency_ms": round(latency_ms, 3),
            "cost_usd": ctx.cost,
            **fields,
        },
    )
    ledger = ctx.services.ledger
    if ledger is None:
        return
    model = fields.get("model")
    meta = ctx.meta
    content = ctx.content
    kind = ctx.kind
    answered = kind == "pool" or (kind == "cached" and model in ctx.runtime.config.pools)
    ledger.submit(
        LedgerEntry(
            request_id=ctx.request_id,
            kind=kind,
            key=ctx.principal.name,
            created=time.time() - latency_ms / 1000,
            status=status,
            stream=stream,
            endpoint=path,
            model=model,
            pool=model if answered else None,
            mode=fields.get("mode"),
            error_code=fields.get("error"),
            latency_ms=meta.latency.total if meta is not None else latency_ms,
            cost=ctx.cost,
            saved=ctx.saved,
            calls=ctx.calls,
            providers=ctx.runtime.providers_of,
            meta=meta,
            messages=content[0] if content is not None else None,
            answer=content[1] if content is not None else None,
        )
    )
