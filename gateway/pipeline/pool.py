"""Running a pool: fan out, fuse through the mode, and account for every part of it."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fusion_modes import MODES
from fusion_modes.agreement import COMPARISONS, Agreement, Consensus, EquivalenceAsk
from fusion_modes.base import Candidate, Emit, FusionContext, FusionResult
from fusion_modes.debate import agree, revision_messages
from gateway.books.calls import Ledger
from gateway.pipeline.fanout import FanoutPolicy, MemberCall, MemberResult, fan_out
from gateway.pipeline.judge_calls import ModelJudge
from gateway.pipeline.plan import PoolPlan
from gateway.pipeline.upstream import UpstreamCaller
from gateway.wire.errors import PoolFailed

if TYPE_CHECKING:
    from gateway.pipeline.events import FusionEvents


@dataclass
class Timeline:
    """Wall-clock marks of one fused request (``time.monotonic`` values)."""

    start: float
    fanout_start: float = 0.0
    fanout_end: float = 0.0
    rounds_ms: list[float] = field(default_factory=list)
    #: cascade: time spent in the escalation pool
    escalation_ms: float = 0.0


@dataclass
class CascadeRun:
    """What a cascade decided: whether it escalated, why, and the escalation pool's own outcome."""

    escalated: bool
    reason: str | None
    confidence: float | None = None
    escalation: PoolOutcome | None = None


@dataclass
class PoolOutcome:
    plan: PoolPlan
    result: FusionResult
    members: list[MemberResult]  # round 0, in finishing order
    ledger: Ledger
    timeline: Timeline
    #: set when enough members agreed and the judge was skipped
    consensus: Consensus | None = None
    cascade: CascadeRun | None = None

    @property
    def stopped_early(self) -> list[int]:
        """Members cancelled because the others already agreed (not a failure: they were not needed)."""
        if self.consensus is None:
            return []
        return [m.call.index for m in self.members if m.record.status == "cancelled"]

    @property
    def degraded(self) -> bool:
        """A member failed or timed out in some round, or the judge failed and the fallback answered.

        A member cancelled once quorum and grace were met is not a failure: the pool was told to move on
        without it (a cancelled call in an answered request can only be that: a caller who leaves gets
        no answer to call degraded)."""
        members = self.ledger.by_role("member")
        # cancelled: cut after quorum and grace, or once the others agreed (consensus): by design either way
        return any(r.status in ("error", "timeout") for r in members) or self.result.judge_status == "fallback"


def candidate(result: MemberResult) -> Candidate:
    assert result.answer is not None
    return Candidate(
        member=result.call.index,
        model=result.call.spec.name,
        message=result.answer.message(),
        finish_reason=result.answer.finish_reason,
        logprobs=result.answer.logprobs,
        system_fingerprint=result.answer.system_fingerprint,
        service_tier=result.answer.service_tier,
    )


def member_calls(plan: PoolPlan) -> list[MemberCall]:
    """One call per member of ``plan``, each with the body the members get and its own upstream name."""
    return [MemberCall(i, spec, {**plan.body, "model": spec.upstream}) for i, spec in plan.members]


