"""best-of: the judge picks the strongest candidate; the caller gets that answer unchanged, tool calls included."""

from __future__ import annotations

from collections.abc import Sequence

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
from fusion_modes.both_orders import asker, both_orders
from fusion_modes.judge import make_ballot


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
    ask = asker(ctx.judge, ctx.conversation, ctx.criteria, ctx.max_candidate_chars)
    if not ctx.swap:
        once = await ask(ballot)
        return Verdict(ballot.by_label[once.winner], once.analysis, labels=labels)
    results = await both_orders(ask, ballot)
    got = [r for r in results if not isinstance(r, JudgeFailed)]
    if not got:
        first = results[0]  # both failed: report the first failure
        assert isinstance(first, JudgeFailed)
        raise first
    if len(got) == 1:
        return Verdict(ballot.by_label[got[0].winner], got[0].analysis, consistent=True, labels=labels)
    v1, v2 = got
    if v1.winner == v2.winner:
        return Verdict(ballot.by_label[v1.winner], v1.analysis, consistent=True, labels=labels)
    c1, c2 = ballot.by_label[v1.winner], ballot.by_label[v2.winner]
    winner = c1 if c1.member <= c2.member else c2
    return Verdict(winner, v1.analysis if winner is c1 else v2.analysis, consistent=False, labels=labels)
