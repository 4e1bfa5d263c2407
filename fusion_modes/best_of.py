"""best-of: the judge picks the strongest candidate; the caller gets that answer unchanged, tool calls included."""

from __future__ import annotations

from collections.abc import Sequence

import anyio

from fusion_modes.base import (
    Candidate,
    FusionContext,
    FusionMode,
    FusionResult,
    JudgeFailed,
    Verdict,
    first_success,
    unjudged,
)
from fusion_modes.judge import Ballot, make_ballot, parse_verdict, verdict_messages, verdict_response_format


class BestOf(FusionMode):
    name = "best-of"

    async def run(self, ctx: FusionContext, candidates: Sequence[Candidate]) -> FusionResult:
        if len(candidates) == 1:
            only = candidates[0]
            return unjudged(ctx, only)
        try:
            verdict = await pick(ctx, candidates)
        except JudgeFailed as exc:
            return first_success(ctx, candidates, exc.reason)
        w = verdict.winner
        return FusionResult(w.message, w.finish_reason, winner=w, verdict=verdict)


async def pick(ctx: FusionContext, candidates: Sequence[Candidate]) -> Verdict:
    """Ask the judge for the best candidate; with ``swap``, ask again in reversed order.

    When the two judgements disagree the verdict is marked inconsistent and the tie is broken by the
    pool's ``members`` order (the operator's preference), which does not depend on the order the judge
    saw: position bias cannot decide it.
    """
    if ctx.judge is None:
        raise JudgeFailed("no_judge")
    ballot = make_ballot(candidates, ctx.rng)
    if not ballot.by_label:
        raise JudgeFailed("no_candidates", "every candidate carried the nonce")
    labels = dict(ballot.by_label)
    if len(ballot.by_label) == 1:
        (only,) = ballot.by_label.values()
        return Verdict(only, "only one candidate left after screening", labels=labels)
    if not ctx.swap:
        label, analysis = await _judge_once(ctx, ballot)
        return Verdict(ballot.by_label[label], analysis, labels=labels)

    results: list[tuple[str, str] | JudgeFailed] = [JudgeFailed("cancelled"), JudgeFailed("cancelled")]

    async def one(i: int, b: Ballot) -> None:
        try:
            results[i] = await _judge_once(ctx, b)
        except JudgeFailed as exc:
            results[i] = exc

    async with anyio.create_task_group() as tg:
        tg.start_soon(one, 0, ballot)
        tg.start_soon(one, 1, ballot.reversed())
    got = [r for r in results if not isinstance(r, JudgeFailed)]
    if not got:
        first = results[0]
        assert isinstance(first, JudgeFailed)
        raise first
    if len(got) == 1:
        label, analysis = got[0]
        return Verdict(ballot.by_label[label], analysis, consistent=True, labels=labels)
    (l1, a1), (l2, a2) = got
    if l1 == l2:
        return Verdict(ballot.by_label[l1], a1, consistent=True, labels=labels)
    c1, c2 = ballot.by_label[l1], ballot.by_label[l2]
    winner = c1 if c1.member <= c2.member else c2
    return Verdict(winner, a1 if winner is c1 else a2, consistent=False, labels=labels)


async def _judge_once(ctx: FusionContext, ballot: Ballot) -> tuple[str, str]:
    assert ctx.judge is not None
    messages = verdict_messages(ctx.conversation, ballot, ctx.criteria, ctx.max_candidate_chars)
    raw = await ctx.judge.verdict(messages, verdict_response_format(ballot.order))
    parsed = parse_verdict(raw, ballot.order)
    return parsed.winner, parsed.analysis