async def run_pool(
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
    pool = plan.pool
    calls = member_calls(plan)
    # The member expected to answer last starts first: starting a call takes the event loop a moment,
    # and the request that leaves last is the one the whole fan-out waits for. (Results keep their
    # place in the pool's members; only the start order changes.)
    calls.sort(key=lambda c: -caller.expected_s(c.spec.name))
    quorum = min(pool.effective_quorum, len(calls))
    policy = FanoutPolicy(
        quorum=quorum,
        grace_s=None if pool.grace_ms is None else pool.grace_ms / 1000,
        timeout_s=pool.timeout_s,
        deadline=deadline,
    )
    judge = plan_judge(caller, plan, ledger, deadline, events)
    max_chars = pool.judge.max_candidate_chars if pool.judge else 16_000
    agreement = None
    if pool.agreement is not None and len(calls) >= pool.agreement.min:
        ask = EquivalenceAsk(judge, plan.body["messages"], max_chars)
        agreement = Agreement(COMPARISONS[pool.agreement.compare], pool.agreement.min, ask)

    async def settle(result: MemberResult) -> bool:
        assert agreement is not None
        return await agreement.add(candidate(result)) is not None

    timeline.fanout_start = time.monotonic()
    results = await fan_out(
        caller, calls, policy, ledger, plan.name, observer=events, settle=settle if agreement else None
    )
    timeline.fanout_end = time.monotonic()
    ok = [r for r in results if r.ok]
    consensus = agreement.consensus if agreement is not None else None
    if not ok or (pool.require_quorum and len(ok) < quorum and consensus is None):
        raise PoolFailed(plan.name, [r.record.error for r in sorted(results, key=lambda r: r.call.index)])
    if consensus is not None:
        first = consensus.answer
        result = FusionResult(first.message, first.finish_reason, winner=first, judge_status="skipped")
        return PoolOutcome(plan, result, results, ledger, timeline, consensus=consensus)

    ctx = FusionContext(
        pool=plan.name,
        conversation=plan.body["messages"],
        judge=judge,
        criteria=plan.criteria,
        fallback=pool.fallback,
        rng=rng,
        max_candidate_chars=max_chars,
        swap=bool(pool.judge and pool.judge.swap),
        rounds=plan.rounds,
        final=plan.final,
        reviser=_Reviser(caller, plan, ledger, policy, events) if plan.mode == "debate" else None,
        emit=emit,
        member_order=pool.members,
        check=plan.writer.check,
        analysis=bool(pool.merge and pool.merge.analysis),
    )
    result = await MODES[plan.mode].run(ctx, [candidate(r) for r in ok])
    timeline.rounds_ms = [r.latency_ms for r in result.rounds]
    return PoolOutcome(plan=plan, result=result, members=results, ledger=ledger, timeline=timeline)


def plan_judge(
    caller: UpstreamCaller, plan: PoolPlan, ledger: Ledger, deadline: float, events: FusionEvents | None
) -> ModelJudge | None:
    """The plan's judge (a pool's, or a cascade's check judge) over its model, reporting to the events."""
    if plan.judge is None:
        return None
    on_call = events.judge_started if events is not None else None
    return ModelJudge(
        caller, plan.judge, plan.pool.judge, ledger, plan.name, deadline, on_call=on_call,
        writer_fields=plan.writer.fields,
    )


class _Reviser:
    """Debate rounds: each surviving member revises, seeing the others' latest answers."""

    def __init__(
        self,
        caller: UpstreamCaller,
        plan: PoolPlan,
        ledger: Ledger,
        policy: FanoutPolicy,
        events: FusionEvents | None,
    ) -> None:
        self._caller = caller
        self._plan = plan
        self._ledger = ledger
        self._policy = policy
        self._events = events
        self._specs = dict(plan.members)

    async def __call__(self, round: int, latest: Sequence[Candidate]) -> list[Candidate]:
        calls = []
        for own in latest:
            others = [c for c in latest if c is not own]
            messages = revision_messages(self._plan.body["messages"], own, others)
            spec = self._specs[own.member]
            calls.append(
                MemberCall(own.member, spec, {**self._plan.body, "model": spec.upstream, "messages": messages})
            )
        # Every revision counts: a round waits for all survivors (each bounded by timeout_s and the deadline).
        policy = FanoutPolicy(
            quorum=len(calls), grace_s=None, timeout_s=self._policy.timeout_s, deadline=self._policy.deadline
        )
        started = time.monotonic()
        tracing = self._caller.tracing
        if tracing is not None:
            with tracing.span(f"debate round {round}", {"fusion.pool": self._plan.name, "fusion.round": round,
                                                        "fusion.members": len(calls)}):
                results = await self._fan_out(round, calls, policy)
        else:
            results = await self._fan_out(round, calls, policy)
        revised = [candidate(r) for r in results if r.ok]
        if self._events is not None:
            await self._events.round_done(
                round, len(revised), bool(revised) and agree(revised), (time.monotonic() - started) * 1000
            )
        return revised

    async def _fan_out(self, round: int, calls: list[MemberCall], policy: FanoutPolicy) -> list[MemberResult]:
        return await fan_out(
            self._caller, calls, policy, self._ledger, self._plan.name, round=round, observer=self._events
        )
