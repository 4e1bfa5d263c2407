"""What a fused request reports: the ``fusion`` object, the latency breakdown, and its metrics."""

from __future__ import annotations

from typing import Any

from gateway.books.calls import CallRecord, Ledger
from gateway.books.metrics import Metrics
from gateway.pipeline.pool import PoolOutcome


def _ms(x: float) -> float:
    return round(x, 3)


def span_ms(records: list[CallRecord]) -> float:
    """Wall time covered by ``records`` (parallel calls overlap: first start to last end)."""
    done = [r for r in records if r.started and r.ended]
    if not done:
        return 0.0
    return (max(r.ended for r in done) - min(r.started for r in done)) * 1000


def latency_breakdown(outcome: PoolOutcome, end: float) -> dict[str, Any]:
    """``total`` and its parts. ``gateway`` is what is left after the time spent waiting on upstream
    calls on the critical path (fan-out, debate rounds, judge): what the gateway itself adds.
    The parts add up to the total by construction."""
    t = outcome.timeline
    total = (end - t.start) * 1000
    fanout = (t.fanout_end - t.fanout_start) * 1000
    rounds = list(t.rounds_ms)
    judge = span_ms(outcome.ledger.by_role("judge"))
    members = [m.record for m in outcome.members]
    answered = [r for r in members if r.status == "ok"] or members
    slowest = max((r.latency_ms for r in answered), default=0.0)
    return {
        "total": _ms(total),
        "fanout": _ms(fanout),
        "slowest_member": _ms(slowest),
        "rounds": [_ms(r) for r in rounds],
        "judge": _ms(judge),
        "gateway": _ms(total - fanout - sum(rounds) - judge),
    }


def call_entry(r: CallRecord) -> dict[str, Any]:
    return {
        "member": r.member,
        "model": r.model,
        "status": r.status,
        "latency_ms": _ms(r.latency_ms),
        "usage": r.usage.to_openai() if r.usage is not None else None,
        "cost_usd": r.cost,
        "error_type": r.error_type,
    }


def _judge_entry(outcome: PoolOutcome) -> dict[str, Any] | None:
    plan, result, ledger = outcome.plan, outcome.result, outcome.ledger
    if plan.judge is None:
        return None
    calls = ledger.by_role("judge")
    verdict = None
    if result.verdict is not None:
        v = result.verdict
        verdict = {
            "winner": v.winner.model,
            "winner_index": v.winner.member,
            "analysis": v.analysis,
            "consistent": v.consistent,
            # the analysis speaks of anonymous labels: this says who they were
            "labels": {label: {"member": c.member, "model": c.model} for label, c in v.labels.items()},
        }
    status = result.judge_status
    return {
        "model": plan.judge.name,
        "status": status,
        "calls": len(calls),
        "latency_ms": _ms(span_ms(calls)),
        "usage": ledger.usage("judge").to_openai() if calls else None,
        "cost_usd": ledger.cost("judge"),  # 0 when the judge was not needed, like cost_by_role
        "verdict": verdict,
        "fallback_reason": result.fallback_reason,
        "errors": [c.error_type for c in calls if c.status != "ok"],
    }


def pool_metadata(outcome: PoolOutcome, latency: dict[str, Any]) -> dict[str, Any]:
    result, ledger = outcome.result, outcome.ledger
    ordered = sorted(outcome.members, key=lambda m: m.call.index)
    rounds = []
    for i, rec in enumerate(result.rounds):
        records = sorted((r for r in ledger.by_role("member") if r.round == rec.round), key=lambda r: r.member or 0)
        entries = [call_entry(r) for r in records]
        rounds.append(
            {
                "round": rec.round,
                "answers": rec.answers,
                "agreed": rec.agreed,
                "latency_ms": latency["rounds"][i] if i < len(latency["rounds"]) else None,
                "members": entries,
            }
        )
    winner = result.winner
    return {
        "pool": outcome.plan.name,
        "mode": outcome.plan.mode,
        "members": [call_entry(m.record) for m in ordered],
        "judge": _judge_entry(outcome),
        "winner": winner.model if winner is not None else None,
        "winner_index": winner.member if winner is not None else None,
        "rounds": rounds,
        "degraded": outcome.degraded,
        "cost_usd": fused_cost(ledger),
        "cost_by_role": {"member": ledger.cost("member"), "judge": ledger.cost("judge")},
        "usage_estimated": any(r.usage is not None and r.usage.estimated for r in ledger.by_role("member", "judge")),
        "latency_ms": latency,
    }


def fused_cost(ledger: Ledger) -> Any:
    return ledger.cost("member", "judge")


def record_pool_metrics(metrics: Metrics, outcome: PoolOutcome, latency: dict[str, Any]) -> None:
    pool, mode = outcome.plan.name, outcome.plan.mode
    metrics.requests.labels(pool, mode, "degraded" if outcome.degraded else "ok").inc()
    metrics.request_duration.labels(pool, mode).observe(latency["total"] / 1000)
    stage = metrics.stage_duration
    stage.labels(pool, "fanout").observe(latency["fanout"] / 1000)
    if outcome.ledger.by_role("judge"):
        stage.labels(pool, "judge").observe(latency["judge"] / 1000)
    for r in latency["rounds"]:
        stage.labels(pool, "debate_round").observe(r / 1000)
    stage.labels(pool, "gateway").observe(max(0.0, latency["gateway"]) / 1000)
    for r in outcome.ledger.by_role("member"):
        metrics.member_calls.labels(pool, r.model, r.status).inc()
    result = outcome.result
    if result.judge_status == "ok":
        metrics.judge_verdicts.labels(pool, "picked").inc()
    elif result.judge_status == "fallback":
        metrics.judge_verdicts.labels(pool, "fallback").inc()
    if result.winner is not None:
        metrics.winners.labels(pool, result.winner.model).inc()
    quorum = min(outcome.plan.pool.effective_quorum, len(outcome.members))
    if sum(1 for m in outcome.members if m.ok) < quorum:
        metrics.quorum_misses.labels(pool).inc()
