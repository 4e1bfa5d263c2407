"""Running a cascade: the first model (and the check's second model) at once, the check, and the
escalation pool only when the check fails.

The first model's answer is never shown before the check accepts it: a streamed request gets it whole,
after the check, or the escalation pool's answer instead. An escalation is a ``cascade.escalated``
fusion event; what the escalation pool did is nested in the outcome, its calls in the request's ledger.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from fusion_modes.agreement import EquivalenceAsk
from fusion_modes.base import Emit, FusionResult, JudgeFailed, JudgeStatus
from fusion_modes.cascade import agrees, check_format, rate
from gateway.books.calls import Ledger
from gateway.pipeline.events import FusionEvents
from gateway.pipeline.fanout import FanoutPolicy, fan_out
from gateway.pipeline.plan import PoolPlan
from gateway.pipeline.pool import CascadeRun, PoolOutcome, Timeline, candidate, member_calls, plan_judge, run_pool
from gateway.pipeline.upstream import UpstreamCaller


@dataclass(frozen=True, slots=True)
class _Check:
    reason: str | None
    confidence: float | None = None


async def run_cascade(
    caller: UpstreamCaller,
    plan: PoolPlan,
    ledger: Ledger,
    timeline: Timeline,
    *,
    deadline: float,
    rng: random.Random,
    emit: Emit | None = None,
    events: FusionEvents | None = None,
) -> PoolOutcome:
    pool, check, escalate = plan.pool, plan.pool.check, plan.escalate
    assert check is not None and escalate is not None
    calls = member_calls(plan)
    # The check's second answer is needed whenever the first one is: wait for both.
    policy = FanoutPolicy(quorum=len(calls), grace_s=None, timeout_s=pool.timeout_s, deadline=deadline)
    timeline.fanout_start = time.monotonic()
    results = await fan_out(caller, calls, policy, ledger, plan.name, observer=events)
    timeline.fanout_end = time.monotonic()
    by_index = {r.call.index: r for r in results}
    judge = plan_judge(caller, plan, ledger, deadline, events)
    first = by_index[0]
    verdict = _Check("first_failed")
    judge_status: JudgeStatus = "skipped"
    if first.ok:
        answer = candidate(first)
        conversation = plan.body["messages"]
        reason = check_format(
            answer.message.get("content") or "",
            plan.body.get("response_format") if check.response_format else None,
            check.regex,
        )
        if reason is None and check.agree_with is not None:
            second = by_index.get(1)
            ask = EquivalenceAsk(judge, conversation, 16_000)
            reason = await agrees(answer, candidate(second) if second and second.ok else None, check.compare, ask)
        verdict = _Check(reason)
        if reason is None and judge is not None:
            try:
                confidence = await rate(judge, conversation, answer, 16_000)
            except JudgeFailed:
                verdict, judge_status = _Check("judge_failed"), "error"
            else:
                judge_status = "ok"
                reason = None if confidence >= check.min_confidence else "low_confidence"
                verdict = _Check(reason, confidence)
        if verdict.reason is None:
            result = FusionResult(answer.message, answer.finish_reason, winner=answer, judge_status=judge_status)
            run = CascadeRun(escalated=False, reason=None, confidence=verdict.confidence)
            return PoolOutcome(plan, result, results, ledger, timeline, cascade=run)

    if events is not None:
        await events.send("cascade.escalated", reason=verdict.reason, pool=escalate.name,
                          confidence=verdict.confidence)
    child = Ledger()
    started = time.monotonic()
    try:
        nested = await run_pool(
            caller, escalate, child, Timeline(start=started),
            deadline=min(deadline, started + escalate.pool.deadline_s), rng=rng, emit=emit, events=events,
        )
    finally:
        ledger.records.extend(child.records)  # spent is spent, whether the escalation answered or not
    timeline.escalation_ms = (time.monotonic() - started) * 1000
    inner = nested.result
    result = FusionResult(inner.message, inner.finish_reason, judge_status=judge_status, streamed=inner.streamed)
    run = CascadeRun(escalated=True, reason=verdict.reason, confidence=verdict.confidence, escalation=nested)
    return PoolOutcome(plan, result, results, ledger, timeline, cascade=run)
